//! What a fiber owns is let go of on its own stack and thread, in order, and a destructor that
//! panics where nothing can unwind aborts with a message instead of leaving a worker's state
//! dangling (issue 13, holes 1 and 2).
//!
//! The aborting cases run in a child process (this binary again, the test picked by an
//! environment variable); the parent checks the child died of `SIGABRT` with the message, and
//! kills it and fails if it hangs, which is what the unfixed runtime did.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

mod common;

const CHILD: &str = "FIBRA_FIBER_EXIT_CHILD";

/// How long a child may take before it counts as hung (it needs well under a second).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(test)
}

/// Runs `test` as a child; returns its signal (if it died of one) and its stderr. Fails the
/// test if the child is still running after `CHILD_LIMIT`.
fn run_child(test: &str) -> (Option<i32>, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child `{test}` hung: {}", reader.join().unwrap());
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status.signal(), reader.join().unwrap())
}

fn assert_aborted_with(test: &str, message: &str) {
    let (signal, stderr) = run_child(test);
    assert_eq!(
        signal,
        Some(libc::SIGABRT),
        "child `{test}` did not abort: {stderr}"
    );
    assert!(
        stderr.contains(message),
        "child `{test}`: no `{message}` in: {stderr}"
    );
}

/// A value whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("PanicsOnDrop");
    }
}

#[test]
fn a_detached_fibers_result_that_panics_on_drop_aborts() {
    if is_child("a_detached_fibers_result_that_panics_on_drop_aborts") {
        fibra::run(|| {
            let (tx, rx) = fibra::chan::bounded::<()>(0);
            drop(fibra::spawn(move || {
                drop(tx);
                PanicsOnDrop
            }));
            let _ = rx.recv(); // the fiber is finishing; its result goes with it
            fibra::sleep(Duration::from_millis(50));
        });
        unreachable!("the runtime went on after a result panicked on drop");
    }
    assert_aborted_with(
        "a_detached_fibers_result_that_panics_on_drop_aborts",
        "fibra: a fiber's result panicked on drop",
    );
}

#[test]
fn a_detached_fibers_panic_payload_that_panics_on_drop_aborts() {
    if is_child("a_detached_fibers_panic_payload_that_panics_on_drop_aborts") {
        std::panic::set_hook(Box::new(|_| {})); // the payload is no string
        fibra::run(|| {
            let (tx, rx) = fibra::chan::bounded::<()>(0);
            drop(fibra::spawn(move || {
                drop(tx);
                std::panic::panic_any(PanicsOnDrop)
            }));
            let _ = rx.recv();
            fibra::sleep(Duration::from_millis(50));
        });
        unreachable!("the runtime went on after a panic payload panicked on drop");
    }
    assert_aborted_with(
        "a_detached_fibers_panic_payload_that_panics_on_drop_aborts",
        "fibra: a fiber's result panicked on drop",
    );
}

