//! Property test of the scheduler's accounting (issue 13): random trees of fibers that yield,
//! sleep, take a shared lock, spawn children (joined now, joined later, detached, or handed
//! out of the session), park until their parent unparks them (or forever), and end by
//! returning, panicking or parking until shutdown. Whatever the schedule:
//! - each fiber's body ran at most once (exactly once if it finished);
//! - a join returns the fiber's own value, or `JoinError::Panicked` with its own payload, or
//!   `JoinError::Cancelled` only for a fiber that neither returned nor panicked (the session
//!   ended first), and every fiber the root joins (transitively) finished;
//! - every value a fiber owned (its closure's captures, its locals, its result, its panic
//!   payload) was dropped exactly once once the session is over and the handles are gone;
//! - the session ends (`fibra::run` / `block_on` returns) with fibers parked forever.
//!
//! Case count: `PROPTEST_CASES` overrides the default below. Failures are not persisted
//! (`failure_persistence: None`): nothing is written into the tree; the shrunk program is
//! printed and becomes a named regression test by hand. `PROP_TRACE=1` prints every case
//! first (the watchdog aborts a hung case without shrinking).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::time::Duration;

use fibra::{JoinError, JoinHandle};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

mod common;

/// A case that runs longer than this has hung.
const CASE_LIMIT: Duration = Duration::from_secs(30);

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

// ---------------------------------------------------------------------------------------------
// Programs.

#[derive(Debug, Clone)]
enum Step {
    Yield,
    /// `fibra::sleep` for this many milliseconds.
    Sleep(u8),
    /// Lock the shared `fibra::sync::Mutex`, yield while holding it, unlock.
    Lock,
    Spawn(Box<FiberPlan>, Use),
}

/// What the parent does with a child's `JoinHandle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    JoinNow,
    /// After the parent's last step.
    JoinLater,
    /// Dropped at once.
    Detach,
    /// Handed out of the session; the test joins it after the runtime is gone.
    Export,
}

/// Does the child park at its start until its parent unparks it?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    No,
    /// Unparked by the parent: at once for `JoinNow`, else after the parent's last step.
    Unparked,
    /// Never unparked: parked until shutdown.
    Forgotten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Return,
    Panic,
    /// `loop { fibra::park() }`.
    ParkForever,
    /// `loop { fibra::sleep(1 h) }`.
    SleepForever,
    /// `recv` on a channel whose sender it holds itself.
    RecvForever,
    /// `send` of a value it owns on a rendezvous channel nobody receives from.
    SendForever,
    /// `select!` with a send arm (carrying a value it owns) and a recv arm, neither ready.
    SelectForever,
    /// `acquire` on a semaphore without permits.
    AcquireForever,
}

#[derive(Debug, Clone)]
struct FiberPlan {
    /// Pre-order number; the root is 0 (assigned after generation).
    id: usize,
    wait: Wait,
    steps: Vec<Step>,
    end: End,
}

#[derive(Debug, Clone)]
struct Program {
    /// `None`: `fibra::run` (default workers).
    workers: Option<usize>,
    root: FiberPlan,
}

fn fiber_plan(depth: u32) -> BoxedStrategy<FiberPlan> {
    let simple = prop_oneof![
        Just(Step::Yield),
        (0u8..3).prop_map(Step::Sleep),
        Just(Step::Lock),
    ];
    let step = if depth == 0 {
        simple.boxed()
    } else {
        let use_ = prop_oneof![
            Just(Use::JoinNow),
            Just(Use::JoinLater),
            Just(Use::Detach),
            Just(Use::Export),
        ];
        prop_oneof![
            3 => simple,
            2 => (fiber_plan(depth - 1), use_).prop_map(|(p, u)| Step::Spawn(Box::new(p), u)),
        ]
        .boxed()
    };
    let wait = prop_oneof![
        4 => Just(Wait::No),
        2 => Just(Wait::Unparked),
        1 => Just(Wait::Forgotten),
    ];
    let end = prop_oneof![
        6 => Just(End::Return),
        3 => Just(End::Panic),
        1 => Just(End::ParkForever),
        1 => Just(End::SleepForever),
        1 => Just(End::RecvForever),
        1 => Just(End::SendForever),
        1 => Just(End::SelectForever),
        1 => Just(End::AcquireForever),
    ];
    (wait, prop::collection::vec(step, 0..4), end)
        .prop_map(|(wait, steps, end)| FiberPlan {
            id: 0,
            wait,
            steps,
            end,
        })
        .boxed()
}

