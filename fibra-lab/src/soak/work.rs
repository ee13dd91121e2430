//! The soak's fibers besides the HTTP server: spawn churn, channels, sleepers and blocking
//! excursions. Each counts every operation at both ends in a [`Tally`], so the driver can
//! check after a clean stop that nothing went missing.
//!
//! Every loop checks the stop flag between operations and then ends cleanly: producers drop
//! their senders, consumers drain until disconnected, sleepers finish the sleep under way.
//! Nothing here blocks a worker: blocking calls run inside `fibra::blocking` or
//! `fibra::spawn_blocking`.

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::chan::{self, Receiver, Sender};
use fibra::{JoinError, JoinHandle};

/// Fibers spawned per round of a spawner before it joins them: enough that many are alive at
/// once (they run and finish while the spawner is still spawning), few enough that a round
/// takes well under a millisecond.
const SPAWN_ROUND: u64 = 64;
/// Spawner fibers.
const SPAWNERS: usize = 2;
/// One planned panic this often, the first at the start, goes through `panic!` and the panic
/// hook (a line on stderr, a backtrace with `RUST_BACKTRACE=1`); the others unwind with
/// `resume_unwind`, which skips the hook. The first backtrace loads the binary's debug
/// information (~75 MiB resident here, kept for the next ones): at the start it lands before
/// the warm-up's end, so it is not mistaken for growth.
const LOUD_PANIC_EVERY: Duration = Duration::from_secs(60);
/// Sleeper fibers, each sleeping 1–50 ms at a time: ~40k timer expiries a second.
const SLEEPERS: usize = 1_000;
const MAX_SLEEP_MS: u64 = 50;
/// Fibers making blocking excursions, one at a time each (so the pool needs few threads).
const BLOCKERS: usize = 3;
/// How far an unbounded channel's producers may run ahead of its consumer: the backlog (and
/// the memory it holds) stays bounded however the workers are scheduled. A producer that
/// finds it full sleeps [`BACKLOG_PAUSE`] (a consumer drains 4,096 items in well under that).
const UNBOUNDED_BACKLOG: u64 = 4_096;
const BACKLOG_PAUSE: Duration = Duration::from_millis(1);

/// The payload of a planned panic.
pub const PLANNED_PANIC: &str = "soak: a planned panic";

/// Every operation, counted at both ends (relaxed: read for progress while the load runs, and
/// exactly after every fiber was joined, which orders the final reads after all writes).
#[derive(Debug, Default)]
pub struct Tally {
    /// Fibers spawned by the spawners (joined, detached and scoped alike).
    pub spawned: AtomicU64,
    /// Joined with the value they were given.
    pub joined_ok: AtomicU64,
    /// Planned panics, joined as `JoinError::Panicked` (or ended by a scope's panic).
    pub joined_panicked: AtomicU64,
    /// Handles dropped at once; [`Tally::detached_done`] counts those that ended.
    pub detached: AtomicU64,
    pub detached_done: AtomicU64,
    /// Channel items sent (every kind of channel and `select!` arm) and received.
    pub items_sent: AtomicU64,
    pub items_received: AtomicU64,
    /// The sum of the items' values, sent and received (wrapping).
    pub sum_sent: AtomicU64,
    pub sum_received: AtomicU64,
    /// `select!` calls that completed an arm, and those that timed out.
    pub selects: AtomicU64,
    pub select_timeouts: AtomicU64,
    /// Sleeps begun and ended; ended before their time.
    pub sleeps_begun: AtomicU64,
    pub sleeps_ended: AtomicU64,
    pub sleeps_early: AtomicU64,
    /// Blocking excursions and `spawn_blocking` tasks submitted and returned.
    pub blocking_submitted: AtomicU64,
    pub blocking_returned: AtomicU64,
    /// Results that were not what the operation should give (a wrong joined value, a wrong
    /// blocking result, an unexpected join error): each is a bug.
    pub wrong: AtomicU64,
}