#[test]
fn a_never_run_closure_that_panics_on_drop_aborts_at_shutdown() {
    if is_child("a_never_run_closure_that_panics_on_drop_aborts_at_shutdown") {
        let rt = fibra::Runtime::builder()
            .workers(1)
            .monitor(false) // nothing may move the fiber away from the held worker
            .max_spare_workers(0)
            .build()
            .unwrap();
        rt.run(|| {
            let (tx, rx) = fibra::chan::bounded::<()>(1);
            drop(fibra::spawn(move || {
                rx.recv().unwrap();
                // Holds the only worker (without parking) until shutdown has begun.
                while fibra::Builder::new().spawn(|| ()).is_ok() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
            fibra::yield_now(); // the holder parks in `recv`
            tx.send(()).unwrap(); // it runs next, once the root is done
            let held = PanicsOnDrop;
            drop(fibra::spawn(move || drop(held))); // never runs: shutdown drops the closure
        });
        unreachable!("shutdown went on after a closure panicked on drop");
    }
    assert_aborted_with(
        "a_never_run_closure_that_panics_on_drop_aborts_at_shutdown",
        "fibra: a fiber's closure (it never ran) panicked on drop",
    );
}

#[test]
fn a_fiber_local_that_panics_on_drop_aborts() {
    fibra::fiber_local! { static BAD: RefCell<Option<PanicsOnDrop>> = RefCell::new(None); }
    if is_child("a_fiber_local_that_panics_on_drop_aborts") {
        fibra::run(|| {
            fibra::spawn(|| BAD.with(|b| *b.borrow_mut() = Some(PanicsOnDrop)))
                .join()
                .ok();
        });
        unreachable!("the runtime went on after a fiber-local panicked on drop");
    }
    assert_aborted_with(
        "a_fiber_local_that_panics_on_drop_aborts",
        "fibra: a fiber_local! value panicked on drop",
    );
}

/// Records the thread it is dropped on.
struct DropSite {
    created_on: ThreadId,
    dropped: Arc<Mutex<Vec<(ThreadId, ThreadId)>>>,
}

impl DropSite {
    fn here(dropped: &Arc<Mutex<Vec<(ThreadId, ThreadId)>>>) -> DropSite {
        DropSite {
            created_on: thread::current().id(),
            dropped: dropped.clone(),
        }
    }
}

impl Drop for DropSite {
    fn drop(&mut self) {
        let entry = (self.created_on, thread::current().id());
        self.dropped.lock().unwrap().push(entry);
    }
}

fibra::fiber_local! { static SITE: RefCell<Option<DropSite>> = RefCell::new(None); }

/// A detached fiber's result that sets a fiber-local in its destructor.
struct SetsALocalOnDrop(Arc<Mutex<Vec<(ThreadId, ThreadId)>>>);

impl Drop for SetsALocalOnDrop {
    fn drop(&mut self) {
        let site = DropSite::here(&self.0);
        SITE.with(|s| *s.borrow_mut() = Some(site));
    }
}

/// Hole 2: the fiber-local made by the result's destructor was left in the header and dropped
/// by whichever thread let go of the header last (here a plain thread holding a `Fiber`).
#[test]
fn a_local_made_by_the_results_destructor_is_dropped_on_the_fiber() {
    let _w = common::watchdog("a_local_made_by_the_results_destructor_is_dropped_on_the_fiber");
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let d = dropped.clone();
    fibra::run(move || {
        let (go_tx, go_rx) = fibra::chan::bounded::<()>(0);
        let h = fibra::spawn(move || {
            go_rx.recv().unwrap();
            SetsALocalOnDrop(d)
        });
        let fiber = h.fiber().clone();
        drop(h); // detached: the fiber drops its own result
        let holder = thread::spawn(move || {
            while !fiber.is_finished() {
                thread::sleep(Duration::from_millis(1));
            }
            drop(fiber); // the last reference to the header, on a plain thread
        });
        go_tx.send(()).unwrap();
        fibra::run_blocking(|| holder.join().unwrap());
    });
    let dropped = dropped.lock().unwrap();
    assert_eq!(dropped.len(), 1, "the local was dropped exactly once");
    let (created_on, dropped_on) = dropped[0];
    assert_eq!(
        created_on, dropped_on,
        "dropped on another thread than its own"
    );
}

/// Hole 2: locals were drained in at most 16 rounds; a chain of locals whose destructors each
/// make the next kept the rest alive past the fiber.
#[test]
fn locals_are_drained_until_none_is_left() {
    const CHAIN: usize = 24;
    static DROPPED_ON_FIBER: AtomicUsize = AtomicUsize::new(0);
    struct Link {
        index: usize,
        fiber: Option<fibra::FiberId>,
    }
    impl Drop for Link {
        fn drop(&mut self) {
            if fibra::try_current().map(|f| f.id()) == self.fiber {
                DROPPED_ON_FIBER.fetch_add(1, SeqCst);
            }
            if let Some(next) = LINKS.get(self.index + 1) {
                next.with(|_| ()); // makes the next link, a key not used before
            }
        }
    }
    fn link(index: usize) -> Link {
        let fiber = fibra::try_current().map(|f| f.id());
        Link { index, fiber }
    }
    macro_rules! links {
        ($($name:ident = $i:expr;)*) => {
            $(fibra::fiber_local! { static $name: Link = link($i); })*
            static LINKS: [&fibra::LocalKey<Link>; CHAIN] = [$(&$name),*];
        };
    }
    links! {
        L0 = 0; L1 = 1; L2 = 2; L3 = 3; L4 = 4; L5 = 5; L6 = 6; L7 = 7; L8 = 8; L9 = 9;
        L10 = 10; L11 = 11; L12 = 12; L13 = 13; L14 = 14; L15 = 15; L16 = 16; L17 = 17;
        L18 = 18; L19 = 19; L20 = 20; L21 = 21; L22 = 22; L23 = 23;
    }
    let _w = common::watchdog("locals_are_drained_until_none_is_left");
    fibra::run(|| {
        fibra::spawn(|| L0.with(|_| ())).join().unwrap();
        assert_eq!(
            DROPPED_ON_FIBER.load(SeqCst),
            CHAIN,
            "every link dropped on the fiber before join returned"
        );
    });
}

/// A key whose value was dropped stays destroyed, as a `thread_local!` does: a destructor that
/// reaches its own key, or a key dropped before it, gets `AccessError` (it used to make a
/// fresh value, dropped in turn, for ever).
#[test]
fn a_destroyed_local_stays_destroyed() {
    static SELF_ERRS: AtomicUsize = AtomicUsize::new(0);
    static OTHER_ERRS: AtomicUsize = AtomicUsize::new(0);
    struct PeeksAtItself;
    impl Drop for PeeksAtItself {
        fn drop(&mut self) {
            if SELF_PEEK.try_with(|_| ()).is_err() {
                SELF_ERRS.fetch_add(1, SeqCst);
            }
        }
    }
    struct PeeksAtOther(&'static fibra::LocalKey<PeeksAtOther>);
    impl Drop for PeeksAtOther {
        fn drop(&mut self) {
            if self.0.try_with(|_| ()).is_err() {
                OTHER_ERRS.fetch_add(1, SeqCst);
            }
        }
    }
    fibra::fiber_local! {
        static SELF_PEEK: PeeksAtItself = PeeksAtItself;
        static A: PeeksAtOther = PeeksAtOther(&B);
        static B: PeeksAtOther = PeeksAtOther(&A);
    }
    let _w = common::watchdog("a_destroyed_local_stays_destroyed");
    fibra::run(|| {
        fibra::spawn(|| {
            SELF_PEEK.with(|_| ());
            A.with(|_| ());
            B.with(|_| ());
        })
        .join()
        .unwrap();
    });
    assert_eq!(SELF_ERRS.load(SeqCst), 1);
    // B (newer) drops first and finds A alive; A then finds B destroyed.
    assert_eq!(OTHER_ERRS.load(SeqCst), 1);
}

/// Newest first, each removed just before its drop: a destructor reaching an older key finds
/// its live value.
#[test]
fn a_locals_destructor_sees_the_older_locals() {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    fibra::fiber_local! { static OLDER: Cell<usize> = Cell::new(0); }
    struct ReadsOlder;
    impl Drop for ReadsOlder {
        fn drop(&mut self) {
            SEEN.store(OLDER.with(Cell::get), SeqCst);
        }
    }
    fibra::fiber_local! { static NEWER: RefCell<Option<ReadsOlder>> = RefCell::new(None); }
    let _w = common::watchdog("a_locals_destructor_sees_the_older_locals");
    fibra::run(|| {
        fibra::spawn(|| {
            OLDER.with(|o| o.set(42));
            NEWER.with(|n| *n.borrow_mut() = Some(ReadsOlder));
        })
        .join()
        .unwrap();
    });
    assert_eq!(SEEN.load(SeqCst), 42);
}

/// On a plain thread a key is a `thread_local!`: a destructor reaching another key at thread
/// exit gets a value or an `AccessError` from `try_with`, never an abort ("thread local
/// panicked on drop" when all keys shared one thread map).
#[test]
fn on_a_plain_thread_a_destructor_may_try_another_key() {
    static TRIED: AtomicUsize = AtomicUsize::new(0);
    fibra::fiber_local! { static PLAIN: Cell<u32> = Cell::new(3); }
    struct TriesPlain;
    impl Drop for TriesPlain {
        fn drop(&mut self) {
            let _ = PLAIN.try_with(|p| p.get());
            TRIED.fetch_add(1, SeqCst);
        }
    }
    fibra::fiber_local! { static TRIER: RefCell<Option<TriesPlain>> = RefCell::new(None); }
    thread::spawn(|| {
        PLAIN.with(|p| p.set(4));
        TRIER.with(|t| *t.borrow_mut() = Some(TriesPlain));
    })
    .join()
    .unwrap();
    assert_eq!(TRIED.load(SeqCst), 1);
}

/// A worker thread's thread-local destructors run after the worker stopped: fibra calls from
/// them see no fiber and no worker (hole 1: the worker pointer was left dangling).
#[test]
fn thread_local_destructors_on_a_worker_see_no_runtime() {
    static SAW_A_FIBER: AtomicBool = AtomicBool::new(false);
    static DESTROYED: AtomicUsize = AtomicUsize::new(0);
    struct AsksForTheFiber;
    impl Drop for AsksForTheFiber {
        fn drop(&mut self) {
            if fibra::try_current().is_some() {
                SAW_A_FIBER.store(true, SeqCst);
            }
            DESTROYED.fetch_add(1, SeqCst);
        }
    }
    thread_local! { static ON_WORKER: RefCell<Option<AsksForTheFiber>> = const { RefCell::new(None) }; }
    let _w = common::watchdog("thread_local_destructors_on_a_worker_see_no_runtime");
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let fibers: Vec<_> = (0..8)
            .map(|_| {
                fibra::spawn(|| {
                    ON_WORKER.with(|w| {
                        // Only once a thread: replacing a value would drop it inside a fiber.
                        w.borrow_mut().get_or_insert_with(|| AsksForTheFiber);
                    })
                })
            })
            .collect();
        fibers.into_iter().for_each(|h| h.join().unwrap());
    });
    drop(rt); // joins the worker threads: their thread-locals are destroyed by now
    assert!(
        DESTROYED.load(SeqCst) >= 1,
        "no worker thread-local was destroyed"
    );
    assert!(
        !SAW_A_FIBER.load(SeqCst),
        "a worker's thread-local destructor saw a fiber"
    );
}

/// A scoped fiber's result is dropped before `scope` returns: it may borrow what the scope
/// protects (the result was dropped after the scope heard the fiber was done).
#[test]
fn a_scoped_fibers_result_is_dropped_before_scope_returns() {
    struct Late<'a>(&'a AtomicBool);
    impl Drop for Late<'_> {
        fn drop(&mut self) {
            for _ in 0..10 {
                fibra::yield_now(); // gives the scope's owner every chance to run first
            }
            self.0.store(true, SeqCst);
        }
    }
    let _w = common::watchdog("a_scoped_fibers_result_is_dropped_before_scope_returns");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let dropped = AtomicBool::new(false);
        fibra::scope(|s| {
            s.spawn(|| Late(&dropped)); // the handle is dropped: the fiber drops its result
        });
        assert!(
            dropped.load(SeqCst),
            "scope returned before the result was dropped"
        );
    });
}