/// Does this fiber return or panic under every schedule (rather than wait for shutdown)?
fn finishes(p: &FiberPlan) -> bool {
    p.wait != Wait::Forgotten
        && matches!(p.end, End::Return | End::Panic)
        && p.steps.iter().all(|s| match s {
            Step::Spawn(c, Use::JoinNow | Use::JoinLater) => finishes(c),
            _ => true,
        })
}

/// Numbers the fibers in pre-order from `next`; returns the next free number.
fn number(p: &mut FiberPlan, next: usize) -> usize {
    p.id = next;
    let mut next = next + 1;
    for s in &mut p.steps {
        if let Step::Spawn(c, _) = s {
            next = number(c, next);
        }
    }
    next
}

/// Fibers the root joins, directly or through joined fibers: they must finish.
fn must_finish(p: &FiberPlan, out: &mut Vec<usize>) {
    out.push(p.id);
    for s in &p.steps {
        if let Step::Spawn(c, Use::JoinNow | Use::JoinLater) = s {
            must_finish(c, out);
        }
    }
}

fn program() -> impl Strategy<Value = Program> {
    let workers = prop_oneof![1 => Just(None), 3 => (1usize..=3).prop_map(Some)];
    (
        workers,
        prop::collection::vec(fiber_plan(3).prop_map(|p| p.steps), 1..5),
    )
        .prop_map(|(workers, steps)| {
            // The root must return: it does not wait, returns, and hands out (rather than
            // joins) every child that may never finish.
            let mut root = FiberPlan {
                id: 0,
                wait: Wait::No,
                steps: steps.into_iter().flatten().collect(),
                end: End::Return,
            };
            for s in &mut root.steps {
                if let Step::Spawn(c, u @ (Use::JoinNow | Use::JoinLater)) = s {
                    if !finishes(c) {
                        *u = Use::Export;
                    }
                }
            }
            number(&mut root, 0);
            Program { workers, root }
        })
}

fn count(p: &FiberPlan) -> usize {
    1 + p
        .steps
        .iter()
        .map(|s| match s {
            Step::Spawn(c, _) => count(c),
            _ => 0,
        })
        .sum::<usize>()
}

// ---------------------------------------------------------------------------------------------
// What the fibers record.

/// What a fiber owns, one token each: its closure's capture, a local, its result, its panic
/// payload, the value it is sending when parked until shutdown in a channel send.
const CLOSURE: usize = 0;
const LOCAL: usize = 1;
const RESULT: usize = 2;
const PAYLOAD: usize = 3;
const SENT: usize = 4;
const KINDS: usize = 5;

/// Tokens made and dropped, by `fiber * KINDS + kind`.
struct Ledger {
    made: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
}

/// Counts its creation and its drop in the ledger.
struct Token {
    slot: usize,
    ledger: Arc<Ledger>,
}

impl Token {
    fn new(ledger: &Arc<Ledger>, fiber: usize, kind: usize) -> Token {
        let slot = fiber * KINDS + kind;
        ledger.made[slot].fetch_add(1, SeqCst);
        Token {
            slot,
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.ledger.dropped[self.slot].fetch_add(1, SeqCst);
    }
}

/// A fiber's return value.
struct Out {
    id: usize,
    _token: Token,
}

/// A fiber's panic payload (`panic_any`).
struct Payload {
    id: usize,
    _token: Token,
}

/// Silences the panic hook for `Payload` panics (expected); others print as usual.
fn quiet_payload_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Payload>() {
                prev(info);
            }
        }));
    });
}

/// A join's outcome as seen by whoever joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Returned,
    Panicked,
    Cancelled,
}

/// Shared by every fiber of a case.
struct Ctx {
    ledger: Arc<Ledger>,
    started: Vec<AtomicUsize>,
    returned: Vec<AtomicBool>,
    panicking: Vec<AtomicBool>,
    /// (fiber, what its joiner saw), or an impossible join result.
    seen: std::sync::Mutex<Vec<Result<(usize, Seen), String>>>,
    exported: std::sync::Mutex<Vec<(usize, JoinHandle<Out>)>>,
    lock: fibra::sync::Mutex<usize>,
    locked: AtomicUsize,
}

