//! `fibra::run_blocking` and `fibra::spawn_blocking`: values, borrows, panics, the cap, joins from
//! fibers and threads, and the pool's behaviour at session end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use fibra::{JoinError, ParkReason, Runtime};

mod common;
use common::watchdog;

fn rt(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn blocking_borrows_a_local_and_returns_its_value() {
    let _w = watchdog("blocking_borrows_a_local_and_returns_its_value");
    rt(2).run(|| {
        let mut data = vec![1u64, 2, 3];
        let sum = fibra::run_blocking(|| {
            data.push(4); // a mutable borrow of the fiber's local
            data.iter().sum::<u64>()
        });
        assert_eq!(sum, 10);
        assert_eq!(data, [1, 2, 3, 4]);
        // It ran off the worker: the closure's thread is a pool thread.
        let name = fibra::run_blocking(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.as_deref(), Some("fibra-worker-blocking"));
    });
}

#[test]
fn blocking_outside_a_fiber_just_calls() {
    let here = std::thread::current().id();
    assert_eq!(fibra::run_blocking(|| std::thread::current().id()), here);
}

#[test]
fn blocking_propagates_a_panic() {
    let _w = watchdog("blocking_propagates_a_panic");
    rt(1).run(|| {
        let h = fibra::spawn(|| fibra::run_blocking(|| panic!("boom in the pool")));
        let Err(JoinError::Panicked(p)) = h.join() else {
            panic!("expected a panic")
        };
        assert_eq!(p.downcast_ref::<&str>(), Some(&"boom in the pool"));
        // The fiber's worker is fine afterwards.
        assert_eq!(fibra::run_blocking(|| 7), 7);
    });
}

#[test]
fn blocking_parks_the_fiber_with_its_reason() {
    let _w = watchdog("blocking_parks_the_fiber_with_its_reason");
    rt(1).run(|| {
        let release = Arc::new(AtomicBool::new(false));
        let r2 = release.clone();
        let h = fibra::spawn(move || {
            fibra::run_blocking(|| {
                while !r2.load(Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        });
        while h.fiber().park_reason() != ParkReason::Blocking {
            fibra::yield_now(); // one worker: the blocked fiber is parked, not holding it
        }
        release.store(true, Release);
        h.join().unwrap();
    });
}

#[test]
fn spawn_blocking_joins_from_fibers_and_threads() {
    let _w = watchdog("spawn_blocking_joins_from_fibers_and_threads");
    rt(2).run(|| {
        let h = fibra::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(20));
            6 * 7
        });
        assert_eq!(h.fiber().name(), Some("blocking"));
        let j = fibra::spawn(move || {
            let r = h.join().unwrap();
            r + 1
        });
        assert_eq!(j.join().unwrap(), 43);
        // From a plain thread.
        let h = fibra::spawn_blocking(|| "from a thread");
        let t = std::thread::spawn(move || h.join().unwrap());
        assert_eq!(t.join().unwrap(), "from a thread");
        // A panic comes back as an error; nested spawn_blocking works on pool threads.
        let bad = fibra::spawn_blocking(|| -> u8 { panic!("no") });
        assert!(matches!(bad.join(), Err(JoinError::Panicked(_))));
        let nested = fibra::spawn_blocking(|| fibra::spawn_blocking(|| 5).join().unwrap());
        assert_eq!(nested.join().unwrap(), 5);
    });
}

#[test]
fn spawn_blocking_join_parks_with_its_reason() {
    let _w = watchdog("spawn_blocking_join_parks_with_its_reason");
    rt(1).run(|| {
        let release = Arc::new(AtomicBool::new(false));
        let r2 = release.clone();
        let task = fibra::spawn_blocking(move || {
            while !r2.load(Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let joiner = fibra::spawn(move || task.join().unwrap());
        while joiner.fiber().park_reason() != ParkReason::BlockingJoin {
            fibra::yield_now();
        }
        release.store(true, Release);
        joiner.join().unwrap();
    });
}

#[test]
#[should_panic(expected = "fibra::run")]
fn spawn_blocking_outside_a_runtime_panics() {
    let _ = fibra::spawn_blocking(|| ());
}

#[test]
fn spawn_blocking_respects_its_cap() {
    let _w = watchdog("spawn_blocking_respects_its_cap");
    const CAP: usize = 4;
    const N: usize = 10_000;
    let running = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let runtime = Runtime::builder()
        .workers(2)
        .max_blocking_threads(CAP)
        .build()
        .unwrap();
    runtime.run(|| {
        let handles: Vec<_> = (0..N)
            .map(|_| {
                let (running, max_seen, done) = (running.clone(), max_seen.clone(), done.clone());
                fibra::spawn_blocking(move || {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    max_seen.fetch_max(now, SeqCst);
                    std::hint::spin_loop();
                    std::thread::yield_now();
                    running.fetch_sub(1, SeqCst);
                    done.fetch_add(1, SeqCst);
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });
    assert_eq!(done.load(SeqCst), N);
    let max = max_seen.load(SeqCst);
    assert!(max <= CAP, "{max} tasks ran at once; the cap is {CAP}");
    assert!(max >= 2, "the pool never ran two tasks at once ({max})");
}

#[test]
fn session_end_finishes_running_tasks_and_cancels_queued_ones() {
    let _w = watchdog("session_end_finishes_running_tasks_and_cancels_queued_ones");
    let finished = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let (running, queued) = Runtime::builder()
        .workers(1)
        .max_blocking_threads(1)
        .build()
        .unwrap()
        .run(|| {
            let (f2, s2) = (finished.clone(), started.clone());
            let running = fibra::spawn_blocking(move || {
                s2.wait();
                std::thread::sleep(Duration::from_millis(100));
                f2.store(true, Release);
                1
            });
            started.wait(); // the one pool thread is busy: the next task queues
            let queued = fibra::spawn_blocking(|| 2);
            (running, queued)
        });
    // `block_on` returned: the running task had finished, the queued one was dropped.
    assert!(finished.load(Acquire));
    assert_eq!(running.join().unwrap(), 1);
    assert!(matches!(queued.join(), Err(JoinError::Cancelled)));
}

#[test]
fn shutdown_waits_for_a_fiber_parked_in_blocking() {
    // The root returns while another fiber is parked in `fibra::run_blocking` with a borrow of
    // its own stack: shutdown unwinds that fiber only after the closure is done with it.
    let _w = watchdog("shutdown_waits_for_a_fiber_parked_in_blocking");
    let closure_done = Arc::new(AtomicBool::new(false));
    let unwound_after = Arc::new(AtomicBool::new(false));
    rt(1).run(|| {
        let (cd, ua) = (closure_done.clone(), unwound_after.clone());
        let h = fibra::spawn(move || {
            struct OnDrop(Arc<AtomicBool>, Arc<AtomicBool>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    // Runs while shutdown unwinds the fiber: the closure must be done.
                    self.1.store(self.0.load(Acquire), Release);
                }
            }
            let _guard = OnDrop(cd.clone(), ua);
            let local = [7u8; 64];
            fibra::run_blocking(|| {
                std::thread::sleep(Duration::from_millis(100));
                assert_eq!(local.len(), 64); // the borrow is still valid
                cd.store(true, Release);
            });
        });
        while h.fiber().park_reason() != ParkReason::Blocking {
            fibra::yield_now();
        }
    });
    assert!(closure_done.load(Acquire));
    assert!(
        unwound_after.load(Acquire),
        "the fiber was unwound before its closure finished"
    );
}
