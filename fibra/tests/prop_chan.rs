//! Property tests of `fibra::chan` (issue 13): random programs, checked against a model.
//!
//! - `sequential_programs_match_the_model`: one channel driven by one caller (a plain thread or
//!   a fiber) through try / zero-timeout / blocking-that-cannot-block / `select!`-with-default
//!   operations and clones and drops of either side; every outcome, every `len`, and after every
//!   step every item's drop count is checked exactly against a `VecDeque` model.
//! - `concurrent_programs_lose_nothing`: senders and receivers on fibers and OS threads, each
//!   with its own mix of blocking / try / timeout / `select!` operations, receivers that drop
//!   early, on 1..=3 workers; checked: nothing lost or duplicated, per-sender FIFO, the bound
//!   never exceeded, close semantics, every item dropped once.
//! - `select_delivers_each_item_once`: consumers `select!` over up to three channels of mixed
//!   flavours; each item reaches exactly one consumer, in per-sender order.
//!
//! Case counts: `PROPTEST_CASES` raises (or lowers) every test's count. Failures are not
//! persisted (`failure_persistence: None`, nothing is written into the tree): a failing case
//! prints its shrunk program, which becomes a named regression test by hand.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fibra::chan::{
    self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

mod common;

/// A case that runs longer than this has hung.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// `cases` unless `PROPTEST_CASES` says otherwise; no failure files.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// With `PROP_TRACE` set, prints each case before running it (to find a case that hangs:
/// the watchdog aborts without shrinking).
fn trace(case: &dyn fmt::Debug) {
    if std::env::var_os("PROP_TRACE").is_some() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "case: {case:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Items that count their drops.

/// Most items one sender sends in a case.
const MAX_ITEMS: usize = 64;

/// Items made and dropped, by `sender * MAX_ITEMS + seq`.
struct Ledger {
    made: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
}

impl Ledger {
    fn new(senders: usize) -> Arc<Ledger> {
        let counts = || {
            (0..senders * MAX_ITEMS)
                .map(|_| AtomicUsize::new(0))
                .collect()
        };
        Arc::new(Ledger {
            made: counts(),
            dropped: counts(),
        })
    }

    fn made(&self, sender: usize, seq: usize) -> usize {
        self.made[sender * MAX_ITEMS + seq].load(SeqCst)
    }

    fn drops(&self, sender: usize, seq: usize) -> usize {
        self.dropped[sender * MAX_ITEMS + seq].load(SeqCst)
    }
}

/// The `seq`-th item of `sender`.
struct Item {
    sender: usize,
    seq: usize,
    ledger: Arc<Ledger>,
}

impl Item {
    fn new(ledger: &Arc<Ledger>, sender: usize, seq: usize) -> Item {
        assert!(seq < MAX_ITEMS);
        ledger.made[sender * MAX_ITEMS + seq].fetch_add(1, SeqCst);
        Item {
            sender,
            seq,
            ledger: ledger.clone(),
        }
    }

    fn id(&self) -> (usize, usize) {
        (self.sender, self.seq)
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.ledger.dropped[self.sender * MAX_ITEMS + self.seq].fetch_add(1, SeqCst);
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}.{}", self.sender, self.seq)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared vocabulary.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Rendezvous,
    One,
    Bounded(usize),
    Unbounded,
}

impl Flavor {
    fn cap(self) -> Option<usize> {
        match self {
            Flavor::Rendezvous => Some(0),
            Flavor::One => Some(1),
            Flavor::Bounded(n) => Some(n),
            Flavor::Unbounded => None,
        }
    }

    fn make<T>(self) -> (Sender<T>, Receiver<T>) {
        match self.cap() {
            Some(n) => chan::bounded(n),
            None => chan::unbounded(),
        }
    }
}

fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![
        Just(Flavor::Rendezvous),
        Just(Flavor::One),
        (2usize..=4).prop_map(Flavor::Bounded),
        Just(Flavor::Unbounded),
    ]
}

/// Where a participant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Fiber,
    Thread,
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![Just(Place::Fiber), Just(Place::Thread)]
}

/// Lets others run: a fiber yields, a thread yields its core. Every 16th time it returns
/// true instead: the caller then waits in a timed operation (a try-loop must not spin forever
/// against another try-loop, nor starve a busy machine).
fn backoff(place: Place, spins: &mut u32) -> bool {
    *spins += 1;
    if *spins % 16 == 0 {
        return true;
    }
    match place {
        Place::Fiber => fibra::yield_now(),
        Place::Thread => std::thread::yield_now(),
    }
    false
}

/// A runtime with `workers` workers, running `f` as the root fiber.
fn run_on<R: Send + 'static>(workers: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
    fibra::Runtime::builder()
        .workers(workers)
        .build()
        .unwrap()
        .block_on(f)
}