/// Pushes its label when dropped.
struct Record(Arc<Mutex<Vec<&'static str>>>, &'static str);

impl Drop for Record {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(self.1);
    }
}

/// A result whose destructor parks for good (on a channel it keeps open itself), after saying
/// so; `_inner` is dropped when shutdown's unwind cuts the destructor short.
struct ParksOnDrop {
    rx: fibra::chan::Receiver<()>,
    _tx: fibra::chan::Sender<()>,
    parked: Arc<AtomicBool>,
    _inner: Record,
}

impl Drop for ParksOnDrop {
    fn drop(&mut self) {
        self.parked.store(true, SeqCst);
        let _ = self.rx.recv();
    }
}

fn parks_on_drop(parked: &Arc<AtomicBool>, inner: Record) -> ParksOnDrop {
    let (tx, rx) = fibra::chan::bounded(0);
    ParksOnDrop {
        rx,
        _tx: tx,
        parked: parked.clone(),
        _inner: inner,
    }
}

/// Shutdown unwinds a detached fiber parked in its own result's destructor: the unwind ends
/// at the fiber's root (no abort, no hang), and the rest of the result is still dropped.
#[test]
fn shutdown_unwinds_a_fiber_parked_in_its_results_destructor() {
    let _w = common::watchdog("shutdown_unwinds_a_fiber_parked_in_its_results_destructor");
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    fibra::run(move || {
        let parked = Arc::new(AtomicBool::new(false));
        let p = parked.clone();
        drop(fibra::spawn(move || {
            parks_on_drop(&p, Record(o, "rest of the result"))
        }));
        while !parked.load(SeqCst) {
            fibra::yield_now();
        }
    });
    assert_eq!(*order.lock().unwrap(), ["rest of the result"]);
}

