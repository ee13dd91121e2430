//! Faults around the blocking pool and the monitor: user `Drop`s and callbacks that panic,
//! and OS threads that cannot start.
//!
//! Most tests re-run this binary as a child (`--exact <test>`, selected by an environment
//! variable): the outcome may be the child's abort, they read its stderr, and the thread-start
//! switch (`fibra::__fault`) is process-wide. Each child arms a watchdog, so a regression that
//! hangs ends as an abort whose message the parent tells apart.
//!
//! Thread-start failures are injected with `fibra::__fault::fail_thread_starts` rather than a
//! lowered `RLIMIT_NPROC`: these tests often run as root, which ignores that limit.

use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use fibra::__fault::{fail_thread_starts, pending_thread_start_failures, ThreadStart};
use fibra::{JoinError, Runtime};

mod common;
use common::{watchdog, watchdog_for};

const CHILD: &str = "FIBRA_BLOCKING_FAULTS_CHILD";
/// A child that hangs aborts after this, well before the parent's harness would give up.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

fn run_child(test: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap()
}

/// In the child for `test`: runs `body` under a watchdog and returns true.
fn child(test: &'static str, body: impl FnOnce()) -> bool {
    if std::env::var(CHILD).as_deref() != Ok(test) {
        return false;
    }
    let _w = watchdog_for(test, CHILD_LIMIT);
    body();
    eprintln!("child: survived");
    true
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_survived(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        out.status.success() && err.contains("child: survived"),
        "child status {}; stderr:\n{err}",
        out.status
    );
    err
}

/// The child aborted on a `fibra:` "panicked on drop" message, not on its watchdog.
fn assert_aborted_on_drop_panic(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("watchdog:"), "the child hung; stderr:\n{err}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child status {}; stderr:\n{err}",
        out.status
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("fibra: ") && l.contains("panicked on drop")),
        "no fibra: message; stderr:\n{err}"
    );
    assert!(!err.contains("child: survived"), "stderr:\n{err}");
}

/// A value whose `Drop` panics.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// One worker, one pool thread: every blocking job needs that thread.
fn one_pool_thread() -> Runtime {
    Runtime::builder()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap()
}

/// Child: a task on the only pool thread returns (or panics with) a value whose `Drop`
/// panics, after its handle was dropped; then the pool must still serve. With fibra's rule
/// (blocking/mod.rs, "Panics nobody can see") the child aborts at the drop instead.
fn pool_drops_a_panicking_value(panic_with_it: bool) {
    one_pool_thread().run(move || {
        let (tx, rx) = mpsc::channel::<()>();
        let h = fibra::spawn_blocking(move || {
            rx.recv().unwrap(); // the handle is gone by now
            let v = PanicOnDrop("dropped by the pool thread");
            if panic_with_it {
                panic::panic_any(v)
            }
            v
        });
        drop(h);
        tx.send(()).unwrap();
        // The old pool lost its only thread here and waited for ever.
        assert_eq!(fibra::run_blocking(|| 1), 1);
        assert_eq!(fibra::spawn_blocking(|| 2).join().unwrap(), 2);
    });
}

#[test]
fn result_panicking_on_drop_in_the_pool_aborts_with_a_message() {
    const T: &str = "result_panicking_on_drop_in_the_pool_aborts_with_a_message";
    if child(T, || pool_drops_a_panicking_value(false)) {
        return;
    }
    assert_aborted_on_drop_panic(&run_child(T));
}

#[test]
fn panic_payload_panicking_on_drop_in_the_pool_aborts_with_a_message() {
    const T: &str = "panic_payload_panicking_on_drop_in_the_pool_aborts_with_a_message";
    if child(T, || pool_drops_a_panicking_value(true)) {
        return;
    }
    assert_aborted_on_drop_panic(&run_child(T));
}

/// The handle, not the pool, drops a finished task's panic payload whose `Drop` panics: the
/// process aborts with a `fibra:` message, as std does ("thread result panicked on drop"),
/// whichever side lets go last (`fiber/join.rs`, `drop_or_abort`); never a hang or a dead pool
/// thread.
#[test]
fn handle_dropping_a_panicking_payload_aborts() {
    const T: &str = "handle_dropping_a_panicking_payload_aborts";
    let in_child = child(T, || {
        one_pool_thread().run(|| {
            let h = fibra::spawn_blocking(|| -> u8 {
                panic::panic_any(PanicOnDrop("dropped by the handle"))
            });
            // The one pool thread runs jobs in order: once this returns, the task's job has
            // let go of its side, so the handle is the last one.
            fibra::run_blocking(|| ());
            assert!(h.is_finished());
            let _ = panic::catch_unwind(AssertUnwindSafe(|| drop(h)));
            eprintln!("child: survived the handle's drop");
        });
    });
    if in_child {
        return;
    }
    assert_aborted_on_drop_panic(&run_child(T));
}