// ---------------------------------------------------------------------------------------------
// 1. Sequential programs against an exact model.

/// One step of a sequential program. `u8` operands pick an endpoint among the live ones
/// (modulo their number); a step whose side has no live endpoint does nothing.
#[derive(Debug, Clone)]
enum SeqOp {
    TrySend(u8),
    /// `send_timeout(v, 0)`: a try that goes through the timed path.
    SendZeroTimeout(u8),
    /// `send` when the model says it completes (or fails) at once, else `send_timeout(v, 0)`.
    Send(u8),
    /// `select! { send(tx, v), default }`; on `default` the arm drops the value.
    SelectSend(u8),
    TryRecv(u8),
    RecvZeroTimeout(u8),
    /// `recv` when the model says it returns at once, else `recv_timeout(0)`.
    Recv(u8),
    /// `select! { recv(rx), default }`.
    SelectRecv(u8),
    CloneSender(u8),
    CloneReceiver(u8),
    DropSender(u8),
    DropReceiver(u8),
}

fn seq_op() -> impl Strategy<Value = SeqOp> {
    let i = any::<u8>;
    prop_oneof![
        4 => i().prop_map(SeqOp::TrySend),
        2 => i().prop_map(SeqOp::SendZeroTimeout),
        2 => i().prop_map(SeqOp::Send),
        2 => i().prop_map(SeqOp::SelectSend),
        3 => i().prop_map(SeqOp::TryRecv),
        2 => i().prop_map(SeqOp::RecvZeroTimeout),
        2 => i().prop_map(SeqOp::Recv),
        2 => i().prop_map(SeqOp::SelectRecv),
        1 => i().prop_map(SeqOp::CloneSender),
        1 => i().prop_map(SeqOp::CloneReceiver),
        1 => i().prop_map(SeqOp::DropSender),
        1 => i().prop_map(SeqOp::DropReceiver),
    ]
}

/// What a send or receive step may find, per the model.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Sent: into the buffer. Received: this item.
    Done(Option<usize>),
    /// Would wait (full / empty).
    Wait,
    /// The other side is gone.
    Gone,
}

struct Model {
    cap: Option<usize>,
    buf: VecDeque<usize>,
    senders: Vec<Sender<Item>>,
    receivers: Vec<Receiver<Item>>,
}

impl Model {
    fn expect_send(&self) -> Expect {
        if self.receivers.is_empty() {
            Expect::Gone
        } else if self.cap.is_none_or(|c| self.buf.len() < c) {
            Expect::Done(None)
        } else {
            Expect::Wait
        }
    }

    fn expect_recv(&self) -> Expect {
        match self.buf.front() {
            Some(&seq) => Expect::Done(Some(seq)),
            None if self.senders.is_empty() => Expect::Gone,
            None => Expect::Wait,
        }
    }

    /// Applies a send's outcome to the model.
    fn sent(&mut self, seq: usize, got: Expect) -> Result<(), TestCaseError> {
        let want = self.expect_send();
        prop_assert_eq!(&got, &want, "send of item {}", seq);
        if want == Expect::Done(None) {
            self.buf.push_back(seq);
        }
        Ok(())
    }

    /// Applies a receive's outcome to the model.
    fn received(&mut self, got: Expect) -> Result<(), TestCaseError> {
        let want = self.expect_recv();
        prop_assert_eq!(&got, &want, "receive");
        if let Expect::Done(_) = want {
            self.buf.pop_front();
        }
        Ok(())
    }
}

/// The outcome of a send of item `seq`, checking that a failed send hands back that item.
fn send_outcome<E>(seq: usize, r: Result<(), E>, split: impl FnOnce(E) -> (bool, Item)) -> Expect {
    match r {
        Ok(()) => Expect::Done(None),
        Err(e) => {
            let (gone, back) = split(e);
            assert_eq!(back.seq, seq, "a failed send hands back its own value");
            if gone {
                Expect::Gone
            } else {
                Expect::Wait
            }
        }
    }
}

fn recv_outcome(r: Result<Item, Expect>) -> Expect {
    match r {
        Ok(item) => Expect::Done(Some(item.seq)),
        Err(e) => e,
    }
}