/// A scope's owner is unwound at shutdown only after everything of its children that may
/// borrow from it: here a detached child's result, parked in its destructor. (The owner was
/// released when the child's closure returned, before its result was dropped.)
#[test]
fn shutdown_unwinds_a_scope_owner_after_its_childs_result() {
    let _w = common::watchdog("shutdown_unwinds_a_scope_owner_after_its_childs_result");
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(move || {
        let parked = Arc::new(AtomicBool::new(false));
        let p = parked.clone();
        drop(fibra::spawn(move || {
            let _owner = Record(o.clone(), "owner's frame");
            fibra::scope(|s| {
                s.spawn(move || parks_on_drop(&p, Record(o, "child's result")));
            });
        }));
        while !parked.load(SeqCst) {
            fibra::yield_now();
        }
    });
    drop(rt);
    assert_eq!(*order.lock().unwrap(), ["child's result", "owner's frame"]);
}

/// Shutdown cancels a fiber parked in a result's destructor that a `JoinHandle` drop ran in
/// user code: the cancellation unwinds that code too, and nothing after the drop runs (the
/// unwind used to end inside the drop, and the code after it ran on, cancelled, for ever).
#[test]
fn a_cancellation_in_a_handles_drop_unwinds_the_code_around_it() {
    let _w = common::watchdog("a_cancellation_in_a_handles_drop_unwinds_the_code_around_it");
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o, o2) = (order.clone(), order.clone());
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(move || {
        let parked = Arc::new(AtomicBool::new(false));
        let p = parked.clone();
        let h = fibra::spawn(move || parks_on_drop(&p, Record(o, "rest of the result")));
        while !h.is_finished() {
            fibra::yield_now();
        }
        drop(fibra::spawn(move || {
            drop(h); // the result's destructor parks here until shutdown
            o2.lock().unwrap().push("code after the drop");
            loop {
                fibra::sleep(Duration::from_millis(10));
            }
        }));
        while !parked.load(SeqCst) {
            fibra::yield_now();
        }
    });
    drop(rt);
    assert_eq!(*order.lock().unwrap(), ["rest of the result"]);
}