#[test]
fn joined_panic_payload_is_the_callers_and_may_panic_on_drop() {
    let _w = watchdog("joined_panic_payload_is_the_callers_and_may_panic_on_drop");
    one_pool_thread().run(|| {
        let h = fibra::spawn_blocking(|| -> u8 { panic::panic_any(PanicOnDrop("joined")) });
        let Err(JoinError::Panicked(payload)) = h.join() else {
            panic!("expected JoinError::Panicked")
        };
        assert!(payload.is::<PanicOnDrop>());
        // Like std's `JoinHandle::join`: the payload is the caller's value, its drop the
        // caller's panic.
        assert!(panic::catch_unwind(AssertUnwindSafe(|| drop(payload))).is_err());
        assert_eq!(fibra::run_blocking(|| 1), 1);
    });
}

#[test]
fn spawn_blocking_panic_is_join_error_panicked() {
    let _w = watchdog("spawn_blocking_panic_is_join_error_panicked");
    one_pool_thread().run(|| {
        let h = fibra::spawn_blocking(|| -> u8 { panic!("in the pool") });
        match h.join() {
            Err(JoinError::Panicked(p)) => {
                assert_eq!(p.downcast_ref::<&str>(), Some(&"in the pool"))
            }
            other => panic!("expected JoinError::Panicked, got {other:?}"),
        }
        // The same (only) pool thread goes on.
        assert_eq!(fibra::spawn_blocking(|| 3).join().unwrap(), 3);
    });
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

const POOL_START_FAILED: &str = "fibra: could not start a blocking-pool thread:";

#[test]
fn pool_thread_start_failure_with_no_thread_retries_later() {
    const T: &str = "pool_thread_start_failure_with_no_thread_retries_later";
    let in_child = child(T, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(2)
            .build()
            .unwrap();
        // The first start (by `blocking`'s submit) and two retries (the monitor's) fail.
        fail_thread_starts(ThreadStart::BlockingPool, 3);
        rt.run(|| {
            assert_eq!(fibra::run_blocking(|| 1), 1);
            assert_eq!(fibra::spawn_blocking(|| 2).join().unwrap(), 2);
        });
        assert_eq!(pending_thread_start_failures(ThreadStart::BlockingPool), 0);
    });
    if in_child {
        return;
    }
    let err = assert_survived(&run_child(T));
    assert_eq!(count(&err, POOL_START_FAILED), 1, "stderr:\n{err}");
}

#[test]
fn pool_thread_start_failure_while_a_thread_runs_waits_for_it() {
    const T: &str = "pool_thread_start_failure_while_a_thread_runs_waits_for_it";
    let in_child = child(T, || {
        let rt = Runtime::builder()
            .workers(1)
            .max_blocking_threads(2)
            .monitor(false) // only later submits retry: the queued job waits for thread 1
            .build()
            .unwrap();
        rt.run(|| {
            let (tx, rx) = mpsc::channel::<()>();
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let first = fibra::spawn_blocking(move || {
                started_tx.send(()).unwrap();
                rx.recv().unwrap();
                1
            });
            // Blocks the worker (not the pool) until thread 1 runs `first`: no thread is idle.
            started_rx.recv().unwrap();
            fail_thread_starts(ThreadStart::BlockingPool, usize::MAX);
            let second = fibra::spawn_blocking(|| 2); // cannot start thread 2: queues
            tx.send(()).unwrap();
            assert_eq!(first.join().unwrap(), 1);
            assert_eq!(second.join().unwrap(), 2); // run by thread 1
            assert_eq!(fibra::run_blocking(|| 3), 3);
            fail_thread_starts(ThreadStart::BlockingPool, 0);
        });
    });
    if in_child {
        return;
    }
    let err = assert_survived(&run_child(T));
    assert_eq!(count(&err, POOL_START_FAILED), 1, "stderr:\n{err}");
}