impl Tally {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// The shared state every soak fiber holds.
#[derive(Clone)]
pub struct Ctx {
    pub tally: Arc<Tally>,
    pub stop: Arc<AtomicBool>,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// Starts every load fiber; join them all after setting `ctx.stop` (each returns once its
/// loop has ended cleanly).
pub fn start(ctx: &Ctx) -> Vec<JoinHandle<()>> {
    let mut fibers = Vec::new();
    let mut named = |name: String, f: Box<dyn FnOnce() + Send>| {
        let h = fibra::Builder::new()
            .name(name)
            .spawn(f)
            .unwrap_or_else(|e| panic!("soak: cannot start a load fiber: {e}"));
        fibers.push(h);
    };
    for i in 0..SPAWNERS {
        let c = ctx.clone();
        named(format!("spawner-{i}"), Box::new(move || spawner(&c, i)));
    }
    for (name, f) in channels(ctx) {
        named(name, f);
    }
    for i in 0..SLEEPERS {
        let c = ctx.clone();
        named(
            format!("sleeper-{i}"),
            Box::new(move || sleeper(&c, i as u64)),
        );
    }
    for i in 0..BLOCKERS {
        let c = ctx.clone();
        named(
            format!("blocker-{i}"),
            Box::new(move || blocker(&c, i as u64)),
        );
    }
    fibers
}

/// Ends a detached fiber's count in its `Drop`, so a panicking one is counted too.
struct Done(Arc<Tally>);
impl Drop for Done {
    fn drop(&mut self) {
        Tally::add(&self.0.detached_done, 1);
    }
}

/// What a joined fiber should give.
enum Expect {
    Value(u64),
    Panic,
}

/// Spawn churn: rounds of [`SPAWN_ROUND`] fibers of several kinds, joined (or not) at once,
/// and a scope of borrowing fibers each round.
fn spawner(ctx: &Ctx, index: usize) {
    let t = &ctx.tally;
    let mut n = index as u64; // spawners take turns through the numbers: none is spawned twice
    let mut last_loud: Option<Instant> = None;
    let mut round: Vec<(JoinHandle<u64>, Expect)> = Vec::with_capacity(SPAWN_ROUND as usize);
    while !ctx.stopping() {
        for _ in 0..SPAWN_ROUND {
            n += SPAWNERS as u64;
            let v = n;
            match v % 16 {
                0 => {
                    // Detached: its handle is dropped before it runs.
                    let done = Done(t.clone());
                    drop(fibra::spawn(move || {
                        let _done = done;
                        fibra::yield_now();
                    }));
                    Tally::add(&t.detached, 1);
                }
                1 => {
                    // Detached, and it panics: nobody joins it, its `Done` still counts it.
                    let done = Done(t.clone());
                    drop(fibra::spawn(move || {
                        let _done = done;
                        panic::resume_unwind(Box::new(PLANNED_PANIC));
                    }));
                    Tally::add(&t.detached, 1);
                }
                2 => {
                    let loud =
                        index == 0 && last_loud.is_none_or(|t| t.elapsed() >= LOUD_PANIC_EVERY);
                    if loud {
                        last_loud = Some(Instant::now());
                    }
                    let h = fibra::spawn(move || -> u64 {
                        if loud {
                            panic!(
                                "{PLANNED_PANIC} (through the panic hook, once every {} s)",
                                LOUD_PANIC_EVERY.as_secs()
                            );
                        }
                        panic::resume_unwind(Box::new(PLANNED_PANIC))
                    });
                    round.push((h, Expect::Panic));
                }
                3 => {
                    // A fiber that spawns and joins its own child.
                    let h = fibra::spawn(move || {
                        fibra::spawn(move || v.wrapping_mul(3)).join().unwrap_or(0)
                    });
                    Tally::add(&t.spawned, 1); // the child; the parent is counted below
                    Tally::add(&t.joined_ok, 1); // …and joined by the parent (checked by value)
                    round.push((h, Expect::Value(v.wrapping_mul(3))));
                }
                4..=7 => {
                    let h = fibra::spawn(move || {
                        fibra::yield_now();
                        v.wrapping_mul(3)
                    });
                    round.push((h, Expect::Value(v.wrapping_mul(3))));
                }
                _ => {
                    let h = fibra::spawn(move || v.wrapping_mul(3));
                    round.push((h, Expect::Value(v.wrapping_mul(3))));
                }
            }
            Tally::add(&t.spawned, 1);
        }
        for (h, expect) in round.drain(..) {
            match (h.join(), expect) {
                (Ok(got), Expect::Value(want)) if got == want => Tally::add(&t.joined_ok, 1),
                (Err(JoinError::Panicked(_)), Expect::Panic) => Tally::add(&t.joined_panicked, 1),
                _ => Tally::add(&t.wrong, 1),
            }
        }
        scoped_round(t, n);
    }
}

/// A scope whose fibers borrow the spawner's stack: one fills a slice, the others read it.
fn scoped_round(t: &Tally, n: u64) {
    let mut cells = [0u64; 8];
    let total = AtomicU64::new(0);
    fibra::scope(|s| {
        let (head, tail) = cells.split_at_mut(4);
        s.spawn(|| head.iter_mut().for_each(|c| *c = n));
        s.spawn(|| tail.iter_mut().for_each(|c| *c = n));
    });
    fibra::scope(|s| {
        for c in cells.chunks(2) {
            let total = &total;
            s.spawn(move || total.fetch_add(c.iter().sum::<u64>() / n.max(1), Relaxed));
        }
    });
    // Two fibers filled, four summed; each ended within its scope.
    Tally::add(&t.spawned, 6);
    Tally::add(&t.joined_ok, 6);
    if total.into_inner() != 8 {
        Tally::add(&t.wrong, 1);
    }
}

/// An unbounded channel's items sent and not yet received, by all its producers together.
type Backlog = Arc<AtomicU64>;

/// A producer: sends increasing values until stopped, then drops its sender.
fn producer(ctx: &Ctx, tx: Sender<u64>, seed: u64, backlog: Option<Backlog>) {
    let t = &ctx.tally;
    let mut v = seed;
    while !ctx.stopping() {
        if let Some(backlog) = &backlog {
            // An unbounded channel: wait for the consumer rather than pile items up.
            if backlog.load(Relaxed) >= UNBOUNDED_BACKLOG {
                fibra::sleep(BACKLOG_PAUSE);
                continue;
            }
            backlog.fetch_add(1, Relaxed);
        }
        v = v.wrapping_add(1);
        if tx.send(v).is_err() {
            Tally::add(&t.wrong, 1); // the consumers are gone while a producer still sends
            return;
        }
        Tally::add(&t.items_sent, 1);
        Tally::add(&t.sum_sent, v);
    }
}

/// Counts one received item.
fn received(t: &Tally, v: u64) {
    Tally::add(&t.items_received, 1);
    Tally::add(&t.sum_received, v);
}

/// A consumer: receives until every sender is gone.
fn consumer(ctx: &Ctx, rx: Receiver<u64>, backlog: Option<Backlog>) {
    for v in rx.iter() {
        received(&ctx.tally, v);
        if let Some(backlog) = &backlog {
            backlog.fetch_sub(1, Relaxed);
        }
    }
}

type Fiber = (String, Box<dyn FnOnce() + Send>);

/// The channel fibers: 3 producers → 2 consumers over `bounded(64)`, 1 → 1 over a rendezvous
/// `bounded(0)`, 2 → 1 over `unbounded()`, and a `select!` loop receiving from two channels
/// and sending to a third.
fn channels(ctx: &Ctx) -> Vec<Fiber> {
    let mut fibers: Vec<Fiber> = Vec::new();
    let mut add = |name: &str, f: Box<dyn FnOnce() + Send>| fibers.push((name.to_string(), f));
    let seed = |i: u64| i << 40; // producers' values apart, so sums are not symmetric

    let (tx, rx) = chan::bounded::<u64>(64);
    for i in 0..3 {
        let (c, tx) = (ctx.clone(), tx.clone());
        add(
            "bounded-producer",
            Box::new(move || producer(&c, tx, seed(i), None)),
        );
    }
    for _ in 0..2 {
        let (c, rx) = (ctx.clone(), rx.clone());
        add("bounded-consumer", Box::new(move || consumer(&c, rx, None)));
    }
    drop((tx, rx));

    let (tx, rx) = chan::bounded::<u64>(0);
    let c = ctx.clone();
    add(
        "rendezvous-producer",
        Box::new(move || producer(&c, tx, seed(3), None)),
    );
    let c = ctx.clone();
    add(
        "rendezvous-consumer",
        Box::new(move || consumer(&c, rx, None)),
    );

    let (tx, rx) = chan::unbounded::<u64>();
    let backlog = Backlog::default();
    for i in 0..2 {
        let (c, tx, b) = (ctx.clone(), tx.clone(), backlog.clone());
        add(
            "unbounded-producer",
            Box::new(move || producer(&c, tx, seed(4 + i), Some(b))),
        );
    }
    let c = ctx.clone();
    add(
        "unbounded-consumer",
        Box::new(move || consumer(&c, rx, Some(backlog))),
    );
    drop(tx);

    // select!: receives from `a` (bounded) and `b` (unbounded), sends to `out`.
    let (a_tx, a_rx) = chan::bounded::<u64>(8);
    let (b_tx, b_rx) = chan::unbounded::<u64>();
    let (out_tx, out_rx) = chan::bounded::<u64>(4);
    let b_backlog = Backlog::default();
    let c = ctx.clone();
    add(
        "select-producer-a",
        Box::new(move || producer(&c, a_tx, seed(6), None)),
    );
    let (c, b) = (ctx.clone(), b_backlog.clone());
    add(
        "select-producer-b",
        Box::new(move || producer(&c, b_tx, seed(7), Some(b))),
    );
    let c = ctx.clone();
    add(
        "select-consumer",
        Box::new(move || consumer(&c, out_rx, None)),
    );
    let c = ctx.clone();
    add(
        "select",
        Box::new(move || selector(&c, a_rx, b_rx, out_tx, b_backlog)),
    );
    fibers
}

/// One `select!` over two receives, a send and a timeout, until stopped; then it drains both
/// inputs (their producers have stopped too) and drops its output.
fn selector(ctx: &Ctx, a: Receiver<u64>, b: Receiver<u64>, out: Sender<u64>, b_backlog: Backlog) {
    let t = &ctx.tally;
    let mut next = 9u64 << 40;
    // An input disconnects only once its producer saw the stop flag.
    let disconnected = || {
        if !ctx.stopping() {
            Tally::add(&t.wrong, 1);
        }
    };
    while !ctx.stopping() {
        fibra::select! {
            recv(a) -> m => match m {
                Ok(v) => received(t, v),
                Err(_) => disconnected(),
            },
            recv(b) -> m => match m {
                Ok(v) => {
                    received(t, v);
                    b_backlog.fetch_sub(1, Relaxed);
                }
                Err(_) => disconnected(),
            },
            send(out, next + 1) -> r => match r {
                Ok(()) => {
                    next += 1;
                    Tally::add(&t.items_sent, 1);
                    Tally::add(&t.sum_sent, next);
                }
                Err(_) => Tally::add(&t.wrong, 1),
            },
            default(Duration::from_millis(5)) => Tally::add(&t.select_timeouts, 1),
        }
        Tally::add(&t.selects, 1);
    }
    drop(out);
    a.iter().for_each(|v| received(t, v));
    b.iter().for_each(|v| received(t, v)); // its producer has stopped: no backlog to keep
}

/// xorshift64*: a fiber's own cheap random numbers (no shared state, no dependency).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Sleeps 1–[`MAX_SLEEP_MS`] ms at a time until stopped; a sleep that ends early is counted.
fn sleeper(ctx: &Ctx, i: u64) {
    let t = &ctx.tally;
    let mut rng = Rng::new(i + 1);
    while !ctx.stopping() {
        let dur = Duration::from_millis(1 + rng.below(MAX_SLEEP_MS));
        Tally::add(&t.sleeps_begun, 1);
        let began = Instant::now();
        if i % 4 == 0 {
            fibra::sleep_until(began + dur);
        } else {
            fibra::sleep(dur);
        }
        if began.elapsed() < dur {
            Tally::add(&t.sleeps_early, 1);
        }
        Tally::add(&t.sleeps_ended, 1);
    }
}

/// Blocking excursions until stopped: `fibra::blocking` borrowing a local, then a
/// `spawn_blocking` task (one in eight panics, joined as `JoinError::Panicked`).
fn blocker(ctx: &Ctx, i: u64) {
    let t = &ctx.tally;
    let mut rng = Rng::new(1_000 + i);
    let data: Vec<u64> = (0..256).collect();
    let mut k = 0u64;
    while !ctx.stopping() {
        let nap = Duration::from_micros(rng.below(1_000));
        Tally::add(&t.blocking_submitted, 1);
        let sum = fibra::run_blocking(|| {
            std::thread::sleep(nap);
            data.iter().sum::<u64>()
        });
        Tally::add(&t.blocking_returned, 1);
        if sum != 255 * 256 / 2 {
            Tally::add(&t.wrong, 1);
        }

        k += 1;
        let panics = k % 8 == 0;
        Tally::add(&t.blocking_submitted, 1);
        let joined = fibra::spawn_blocking(move || {
            std::thread::sleep(nap / 2);
            if panics {
                panic::resume_unwind(Box::new(PLANNED_PANIC));
            }
            k * 2
        })
        .join();
        Tally::add(&t.blocking_returned, 1);
        match joined {
            Ok(v) if !panics && v == k * 2 => {}
            Err(JoinError::Panicked(_)) if panics => {}
            _ => Tally::add(&t.wrong, 1),
        }
    }
}