impl Ctx {
    /// Checks and records a join's result for fiber `id`, then drops it.
    fn record(&self, id: usize, r: Result<Out, JoinError>) {
        let seen = match r {
            Ok(out) if out.id == id => Ok((id, Seen::Returned)),
            Ok(out) => Err(format!(
                "join of fiber {id} returned fiber {}'s value",
                out.id
            )),
            Err(JoinError::Cancelled) => Ok((id, Seen::Cancelled)),
            Err(e) => match e.into_panic().map(|p| p.downcast::<Payload>()) {
                Some(Ok(p)) if p.id == id => Ok((id, Seen::Panicked)),
                Some(Ok(p)) => Err(format!("fiber {id} panicked with fiber {}'s payload", p.id)),
                _ => Err(format!("fiber {id}: a join error that is not its payload")),
            },
        };
        self.seen.lock().unwrap().push(seen);
    }
}

/// The body of fiber `plan.id`. `token` is the closure's capture; `go` is set before the
/// parent unparks it.
fn run_fiber(plan: FiberPlan, ctx: Arc<Ctx>, token: Token, go: Arc<AtomicBool>) -> Out {
    let _captured = token;
    let id = plan.id;
    ctx.started[id].fetch_add(1, SeqCst);
    let _local = Token::new(&ctx.ledger, id, LOCAL);
    if plan.wait != Wait::No {
        while !go.load(SeqCst) {
            fibra::park(); // may return spuriously
        }
    }
    let mut unpark_later = Vec::new();
    let mut join_later = Vec::new();
    for step in plan.steps {
        match step {
            Step::Yield => fibra::yield_now(),
            Step::Sleep(ms) => fibra::sleep(Duration::from_millis(ms.into())),
            Step::Lock => {
                let mut g = ctx.lock.lock();
                *g += 1;
                ctx.locked.fetch_add(1, SeqCst);
                fibra::yield_now();
                drop(g);
            }
            Step::Spawn(child, how) => {
                let (cid, wait) = (child.id, child.wait);
                let go = Arc::new(AtomicBool::new(false));
                let t = Token::new(&ctx.ledger, cid, CLOSURE);
                let (c2, g2) = (ctx.clone(), go.clone());
                let h = fibra::spawn(move || run_fiber(*child, c2, t, g2));
                if wait == Wait::Unparked {
                    if how == Use::JoinNow {
                        go.store(true, SeqCst);
                        h.fiber().unpark();
                    } else {
                        unpark_later.push((go, h.fiber().clone()));
                    }
                }
                match how {
                    Use::JoinNow => ctx.record(cid, h.join()),
                    Use::JoinLater => join_later.push((cid, h)),
                    Use::Detach => drop(h),
                    Use::Export => ctx.exported.lock().unwrap().push((cid, h)),
                }
            }
        }
    }
    for (go, fiber) in unpark_later {
        go.store(true, SeqCst);
        fiber.unpark();
    }
    for (cid, h) in join_later {
        ctx.record(cid, h.join());
    }
    match plan.end {
        End::Return => {
            let out = Out {
                id,
                _token: Token::new(&ctx.ledger, id, RESULT),
            };
            ctx.returned[id].store(true, SeqCst); // nothing below can park
            out
        }
        End::Panic => {
            let payload = Payload {
                id,
                _token: Token::new(&ctx.ledger, id, PAYLOAD),
            };
            ctx.panicking[id].store(true, SeqCst);
            std::panic::panic_any(payload)
        }
        End::ParkForever => loop {
            fibra::park();
        },
        End::SleepForever => loop {
            fibra::sleep(Duration::from_secs(3600));
        },
        End::RecvForever => {
            let (_tx, rx) = fibra::chan::bounded::<()>(0);
            loop {
                let _ = rx.recv();
            }
        }
        End::SendForever => {
            let (tx, _rx) = fibra::chan::bounded(0);
            let _ = tx.send(Token::new(&ctx.ledger, id, SENT));
            unreachable!("nobody receives");
        }
        End::SelectForever => {
            let (tx, _rx) = fibra::chan::bounded(0);
            let (_tx2, rx2) = fibra::chan::unbounded::<()>();
            fibra::select! {
                send(tx, Token::new(&ctx.ledger, id, SENT)) -> _ => unreachable!("nobody receives"),
                recv(rx2) -> _ => unreachable!("nobody sends"),
            }
        }
        End::AcquireForever => {
            let none = fibra::sync::Semaphore::new(0);
            let _permit = none.acquire();
            unreachable!("no permits");
        }
    }
}

