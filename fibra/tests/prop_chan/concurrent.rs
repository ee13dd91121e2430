//! 2. Concurrent programs: fibers and threads, checked for what must hold under any schedule.

use super::*;

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
