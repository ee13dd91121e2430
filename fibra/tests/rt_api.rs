//! The runtime API: `run`, `Runtime::builder`, sessions, and misuse outside a runtime.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::mpsc::{self};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::{BuildError, Runtime, SpawnError};

mod common;
use common::watchdog;

/// The text of a panic payload (`panic!` gives `&str` or `String`).
fn message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}

#[test]
fn run_returns_the_closure_value() {
    assert_eq!(fibra::run(|| 6 * 7), 42);
    let s = fibra::run(|| format!("root is {:?}", fibra::current().name()));
    assert_eq!(s, "root is Some(\"main\")");
}

/// The example from the issue: 100k fibers each sleeping 100 ms.
#[test]
fn hundred_thousand_sleepers_sum_their_ids() {
    let _w = watchdog("hundred_thousand_sleepers_sum_their_ids");
    let start = Instant::now();
    let total: u64 = fibra::run(|| {
        let handles: Vec<_> = (0..100_000u64)
            .map(|i| {
                fibra::spawn(move || {
                    fibra::sleep(Duration::from_millis(100));
                    i
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, 4_999_950_000);
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn builder_rejects_bad_configurations() {
    let err = Runtime::builder().workers(0).build().unwrap_err();
    assert!(matches!(err, BuildError::ZeroWorkers), "{err:?}");
    assert!(err.to_string().contains("workers(0)"), "{err}");

    match Runtime::builder().stack_size(1024).build() {
        Err(BuildError::StackTooSmall { requested, minimum }) => {
            assert_eq!(requested, 1024);
            assert_eq!(minimum, fibra::MIN_STACK_SIZE);
        }
        other => panic!("expected StackTooSmall, got {other:?}"),
    }
    let just_below = Runtime::builder()
        .stack_size(fibra::MIN_STACK_SIZE - 1)
        .build();
    assert!(matches!(just_below, Err(BuildError::StackTooSmall { .. })));

    let rt = Runtime::builder()
        .workers(3)
        .stack_size(fibra::MIN_STACK_SIZE)
        .build()
        .unwrap();
    assert_eq!(rt.workers(), 3);
    assert!(Runtime::new().unwrap().workers() >= 1);
    assert_eq!(fibra::MIN_STACK_SIZE, 16 * 1024);
    assert_eq!(fibra::DEFAULT_STACK_SIZE, 64 * 1024);
}

/// Each `block_on` is a whole session; a `Runtime` can run several, one after another.
#[test]
fn block_on_twice_on_the_same_runtime() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    for round in 1..=3u64 {
        let sum: u64 = rt.run(move || {
            let hs: Vec<_> = (0..100u64)
                .map(|i| {
                    fibra::spawn(move || {
                        fibra::yield_now();
                        i * round
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(sum, 4950 * round);
    }
}

/// Worker threads are named `<prefix>-<index>`; fibers run on them.
#[test]
fn workers_carry_the_configured_thread_name() {
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("rtapi")
        .build()
        .unwrap();
    let names: Vec<String> = rt.run(|| {
        let hs: Vec<_> = (0..50)
            .map(|_| fibra::spawn(|| std::thread::current().name().unwrap_or("").to_owned()))
            .collect();
        let mut names: Vec<String> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        names.push(std::thread::current().name().unwrap_or("").to_owned());
        names
    });
    for n in &names {
        assert!(
            n == "rtapi-0" || n == "rtapi-1",
            "fiber ran on thread {n:?}"
        );
    }
}

/// Runs `f` on a thread of its own; fails the test (instead of hanging the whole binary) if
/// it has not returned within 30 s. A hung thread is left behind; the test fails anyway.
fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(v)) => v,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("did not return within 30 s: the session's shutdown hangs"),
    }
}

/// A panic in the root closure resumes on the caller, after the session shut down cleanly
/// (the other fibers, parked in `sleep`, were unwound: their captured values dropped).
#[test]
fn root_panic_resumes_on_the_caller() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let result = within_30s(move || {
        panic::catch_unwind(move || {
            fibra::run(move || -> u32 {
                let hs: Vec<_> = (0..10)
                    .map(|_| {
                        let c = Counted(d.clone());
                        fibra::spawn(move || {
                            let _c = c;
                            fibra::sleep(Duration::from_secs(3600));
                        })
                    })
                    .collect();
                for h in &hs {
                    while h.fiber().park_reason() != fibra::ParkReason::Sleep {
                        fibra::yield_now();
                    }
                }
                panic!("root exploded {}", 7)
            })
        })
    });
    let payload = result.unwrap_err();
    assert_eq!(message(&*payload), "root exploded 7");
    assert_eq!(drops.load(SeqCst), 10);

    // A non-string payload comes back as it was.
    let payload = panic::catch_unwind(|| fibra::run(|| panic::panic_any(42u32))).unwrap_err();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
}

#[test]
fn spawn_outside_a_runtime_panics_pointing_at_run() {
    let payload = panic::catch_unwind(|| {
        fibra::spawn(|| ());
    })
    .unwrap_err();
    let msg = message(&*payload);
    assert!(msg.contains("fibra::run"), "message: {msg}");

    // The same after a session ended on this thread.
    fibra::run(|| ());
    let payload = panic::catch_unwind(|| {
        fibra::spawn(|| ());
    })
    .unwrap_err();
    assert!(message(&*payload).contains("fibra::run"));
}

#[test]
fn block_on_future_outside_a_fiber_panics_clearly() {
    let payload = panic::catch_unwind(|| fibra::await_future(async { 1 })).unwrap_err();
    let msg = message(&*payload);
    assert!(msg.contains("inside a fiber"), "message: {msg}");
    assert!(msg.contains("fibra::run"), "message: {msg}");
}

#[test]
fn builder_spawn_outside_a_runtime_is_no_runtime() {
    let r = fibra::Builder::new().name("x").spawn(|| ());
    assert!(matches!(r, Err(SpawnError::NoRuntime)), "{r:?}");
    assert!(SpawnError::NoRuntime.to_string().contains("fibra::run"));
    assert!(fibra::try_current().is_none());
    assert!(panic::catch_unwind(fibra::current).is_err());

    // A plain thread started by a fiber is not inside the runtime either.
    let r = fibra::run(|| {
        std::thread::spawn(|| fibra::Builder::new().spawn(|| ()))
            .join()
            .unwrap()
    });
    assert!(matches!(r, Err(SpawnError::NoRuntime)), "{r:?}");
}

#[test]
fn runtime_block_on_inside_a_fiber_panics() {
    let inner = Runtime::builder().workers(1).build().unwrap();
    let (nested_rt, nested_run) = fibra::run(move || {
        let a = panic::catch_unwind(AssertUnwindSafe(|| inner.run(|| 1))).unwrap_err();
        let b = panic::catch_unwind(|| fibra::run(|| 2)).unwrap_err();
        (message(&*a), message(&*b))
    });
    assert!(nested_rt.contains("inside a fiber"), "message: {nested_rt}");
    assert!(
        nested_run.contains("inside a fiber"),
        "message: {nested_run}"
    );
}

/// The root closure is not `'static`: it may borrow (even mutably) from the caller, and its
/// scoped fibers may borrow the same data.
#[test]
fn block_on_root_may_borrow_the_callers_locals() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let data: Vec<u64> = (1..=100).collect();
    let total = AtomicU64::new(0);
    let mut seen = 0;
    let flag = AtomicBool::new(false);
    rt.run(|| {
        seen = data.len();
        fibra::scope(|s| {
            for x in &data {
                let total = &total;
                s.spawn(move || total.fetch_add(*x, Relaxed));
            }
        });
        flag.store(true, Relaxed);
    });
    assert_eq!(seen, 100);
    assert_eq!(total.into_inner(), 5050);
    assert!(flag.into_inner());
}

#[test]
fn run_inside_a_fiber_names_the_call_that_was_made() {
    let _w = watchdog("run_inside_a_fiber_names_the_call_that_was_made");
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (by_fn, by_method) = rt.run(|| {
        let by_fn = panic::catch_unwind(|| fibra::run(|| ())).unwrap_err();
        let inner = Runtime::builder().workers(1).build().unwrap();
        let by_method = panic::catch_unwind(AssertUnwindSafe(|| inner.run(|| ()))).unwrap_err();
        (message(&*by_fn), message(&*by_method))
    });
    assert!(
        by_fn.starts_with("fibra::run called from inside a fiber"),
        "{by_fn}"
    );
    assert!(!by_fn.contains("Runtime::"), "{by_fn}");
    assert!(
        by_method.starts_with("Runtime::run called from inside a fiber"),
        "{by_method}"
    );
}

#[test]
#[allow(deprecated)]
fn the_old_names_still_work() {
    let _w = watchdog("the_old_names_still_work");
    let rt = Runtime::builder().workers(1).build().unwrap();
    let v = rt.block_on(|| fibra::block_on(async { 20 }) + fibra::blocking(|| 22));
    assert_eq!(v, 42);
}