/// A fiber that shutdown finds parked in a destructor while it unwinds its own panic is not
/// unwound a second time (that would abort the process): its wait returns, its unwinding
/// finishes, and `join` would see its panic.
#[test]
fn shutdown_lets_a_fiber_parked_mid_unwind_finish_its_unwinding() {
    if is_child("shutdown_lets_a_fiber_parked_mid_unwind_finish_its_unwinding") {
        std::panic::set_hook(Box::new(|_| {}));
        let rt = fibra::Runtime::builder().workers(1).build().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        rt.run(move || {
            let parked = Arc::new(AtomicBool::new(false));
            let p = parked.clone();
            drop(fibra::spawn(move || {
                let _waits = parks_on_drop(&p, Record(o, "rest of the destructor's value"));
                panic!("the fiber's own panic"); // `_waits` parks while this unwinds
            }));
            while !parked.load(SeqCst) {
                fibra::yield_now();
            }
        });
        drop(rt);
        assert_eq!(*order.lock().unwrap(), ["rest of the destructor's value"]);
        return;
    }
    let (signal, stderr) =
        run_child("shutdown_lets_a_fiber_parked_mid_unwind_finish_its_unwinding");
    assert_eq!(signal, None, "the child died: {stderr}");
    assert!(
        !stderr.contains("panicked at") || stderr.contains("test result: ok"),
        "{stderr}"
    );
}