fn check(p: &Program) -> Result<(), TestCaseError> {
    quiet_payload_panics();
    let n = count(&p.root);
    let ledger = Arc::new(Ledger {
        made: (0..n * KINDS).map(|_| AtomicUsize::new(0)).collect(),
        dropped: (0..n * KINDS).map(|_| AtomicUsize::new(0)).collect(),
    });
    let ctx = Arc::new(Ctx {
        ledger: ledger.clone(),
        started: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        returned: (0..n).map(|_| AtomicBool::new(false)).collect(),
        panicking: (0..n).map(|_| AtomicBool::new(false)).collect(),
        seen: std::sync::Mutex::new(Vec::new()),
        exported: std::sync::Mutex::new(Vec::new()),
        lock: fibra::sync::Mutex::new(0),
        locked: AtomicUsize::new(0),
    });
    let root = {
        let (plan, c) = (p.root.clone(), ctx.clone());
        let t = Token::new(&ledger, 0, CLOSURE);
        move || run_fiber(plan, c, t, Arc::new(AtomicBool::new(true)))
    };
    let out = match p.workers {
        None => fibra::run(root),
        Some(w) => fibra::Runtime::builder()
            .workers(w)
            .build()
            .unwrap()
            .run(root),
    };
    prop_assert_eq!(out.id, 0);
    drop(out);
    // The session is over: exported fibers are finished or cancelled; join them here.
    let exported = std::mem::take(&mut *ctx.exported.lock().unwrap());
    for (id, h) in exported {
        prop_assert!(h.is_finished(), "fiber {} unfinished after the session", id);
        ctx.record(id, h.join());
    }

    let mut must = Vec::new();
    must_finish(&p.root, &mut must);
    let mut joined = vec![None; n];
    for s in ctx.seen.lock().unwrap().iter() {
        let &(id, seen) = s.as_ref().map_err(|e| TestCaseError::fail(e.clone()))?;
        prop_assert!(joined[id].is_none(), "fiber {} joined twice", id);
        joined[id] = Some(seen);
    }
    for (id, &seen) in joined.iter().enumerate() {
        let started = ctx.started[id].load(SeqCst);
        let returned = ctx.returned[id].load(SeqCst);
        let panicked = ctx.panicking[id].load(SeqCst);
        prop_assert!(started <= 1, "fiber {} ran {} times", id, started);
        prop_assert!(!(returned && panicked));
        if returned || panicked {
            prop_assert_eq!(started, 1, "fiber {} finished without running once", id);
        }
        if must.contains(&id) {
            prop_assert!(returned || panicked, "joined fiber {} did not finish", id);
        }
        if let Some(seen) = seen {
            let want = if returned {
                Seen::Returned
            } else if panicked {
                Seen::Panicked
            } else {
                Seen::Cancelled
            };
            prop_assert_eq!(seen, want, "join of fiber {}", id);
        }
    }
    drop(ctx); // its exported handles are gone; the mutex and records go too
    for slot in 0..n * KINDS {
        let made = ledger.made[slot].load(SeqCst);
        let dropped = ledger.dropped[slot].load(SeqCst);
        prop_assert!(made <= 1, "token {:?} made {} times", Slot(slot), made);
        prop_assert_eq!(dropped, made, "drops of token {:?}", Slot(slot));
    }
    Ok(())
}

/// A ledger slot, printed as `fiber 3 result`.
struct Slot(usize);

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = ["closure", "local", "result", "payload", "sent"][self.0 % KINDS];
        write!(f, "fiber {} {kind}", self.0 / KINDS)
    }
}

fn trace(case: &dyn fmt::Debug) {
    if std::env::var_os("PROP_TRACE").is_some() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "case: {case:?}");
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn every_fiber_is_accounted_for(p in program()) {
        let _w = common::watchdog_for("every_fiber_is_accounted_for", CASE_LIMIT);
        trace(&p);
        check(&p)?;
    }
}