fn run_sequential(flavor: Flavor, ops: &[SeqOp]) -> Result<(), TestCaseError> {
    let ledger = Ledger::new(1);
    let (tx, rx) = flavor.make::<Item>();
    let mut m = Model {
        cap: flavor.cap(),
        buf: VecDeque::new(),
        senders: vec![tx],
        receivers: vec![rx],
    };
    let mut next = 0;
    for (step, op) in ops.iter().enumerate() {
        let pick = |n: u8, len: usize| (len > 0).then(|| usize::from(n) % len);
        match *op {
            SeqOp::TrySend(i)
            | SeqOp::SendZeroTimeout(i)
            | SeqOp::Send(i)
            | SeqOp::SelectSend(i) => {
                let Some(i) = pick(i, m.senders.len()) else {
                    continue;
                };
                let seq = next;
                next += 1;
                let v = Item::new(&ledger, 0, seq);
                let tx = &m.senders[i];
                let got = match op {
                    SeqOp::TrySend(_) => send_outcome(seq, tx.try_send(v), |e| match e {
                        TrySendError::Full(v) => (false, v),
                        TrySendError::Disconnected(v) => (true, v),
                    }),
                    SeqOp::Send(_) if m.expect_send() != Expect::Wait => {
                        send_outcome(seq, tx.send(v), |e| (true, e.into_inner()))
                    }
                    SeqOp::Send(_) | SeqOp::SendZeroTimeout(_) => {
                        send_outcome(seq, tx.send_timeout(v, Duration::ZERO), |e| match e {
                            SendTimeoutError::Timeout(v) => (false, v),
                            SendTimeoutError::Disconnected(v) => (true, v),
                        })
                    }
                    _ => fibra::select! {
                        send(tx, v) -> r => send_outcome(seq, r, |e| (true, e.into_inner())),
                        default => Expect::Wait, // the arm drops the value
                    },
                };
                m.sent(seq, got)?;
            }
            SeqOp::TryRecv(i)
            | SeqOp::RecvZeroTimeout(i)
            | SeqOp::Recv(i)
            | SeqOp::SelectRecv(i) => {
                let Some(i) = pick(i, m.receivers.len()) else {
                    continue;
                };
                let rx = &m.receivers[i];
                let got = match op {
                    SeqOp::TryRecv(_) => recv_outcome(rx.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => Expect::Wait,
                        TryRecvError::Disconnected => Expect::Gone,
                    })),
                    SeqOp::Recv(_) if m.expect_recv() != Expect::Wait => {
                        recv_outcome(rx.recv().map_err(|_| Expect::Gone))
                    }
                    SeqOp::Recv(_) | SeqOp::RecvZeroTimeout(_) => {
                        recv_outcome(rx.recv_timeout(Duration::ZERO).map_err(|e| match e {
                            RecvTimeoutError::Timeout => Expect::Wait,
                            RecvTimeoutError::Disconnected => Expect::Gone,
                        }))
                    }
                    _ => fibra::select! {
                        recv(rx) -> r => recv_outcome(r.map_err(|_| Expect::Gone)),
                        default => Expect::Wait,
                    },
                };
                m.received(got)?;
            }
            SeqOp::CloneSender(i) => {
                if let Some(i) = pick(i, m.senders.len()) {
                    let tx = m.senders[i].clone();
                    m.senders.push(tx);
                }
            }
            SeqOp::CloneReceiver(i) => {
                if let Some(i) = pick(i, m.receivers.len()) {
                    let rx = m.receivers[i].clone();
                    m.receivers.push(rx);
                }
            }
            SeqOp::DropSender(i) => {
                if let Some(i) = pick(i, m.senders.len()) {
                    drop(m.senders.swap_remove(i));
                }
            }
            SeqOp::DropReceiver(i) => {
                if let Some(i) = pick(i, m.receivers.len()) {
                    drop(m.receivers.swap_remove(i));
                    if m.receivers.is_empty() {
                        m.buf.clear(); // dropped with the last receiver
                    }
                }
            }
        }
        // Every endpoint sees the model's length and bound.
        let len = m.buf.len();
        for tx in &m.senders {
            prop_assert_eq!(tx.len(), len, "sender len after step {}", step);
            prop_assert_eq!(tx.capacity(), m.cap);
            prop_assert_eq!(tx.is_full(), m.cap.is_some_and(|c| len >= c));
        }
        for rx in &m.receivers {
            prop_assert_eq!(rx.len(), len, "receiver len after step {}", step);
            prop_assert_eq!(rx.is_empty(), len == 0);
        }
        // Exactly the buffered items are alive; every other item was dropped once.
        for seq in 0..next {
            let want = usize::from(!m.buf.contains(&seq));
            prop_assert_eq!(
                ledger.drops(0, seq),
                want,
                "drops of item {} after step {}",
                seq,
                step
            );
        }
    }
    drop(m);
    for seq in 0..next {
        prop_assert_eq!(ledger.drops(0, seq), 1, "drops of item {} at the end", seq);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn sequential_programs_match_the_model(
        flavor in flavor(),
        on_fiber in any::<bool>(),
        ops in prop::collection::vec(seq_op(), 0..48),
    ) {
        let _w = common::watchdog_for("sequential_programs_match_the_model", CASE_LIMIT);
        if on_fiber {
            run_on(1, move || run_sequential(flavor, &ops))?;
        } else {
            run_sequential(flavor, &ops)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrent programs: fibers and threads, checked for what must hold under any schedule.

#[derive(Debug, Clone, Copy)]
enum SendHow {
    Block,
    /// `try_send` until it is not `Full`.
    Try,
    /// `send_timeout(1 ms)` until it does not time out.
    Timeout,
    /// `select! { send(tx, v), recv(never) }`.
    Select,
    /// Yield first, then `send`.
    YieldThenBlock,
}

#[derive(Debug, Clone, Copy)]
enum RecvHow {
    Block,
    /// `try_recv` until it is not `Empty`.
    Try,
    /// `recv_timeout(1 ms)` until it does not time out.
    Timeout,
    /// `select! { recv(rx), recv(never) }`.
    Select,
    /// `select! { recv(rx), default(1 ms) }` until an arm completes.
    SelectTimeout,
}

/// How a receiver adds what it got to the shared tally (a `fibra::sync::Mutex`).
#[derive(Debug, Clone, Copy)]
enum LockHow {
    Lock,
    TryLock,
    LockTimeout,
}

#[derive(Debug, Clone)]
struct SenderPlan {
    place: Place,
    /// One entry per item, in order.
    items: Vec<SendHow>,
}

#[derive(Debug, Clone)]
struct ReceiverPlan {
    place: Place,
    /// Cycled: the i-th receive uses `how[i % len]`.
    how: Vec<RecvHow>,
    lock: LockHow,
    /// Drop this receiver after this many items (else: receive until disconnected).
    stop_after: Option<usize>,
}

#[derive(Debug, Clone)]
struct Program {
    flavor: Flavor,
    workers: usize,
    senders: Vec<SenderPlan>,
    receivers: Vec<ReceiverPlan>,
    /// `Some(n)`: the root returns after `n` yields instead of waiting for the participants,
    /// so the session ends with fibers parked in `send`, `recv`, `select!` and the lock
    /// (participants then start without the barrier, which cancelled fibers never reach).
    abandon: Option<u8>,
}

fn program() -> impl Strategy<Value = Program> {
    let send_how = prop_oneof![
        Just(SendHow::Block),
        Just(SendHow::Try),
        Just(SendHow::Timeout),
        Just(SendHow::Select),
        Just(SendHow::YieldThenBlock),
    ];
    let recv_how = prop_oneof![
        Just(RecvHow::Block),
        Just(RecvHow::Try),
        Just(RecvHow::Timeout),
        Just(RecvHow::Select),
        Just(RecvHow::SelectTimeout),
    ];
    let lock_how = prop_oneof![
        Just(LockHow::Lock),
        Just(LockHow::TryLock),
        Just(LockHow::LockTimeout)
    ];
    let sender = (place(), prop::collection::vec(send_how, 0..24))
        .prop_map(|(place, items)| SenderPlan { place, items });
    let receiver = (
        place(),
        prop::collection::vec(recv_how, 1..4),
        lock_how,
        prop::option::weighted(0.3, 0usize..16),
    )
        .prop_map(|(place, how, lock, stop_after)| ReceiverPlan {
            place,
            how,
            lock,
            stop_after,
        });
    (
        flavor(),
        1usize..=3,
        prop::collection::vec(sender, 1..=3),
        prop::collection::vec(receiver, 1..=3),
        prop::option::weighted(0.25, 0u8..4),
    )
        .prop_map(|(flavor, workers, senders, receivers, abandon)| Program {
            flavor,
            workers,
            senders,
            receivers,
            abandon,
        })
}

/// What became of each item of one sender: `true` sent, `false` handed back.
type SenderReport = (usize, Vec<bool>);

/// What one receiver got, in order, and whether it ended by disconnection.
#[derive(Debug, Default)]
struct ReceiverReport {
    got: Vec<(usize, usize)>,
    disconnected: bool,
}

enum Report {
    Sender(SenderReport),
    Receiver(usize, ReceiverReport),
    /// A participant saw something impossible (kept as data: a panic there would hang
    /// others).
    Broken(String),
}

/// What every participant shares.
struct Shared {
    ledger: Arc<Ledger>,
    cap: Option<usize>,
    /// All participants start together (`None` when the root abandons them).
    start: Option<fibra::sync::Barrier>,
    /// Items received so far, added under the lock; `inside` catches a second holder.
    tally: fibra::sync::Mutex<usize>,
    inside: AtomicBool,
    /// Set when a participant sees a buffer beyond the bound or a second lock holder.
    broken: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn check_len(&self, len: usize, who: &str) {
        if self.cap.is_some_and(|c| len > c) {
            self.broken
                .lock()
                .unwrap()
                .push(format!("{who} saw len {len} > cap {:?}", self.cap));
        }
    }
}

fn run_sender(
    sh: &Shared,
    id: usize,
    plan: &SenderPlan,
    tx: Sender<Item>,
    never: &Receiver<Item>,
) -> Report {
    if let Some(b) = &sh.start {
        b.wait();
    }
    let mut outcomes = Vec::new();
    let mut spins = 0;
    for (seq, how) in plan.items.iter().enumerate() {
        let v = Item::new(&sh.ledger, id, seq);
        let back = match how {
            SendHow::Block => tx.send(v).err().map(|e| e.into_inner()),
            SendHow::YieldThenBlock => {
                match plan.place {
                    Place::Fiber => fibra::yield_now(),
                    Place::Thread => std::thread::yield_now(),
                }
                tx.send(v).err().map(|e| e.into_inner())
            }
            SendHow::Try => {
                let mut v = v;
                loop {
                    match tx.try_send(v) {
                        Ok(()) => break None,
                        Err(TrySendError::Disconnected(v)) => break Some(v),
                        Err(TrySendError::Full(back)) => v = back,
                    }
                    if backoff(plan.place, &mut spins) {
                        // Two try-loops never meet on a rendezvous channel: wait a little.
                        match tx.send_timeout(v, Duration::from_millis(1)) {
                            Ok(()) => break None,
                            Err(SendTimeoutError::Disconnected(v)) => break Some(v),
                            Err(SendTimeoutError::Timeout(back)) => v = back,
                        }
                    }
                }
            }
            SendHow::Timeout => {
                let mut v = v;
                loop {
                    match tx.send_timeout(v, Duration::from_millis(1)) {
                        Ok(()) => break None,
                        Err(SendTimeoutError::Disconnected(v)) => break Some(v),
                        Err(SendTimeoutError::Timeout(back)) => v = back,
                    }
                }
            }
            SendHow::Select => fibra::select! {
                send(tx, v) -> r => r.err().map(|e| e.into_inner()),
                recv(never) -> _ => return Report::Broken("`never` delivered".into()),
            },
        };
        sh.check_len(tx.len(), "sender");
        match back {
            None => outcomes.push(true),
            Some(v) if v.id() == (id, seq) => outcomes.push(false),
            Some(v) => return Report::Broken(format!("sender {id} got back {v:?}, not {seq}")),
        }
    }
    Report::Sender((id, outcomes))
}

fn run_receiver(
    sh: &Shared,
    id: usize,
    plan: &ReceiverPlan,
    rx: Receiver<Item>,
    never: &Receiver<Item>,
) -> Report {
    if let Some(b) = &sh.start {
        b.wait();
    }
    let mut rep = ReceiverReport::default();
    let mut spins = 0;
    for i in 0.. {
        if plan.stop_after == Some(rep.got.len()) {
            break;
        }
        let got = match plan.how[i % plan.how.len()] {
            RecvHow::Block => rx.recv().ok(),
            RecvHow::Try => loop {
                match rx.try_recv() {
                    Ok(v) => break Some(v),
                    Err(TryRecvError::Disconnected) => break None,
                    Err(TryRecvError::Empty) => {}
                }
                if backoff(plan.place, &mut spins) {
                    // As in `SendHow::Try`.
                    match rx.recv_timeout(Duration::from_millis(1)) {
                        Ok(v) => break Some(v),
                        Err(RecvTimeoutError::Disconnected) => break None,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            },
            RecvHow::Timeout => loop {
                match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(v) => break Some(v),
                    Err(RecvTimeoutError::Disconnected) => break None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            },
            RecvHow::Select => fibra::select! {
                recv(rx) -> r => r.ok(),
                recv(never) -> _ => return Report::Broken("`never` delivered".into()),
            },
            RecvHow::SelectTimeout => loop {
                let r = fibra::select! {
                    recv(rx) -> r => Some(r.ok()),
                    default(Duration::from_millis(1)) => None,
                };
                if let Some(r) = r {
                    break r;
                }
            },
        };
        sh.check_len(rx.len(), "receiver");
        let Some(item) = got else {
            rep.disconnected = true;
            break;
        };
        rep.got.push(item.id());
        drop(item);
        let mut tally = match plan.lock {
            LockHow::Lock => sh.tally.lock(),
            LockHow::TryLock => loop {
                if let Some(g) = sh.tally.try_lock() {
                    break g;
                }
                if backoff(plan.place, &mut spins) {
                    if let Some(g) = sh.tally.lock_timeout(Duration::from_millis(1)) {
                        break g;
                    }
                }
            },
            LockHow::LockTimeout => loop {
                if let Some(g) = sh.tally.lock_timeout(Duration::from_millis(1)) {
                    break g;
                }
            },
        };
        if sh.inside.swap(true, SeqCst) {
            return Report::Broken("two holders of the tally lock".into());
        }
        *tally += 1;
        sh.inside.store(false, SeqCst);
    }
    drop(rx); // before reporting: the report must not wait for this drop's effects
    Report::Receiver(id, rep)
}

/// Runs `p`; returns every report (and the joined threads' and fibers' panics as `Broken`).
fn run_program(p: &Program, ledger: &Arc<Ledger>) -> (Vec<Report>, usize) {
    let shared = Arc::new(Shared {
        ledger: ledger.clone(),
        cap: p.flavor.cap(),
        start: p
            .abandon
            .is_none()
            .then(|| fibra::sync::Barrier::new(p.senders.len() + p.receivers.len())),
        tally: fibra::sync::Mutex::new(0),
        inside: AtomicBool::new(false),
        broken: std::sync::Mutex::new(Vec::new()),
    });
    let p2 = p.clone();
    let sh = shared.clone();
    let (reports, threads) = run_on(p.workers, move || {
        let (tx, rx) = p2.flavor.make::<Item>();
        let (never_tx, never_rx) = chan::unbounded::<Item>();
        let (done_tx, done_rx) = chan::unbounded::<Report>();
        let mut threads = Vec::new();
        let mut fibers = Vec::new();
        let mut start = |place: Place, f: Box<dyn FnOnce() -> Report + Send>| {
            let done = done_tx.clone();
            let body = move || {
                let _ = done.send(f());
            };
            match place {
                Place::Fiber => fibers.push(fibra::spawn(body)),
                Place::Thread => threads.push(std::thread::spawn(body)),
            }
        };
        for (id, plan) in p2.senders.iter().enumerate() {
            let (sh, plan, tx, never) = (sh.clone(), plan.clone(), tx.clone(), never_rx.clone());
            start(
                plan.place,
                Box::new(move || run_sender(&sh, id, &plan, tx, &never)),
            );
        }
        for (id, plan) in p2.receivers.iter().enumerate() {
            let (sh, plan, rx, never) = (sh.clone(), plan.clone(), rx.clone(), never_rx.clone());
            start(
                plan.place,
                Box::new(move || run_receiver(&sh, id, &plan, rx, &never)),
            );
        }
        drop((tx, rx, done_tx));
        if let Some(n) = p2.abandon {
            for _ in 0..n {
                fibra::yield_now();
            }
            // Shutdown unwinds the fibers; the threads' partners disconnect, so they end.
            return (Vec::new(), threads);
        }
        // Ends when every participant has reported (or died: its `done` clone is gone).
        let mut reports: Vec<Report> = done_rx.iter().collect();
        for f in fibers {
            if let Err(e) = f.join() {
                reports.push(Report::Broken(format!("a fiber failed: {e:?}")));
            }
        }
        drop(never_tx);
        (reports, threads)
    });
    let mut reports = reports;
    for t in threads {
        if t.join().is_err() {
            reports.push(Report::Broken("a thread panicked".into()));
        }
    }
    for b in shared.broken.lock().unwrap().drain(..) {
        reports.push(Report::Broken(b));
    }
    let tally = *shared.tally.lock();
    (reports, tally)
}

fn check_program(p: &Program) -> Result<(), TestCaseError> {
    let ledger = Ledger::new(p.senders.len());
    let (reports, tally) = run_program(p, &ledger);
    if p.abandon.is_some() {
        // Reports are lost with the session; what is left to check is that every item made
        // (sent, in a parked sender's hands, buffered, or received) was dropped once.
        for r in reports {
            if let Report::Broken(why) = r {
                prop_assert!(false, "{}", why);
            }
        }
        for (s, plan) in p.senders.iter().enumerate() {
            for q in 0..plan.items.len() {
                let made = ledger.made(s, q);
                prop_assert!(made <= 1);
                prop_assert_eq!(ledger.drops(s, q), made, "drops of item {}.{}", s, q);
            }
        }
        return Ok(());
    }
    let mut sent: Vec<Option<Vec<bool>>> = vec![None; p.senders.len()];
    let mut received: Vec<Option<ReceiverReport>> = (0..p.receivers.len()).map(|_| None).collect();
    for r in reports {
        match r {
            Report::Sender((id, outcomes)) => sent[id] = Some(outcomes),
            Report::Receiver(id, rep) => received[id] = Some(rep),
            Report::Broken(why) => prop_assert!(false, "{}", why),
        }
    }
    let sent: Vec<Vec<bool>> = sent
        .into_iter()
        .enumerate()
        .map(|(id, s)| s.unwrap_or_else(|| panic!("sender {id} did not report")))
        .collect();
    let received: Vec<ReceiverReport> = received
        .into_iter()
        .enumerate()
        .map(|(id, r)| r.unwrap_or_else(|| panic!("receiver {id} did not report")))
        .collect();

    // Nothing duplicated; only sent items arrive; each receiver sees each sender in order.
    let mut seen = HashSet::new();
    for (rid, rep) in received.iter().enumerate() {
        let mut last: Vec<Option<usize>> = vec![None; p.senders.len()];
        for &(s, q) in &rep.got {
            prop_assert!(seen.insert((s, q)), "item {}.{} received twice", s, q);
            prop_assert!(sent[s][q], "item {}.{} was handed back, yet received", s, q);
            prop_assert!(
                last[s] < Some(q),
                "receiver {} got {}.{} after {}.{:?}",
                rid,
                s,
                q,
                s,
                last[s]
            );
            last[s] = Some(q);
        }
    }
    prop_assert_eq!(tally, seen.len(), "tally under the lock");
    // Once a send is handed back (every receiver gone), so is every later one.
    for (s, outcomes) in sent.iter().enumerate() {
        if let Some(first) = outcomes.iter().position(|ok| !ok) {
            prop_assert!(
                outcomes[first..].iter().all(|ok| !ok),
                "sender {} sent after a handed-back send: {:?}",
                s,
                outcomes
            );
        }
    }
    // A receiver that ran until disconnection outlived every sender: every item sent was
    // received (items buffered when the senders left included) and none was handed back.
    if received.iter().any(|r| r.disconnected) {
        for (s, outcomes) in sent.iter().enumerate() {
            for (q, &ok) in outcomes.iter().enumerate() {
                prop_assert!(ok, "item {}.{} handed back while a receiver lasted", s, q);
                prop_assert!(seen.contains(&(s, q)), "item {}.{} lost", s, q);
            }
        }
    }
    // Every item created was dropped exactly once: received, handed back, or dropped with
    // the buffer by the last receiver.
    for (s, outcomes) in sent.iter().enumerate() {
        for q in 0..outcomes.len() {
            prop_assert_eq!(ledger.drops(s, q), 1, "drops of item {}.{}", s, q);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn concurrent_programs_lose_nothing(p in program()) {
        let _w = common::watchdog_for("concurrent_programs_lose_nothing", CASE_LIMIT);
        trace(&p);
        check_program(&p)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. `select!` over several receivers: each item reaches exactly one consumer.

#[derive(Debug, Clone, Copy)]
enum SelectHow {
    /// `select!` without default.
    Block,
    /// `select!` with `default`, retried after a backoff.
    Default,
    /// `select!` with `default(1 ms)`, retried.
    Timeout,
}

#[derive(Debug, Clone)]
struct Feeder {
    place: Place,
    /// The channel it sends into (modulo the channel count).
    chan: usize,
    items: usize,
}

#[derive(Debug, Clone)]
struct Consumer {
    place: Place,
    /// Cycled per `select!`.
    how: Vec<SelectHow>,
}

#[derive(Debug, Clone)]
struct SelectProgram {
    workers: usize,
    /// One to three channels.
    chans: Vec<Flavor>,
    feeders: Vec<Feeder>,
    consumers: Vec<Consumer>,
}

fn select_program() -> impl Strategy<Value = SelectProgram> {
    let how = prop_oneof![
        Just(SelectHow::Block),
        Just(SelectHow::Default),
        Just(SelectHow::Timeout)
    ];
    let feeder = (place(), 0usize..3, 0usize..16).prop_map(|(place, chan, items)| Feeder {
        place,
        chan,
        items,
    });
    let consumer = (place(), prop::collection::vec(how, 1..4))
        .prop_map(|(place, how)| Consumer { place, how });
    (
        1usize..=3,
        prop::collection::vec(flavor(), 1..=3),
        prop::collection::vec(feeder, 1..=4),
        prop::collection::vec(consumer, 1..=3),
    )
        .prop_map(|(workers, chans, mut feeders, consumers)| {
            for f in &mut feeders {
                f.chan %= chans.len();
            }
            SelectProgram {
                workers,
                chans,
                feeders,
                consumers,
            }
        })
}

/// One `select!` over three receivers (`recv` arms; arm `i` is `rxs[i]`). `Some(Err(i))`: arm
/// `i` is disconnected; `None`: the default ran.
fn select3(rxs: [&Receiver<Item>; 3], how: SelectHow) -> Option<Result<(usize, Item), usize>> {
    let arm =
        |i: usize| move |r: Result<Item, chan::RecvError>| Some(r.map(|v| (i, v)).map_err(|_| i));
    match how {
        SelectHow::Block => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
        },
        SelectHow::Default => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
            default => None,
        },
        SelectHow::Timeout => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
            default(Duration::from_millis(1)) => None,
        },
    }
}

/// Selects until every channel is disconnected; returns what arrived, in order. An arm whose
/// channel is disconnected (or absent) selects on `never` instead, which stays open and empty.
fn consume(c: &Consumer, rxs: Vec<Receiver<Item>>, never: Receiver<Item>) -> Vec<(usize, usize)> {
    let mut open: Vec<Option<Receiver<Item>>> = rxs.into_iter().map(Some).collect();
    open.resize_with(3, || None);
    let mut got = Vec::new();
    let mut spins = 0;
    for i in 0.. {
        if open.iter().all(Option::is_none) {
            break;
        }
        let arms = [0, 1, 2].map(|a| open[a].as_ref().unwrap_or(&never));
        let how = c.how[i % c.how.len()];
        match select3(arms, how) {
            Some(Ok((_, item))) => got.push(item.id()),
            Some(Err(arm)) => open[arm] = None,
            None => {
                if let SelectHow::Default = how {
                    // Two `default` loops on a rendezvous never meet: wait a little at times.
                    if backoff(c.place, &mut spins) {
                        let arms = [0, 1, 2].map(|a| open[a].as_ref().unwrap_or(&never));
                        match select3(arms, SelectHow::Timeout) {
                            Some(Ok((_, item))) => got.push(item.id()),
                            Some(Err(arm)) => open[arm] = None,
                            None => {}
                        }
                    }
                }
            }
        }
    }
    got
}

fn check_select(p: &SelectProgram) -> Result<(), TestCaseError> {
    let ledger = Ledger::new(p.feeders.len());
    let p2 = p.clone();
    let l2 = ledger.clone();
    let (got, threads, failures) = run_on(p.workers, move || {
        let chans: Vec<_> = p2.chans.iter().map(|f| f.make::<Item>()).collect();
        let (never_tx, never_rx) = chan::unbounded::<Item>();
        let mut fibers = Vec::new();
        let mut threads = Vec::new();
        let mut failures = Vec::new();
        // Consumers report what they got; feeders report nothing (every send must succeed:
        // consumers hold their receivers until disconnection).
        let (got_tx, got_rx) = chan::unbounded::<Vec<(usize, usize)>>();
        // Thread consumers and feeders are counted down here, so the root parks, not blocks.
        let threads_done = Arc::new(fibra::sync::WaitGroup::new());
        let mut start = |place: Place, f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
            match place {
                Place::Fiber => fibers.push(fibra::spawn(f)),
                Place::Thread => {
                    threads_done.add(1);
                    let wg = threads_done.clone();
                    threads.push(std::thread::spawn(move || {
                        /// Counts down even if `f` panics.
                        struct Done(Arc<fibra::sync::WaitGroup>);
                        impl Drop for Done {
                            fn drop(&mut self) {
                                self.0.done();
                            }
                        }
                        let _done = Done(wg);
                        f()
                    }));
                }
            }
        };
        for c in &p2.consumers {
            let (c, never, out) = (c.clone(), never_rx.clone(), got_tx.clone());
            let rxs: Vec<_> = chans.iter().map(|(_, rx)| rx.clone()).collect();
            start(
                c.place,
                Box::new(move || {
                    out.send(consume(&c, rxs, never))
                        .map_err(|_| "report lost".to_string())
                }),
            );
        }
        for (id, f) in p2.feeders.iter().enumerate() {
            let (f, tx, ledger) = (f.clone(), chans[f.chan].0.clone(), l2.clone());
            start(
                f.place,
                Box::new(move || {
                    for seq in 0..f.items {
                        if let Err(e) = tx.send(Item::new(&ledger, id, seq)) {
                            return Err(format!("feeder {id} handed back {:?}", e.into_inner()));
                        }
                    }
                    Ok(())
                }),
            );
        }
        drop((chans, got_tx));
        for f in fibers {
            match f.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("a fiber failed: {e:?}")),
            }
        }
        threads_done.wait();
        let got: Vec<_> = got_rx.iter().collect();
        drop(never_tx);
        (got, threads, failures)
    });
    let mut failures = failures;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a thread panicked".into()),
        }
    }
    prop_assert!(failures.is_empty(), "{:?}", failures);
    prop_assert_eq!(got.len(), p.consumers.len(), "every consumer reports");
    let mut seen = HashSet::new();
    for (c, items) in got.iter().enumerate() {
        let mut last: Vec<Option<usize>> = vec![None; p.feeders.len()];
        for &(s, q) in items {
            prop_assert!(seen.insert((s, q)), "item {}.{} selected twice", s, q);
            prop_assert!(
                last[s] < Some(q),
                "consumer {} got {}.{} after {:?}",
                c,
                s,
                q,
                last[s]
            );
            last[s] = Some(q);
        }
    }
    for (s, f) in p.feeders.iter().enumerate() {
        for q in 0..f.items {
            prop_assert!(seen.contains(&(s, q)), "item {}.{} never selected", s, q);
            prop_assert_eq!(ledger.drops(s, q), 1, "drops of item {}.{}", s, q);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn select_delivers_each_item_once(p in select_program()) {
        let _w = common::watchdog_for("select_delivers_each_item_once", CASE_LIMIT);
        trace(&p);
        check_select(&p)?;
    }
}