/// A never-run fiber's closure is dropped outside any fiber (here by shutdown, on the worker);
/// a wait in its destructor gives up instead of blocking the worker that must unwind the
/// fiber it waits for (it hung).
#[test]
fn a_wait_in_a_discarded_closures_destructor_gives_up() {
    struct SendsOnDrop(fibra::chan::Sender<u32>);
    impl Drop for SendsOnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(1); // the buffer is full, and its receiver is parked
        }
    }
    let _w = common::watchdog("a_wait_in_a_discarded_closures_destructor_gives_up");
    let rt = fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .max_spare_workers(0)
        .build()
        .unwrap();
    rt.run(|| {
        let (tx, rx) = fibra::chan::bounded::<u32>(1);
        tx.send(0).unwrap();
        let (hold, wait) = fibra::chan::bounded::<()>(0);
        drop(fibra::spawn(move || {
            let _keep = (rx, hold);
            let _ = wait.recv(); // parked until shutdown, holding the receiver
        }));
        fibra::yield_now();
        let (go_tx, go_rx) = fibra::chan::bounded::<()>(1);
        drop(fibra::spawn(move || {
            go_rx.recv().unwrap();
            // Holds the only worker (without parking) until shutdown has begun.
            while fibra::Builder::new().spawn(|| ()).is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
        fibra::yield_now();
        go_tx.send(()).unwrap();
        let s = SendsOnDrop(tx);
        drop(fibra::spawn(move || drop(s))); // never runs: shutdown drops the closure
    });
}

/// A fiber-local whose destructor panics aborts also when shutdown's unwinding drops it (the
/// panic was taken for the cancellation and swallowed).
#[test]
fn a_fiber_local_that_panics_on_drop_aborts_at_shutdown_too() {
    fibra::fiber_local! { static BAD: RefCell<Option<PanicsOnDrop>> = RefCell::new(None); }
    if is_child("a_fiber_local_that_panics_on_drop_aborts_at_shutdown_too") {
        fibra::run(|| {
            let (tx, rx) = fibra::chan::bounded::<()>(0);
            let set = Arc::new(AtomicBool::new(false));
            let s = set.clone();
            drop(fibra::spawn(move || {
                let _keep = tx;
                BAD.with(|b| *b.borrow_mut() = Some(PanicsOnDrop));
                s.store(true, SeqCst);
                let _ = rx.recv(); // parked until shutdown
            }));
            while !set.load(SeqCst) {
                fibra::yield_now();
            }
        });
        unreachable!("the session ended after a fiber-local panicked on drop");
    }
    assert_aborted_with(
        "a_fiber_local_that_panics_on_drop_aborts_at_shutdown_too",
        "fibra: a fiber_local! value panicked on drop",
    );
}