#[test]
fn pool_thread_start_failure_without_monitor_hands_the_job_back() {
    const T: &str = "pool_thread_start_failure_without_monitor_hands_the_job_back";
    let in_child = child(T, || {
        let rt = Runtime::builder()
            .workers(1)
            .thread_name("w")
            .monitor(false)
            .build()
            .unwrap();
        fail_thread_starts(ThreadStart::BlockingPool, 2);
        rt.run(|| {
            // Nothing would retry: `spawn_blocking` reports Cancelled, `blocking` runs here.
            assert!(matches!(
                fibra::spawn_blocking(|| 1).join(),
                Err(JoinError::Cancelled)
            ));
            let name = fibra::run_blocking(|| std::thread::current().name().map(str::to_owned));
            assert_eq!(name.as_deref(), Some("w-0"));
            // Starts work again: the pool serves as usual.
            assert_eq!(fibra::spawn_blocking(|| 2).join().unwrap(), 2);
            let name = fibra::run_blocking(|| std::thread::current().name().map(str::to_owned));
            assert_eq!(name.as_deref(), Some("w-blocking"));
        });
    });
    if in_child {
        return;
    }
    let err = assert_survived(&run_child(T));
    assert_eq!(count(&err, POOL_START_FAILED), 1, "stderr:\n{err}");
}

#[test]
fn spare_worker_start_failure_is_reported_once_and_retried() {
    const T: &str = "spare_worker_start_failure_is_reported_once_and_retried";
    let in_child = child(T, || {
        let rt = Runtime::builder()
            .workers(1)
            .stall_threshold(Duration::from_millis(5))
            .on_stall(|_| {}) // quiet
            .build()
            .unwrap();
        fail_thread_starts(ThreadStart::SpareWorker, 2);
        let spares = rt.run(|| {
            // The root blocks its only worker in a syscall until a fiber queued behind it ran:
            // only a spare worker can run it, and the first two cannot start.
            let ran = Arc::new((Mutex::new(0usize), Condvar::new()));
            let late: Vec<_> = (0..8)
                .map(|_| {
                    let ran = ran.clone();
                    fibra::spawn(move || {
                        *ran.0.lock().unwrap() += 1;
                        ran.1.notify_all();
                    })
                })
                .collect();
            let (lock, cvar) = &*ran;
            drop(cvar.wait_while(lock.lock().unwrap(), |n| *n == 0).unwrap());
            late.into_iter().for_each(|h| h.join().unwrap());
            fibra::debug::metrics().unwrap().spares_started
        });
        assert!(spares >= 1, "no spare started");
        assert_eq!(pending_thread_start_failures(ThreadStart::SpareWorker), 0);
    });
    if in_child {
        return;
    }
    let err = assert_survived(&run_child(T));
    assert_eq!(
        count(&err, "fibra: could not start a spare worker:"),
        1,
        "stderr:\n{err}"
    );
}

#[test]
fn on_stall_panics_are_caught_and_the_monitor_goes_on() {
    const T: &str = "on_stall_panics_are_caught_and_the_monitor_goes_on";
    let in_child = child(T, || {
        let (tx, rx) = mpsc::channel::<usize>();
        let tx = Mutex::new(tx);
        let calls = AtomicUsize::new(0);
        let rt = Runtime::builder()
            .workers(1)
            .stall_threshold(Duration::from_millis(5))
            .on_stall(move |_| {
                let n = calls.fetch_add(1, SeqCst);
                tx.lock().unwrap().send(n).unwrap();
                match n {
                    0 => panic!("on_stall panics"),
                    1 => panic::panic_any(PanicOnDrop("on_stall's payload panics on drop")),
                    _ => {}
                }
            })
            .build()
            .unwrap();
        rt.run(move || {
            // Each recv blocks the worker until the monitor reports the stall (a new episode
            // each time: the yield ends the run).
            for i in 0..3 {
                assert_eq!(rx.recv().unwrap(), i);
                fibra::yield_now();
            }
        });
    });
    if in_child {
        return;
    }
    let err = assert_survived(&run_child(T));
    assert_eq!(
        count(&err, "fibra: the on_stall hook panicked"),
        2,
        "stderr:\n{err}"
    );
    assert_eq!(
        count(
            &err,
            "fibra: dropping the on_stall hook's panic payload panicked too"
        ),
        1,
        "stderr:\n{err}"
    );
}
