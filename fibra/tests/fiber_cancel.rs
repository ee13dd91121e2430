//! `JoinHandle::cancel`: the fiber unwinds at its next park, its destructors run, and `join`
//! reports `JoinError::Cancelled`; scopes cancel their fibers when their body panics.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::{JoinError, Runtime};

mod common;
use common::watchdog;

/// Counts its drops.
struct Tally(Arc<AtomicUsize>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn rt(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn a_parked_fiber_unwinds_and_its_destructors_run() {
    let _w = watchdog("a_parked_fiber_unwinds_and_its_destructors_run");
    let dropped = Arc::new(AtomicUsize::new(0));
    let after_park = Arc::new(AtomicBool::new(false));
    rt(2).run(|| {
        let (_tx, rx) = fibra::chan::bounded::<()>(0);
        let (ready_tx, ready_rx) = fibra::chan::bounded::<()>(1);
        let (d, a) = (dropped.clone(), after_park.clone());
        let h = fibra::spawn(move || {
            let _t = Tally(d);
            ready_tx.send(()).unwrap();
            let _ = rx.recv(); // parks for ever: nobody sends
            a.store(true, SeqCst);
        });
        ready_rx.recv().unwrap();
        h.cancel();
        h.cancel(); // idempotent
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert_eq!(dropped.load(SeqCst), 1);
    assert!(!after_park.load(SeqCst));
}

#[test]
fn every_kind_of_wait_is_a_cancellation_point() {
    let _w = watchdog("every_kind_of_wait_is_a_cancellation_point");
    rt(2).run(|| {
        let lock = Arc::new(fibra::sync::Mutex::new(()));
        let held = lock.lock();
        let (stx, _srx) = fibra::chan::bounded::<u8>(0); // nobody receives
        let (_rtx, srx) = fibra::chan::bounded::<u8>(0); // nobody sends
        let waits: Vec<Box<dyn FnOnce() + Send>> = vec![
            Box::new(|| fibra::sleep(Duration::from_secs(3600))),
            Box::new(fibra::park),
            Box::new(move || {
                let _ = srx.recv();
            }),
            Box::new(move || {
                let _ = stx.send(1);
            }),
            Box::new({
                let lock = lock.clone();
                move || drop(lock.lock())
            }),
            Box::new(|| {
                fibra::spawn(|| fibra::sleep(Duration::from_secs(3600)))
                    .join()
                    .map(drop)
                    .unwrap()
            }),
            Box::new(|| fibra::await_future(std::future::pending::<()>())),
            Box::new(|| {
                // The scope's wait cancels its fiber and returns once it is gone (it must
                // not leave early); the next park unwinds the owner.
                fibra::scope(|s| drop(s.spawn(|| fibra::sleep(Duration::from_secs(3600)))));
                fibra::park();
            }),
        ];
        let handles: Vec<_> = waits.into_iter().map(fibra::spawn).collect();
        for h in &handles {
            while h.fiber().park_reason() == fibra::ParkReason::None {
                fibra::yield_now();
            }
        }
        for (i, h) in handles.into_iter().enumerate() {
            h.cancel();
            assert!(matches!(h.join(), Err(JoinError::Cancelled)), "wait #{i}");
        }
        drop(held);
        drop(lock.lock()); // the cancelled waiter left the lock's queue
    });
}

#[test]
fn a_running_fiber_is_cancelled_at_its_next_park() {
    let _w = watchdog("a_running_fiber_is_cancelled_at_its_next_park");
    let steps = Arc::new(AtomicUsize::new(0));
    rt(1).run(|| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
        let s = steps.clone();
        let h = Arc::new(fibra::spawn(move || {
            ran_tx.send(()).unwrap();
            go_rx.recv().unwrap(); // blocks the worker's thread: the fiber is running
            s.fetch_add(1, SeqCst); // still runs: no preemption
            fibra::yield_now(); // a yield is not a park
            s.fetch_add(1, SeqCst);
            fibra::sleep(Duration::from_millis(1)); // unwinds here
            s.fetch_add(1, SeqCst);
        }));
        // Cancelled from a plain thread while it runs.
        let h2 = h.clone();
        let t = std::thread::spawn(move || {
            ran_rx.recv().unwrap();
            h2.cancel();
            go_tx.send(()).unwrap();
        });
        while !t.is_finished() {
            fibra::yield_now();
        }
        t.join().unwrap();
        let h = Arc::into_inner(h).unwrap();
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert_eq!(steps.load(SeqCst), 2);
}

#[test]
fn an_unstarted_fiber_never_runs_and_its_closure_is_dropped() {
    let _w = watchdog("an_unstarted_fiber_never_runs_and_its_closure_is_dropped");
    let dropped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    rt(1).run(|| {
        // One worker, and the root does not park before cancelling: the fiber cannot start.
        let (t, r) = (Tally(dropped.clone()), ran.clone());
        let h = fibra::spawn(move || {
            let _t = t;
            r.store(true, SeqCst);
        });
        h.cancel();
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert_eq!(dropped.load(SeqCst), 1);
    assert!(!ran.load(SeqCst));
}

#[fibra::test(workers = 2)]
fn cancelling_a_finished_fiber_keeps_its_result() {
    let _w = watchdog("cancelling_a_finished_fiber_keeps_its_result");
    let h = fibra::spawn(|| 42);
    while !h.is_finished() {
        fibra::yield_now();
    }
    h.cancel();
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn cancel_racing_completion_gives_a_result_or_cancelled_and_drops_once() {
    let _w = watchdog("cancel_racing_completion_gives_a_result_or_cancelled_and_drops_once");
    const N: usize = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let dropped = Arc::new(AtomicUsize::new(0));
    let (ok, cancelled) = rt(2).run(|| {
        let (mut ok, mut cancelled) = (0, 0);
        for i in 0..N {
            let t = Tally(dropped.clone());
            let h = fibra::spawn(move || {
                let _t = t;
                if i % 3 == 0 {
                    fibra::yield_now();
                } else if i % 3 == 1 {
                    fibra::sleep(Duration::from_micros(1));
                }
                i
            });
            if i % 2 == 0 {
                fibra::yield_now();
            }
            h.cancel();
            match h.join() {
                Ok(v) => {
                    assert_eq!(v, i);
                    ok += 1
                }
                Err(JoinError::Cancelled) => cancelled += 1,
                Err(e) => panic!("{e}"),
            }
        }
        (ok, cancelled)
    });
    assert_eq!(ok + cancelled, N);
    assert!(cancelled > 0);
    assert_eq!(
        dropped.load(SeqCst),
        N,
        "each closure's capture dropped exactly once"
    );
}

#[fibra::test(workers = 2)]
fn catching_the_cancellation_and_resuming_it_still_cancels() {
    let _w = watchdog("catching_the_cancellation_and_resuming_it_still_cancels");
    let h = fibra::spawn(|| {
        let r = panic::catch_unwind(|| fibra::sleep(Duration::from_secs(3600)));
        // Waits return at once while the fiber is being cancelled.
        fibra::sleep(Duration::from_secs(3600));
        if let Err(p) = r {
            panic::resume_unwind(p);
        }
    });
    while h.fiber().park_reason() != fibra::ParkReason::Sleep {
        fibra::yield_now();
    }
    h.cancel();
    assert!(matches!(h.join(), Err(JoinError::Cancelled)));
}

#[fibra::test(workers = 2)]
fn dropping_a_caught_cancellation_ends_it() {
    let _w = watchdog("dropping_a_caught_cancellation_ends_it");
    let (tx, rx) = fibra::chan::bounded::<u32>(0);
    let (caught_tx, caught_rx) = fibra::chan::bounded::<()>(1);
    let h = fibra::spawn(move || {
        let r = panic::catch_unwind(AssertUnwindSafe(fibra::park));
        assert!(r.is_err());
        drop(r); // ends the cancellation
        caught_tx.send(()).unwrap();
        rx.recv().unwrap() // parks again, normally
    });
    while h.fiber().park_reason() != fibra::ParkReason::User {
        fibra::yield_now();
    }
    h.cancel();
    caught_rx.recv().unwrap();
    tx.send(7).unwrap();
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn a_destructors_waits_return_at_once_while_cancelling() {
    let _w = watchdog("a_destructors_waits_return_at_once_while_cancelling");
    struct Joins(Option<fibra::JoinHandle<()>>, Arc<AtomicBool>);
    impl Drop for Joins {
        fn drop(&mut self) {
            let r = self.0.take().unwrap().join();
            self.1.store(matches!(r, Err(JoinError::Cancelled)), SeqCst);
            fibra::sleep(Duration::from_secs(3600)); // returns at once
        }
    }
    let saw = Arc::new(AtomicBool::new(false));
    rt(2).run(|| {
        let s = saw.clone();
        let h = fibra::spawn(move || {
            let sleeper = fibra::spawn(|| fibra::sleep(Duration::from_secs(3600)));
            let _j = Joins(Some(sleeper), s);
            fibra::park();
        });
        while h.fiber().park_reason() != fibra::ParkReason::User {
            fibra::yield_now();
        }
        h.cancel();
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert!(saw.load(SeqCst));
}

#[test]
fn a_fiber_in_blocking_waits_for_its_closure_then_unwinds() {
    let _w = watchdog("a_fiber_in_blocking_waits_for_its_closure_then_unwinds");
    let closure_done = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicUsize::new(0));
    rt(2).run(|| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (c, a) = (closure_done.clone(), after.clone());
        let h = fibra::spawn(move || {
            let local = String::from("borrowed");
            let local = &local;
            fibra::run_blocking(move || {
                go_rx.recv().unwrap();
                assert_eq!(local, "borrowed");
                c.store(true, SeqCst);
            });
            a.fetch_add(1, SeqCst); // runs: `blocking` returned normally
            fibra::park(); // unwinds here
            a.fetch_add(1, SeqCst);
        });
        while h.fiber().park_reason() != fibra::ParkReason::Blocking {
            fibra::yield_now();
        }
        h.cancel();
        fibra::sleep(Duration::from_millis(5));
        assert!(!h.is_finished());
        go_tx.send(()).unwrap();
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert!(closure_done.load(SeqCst));
    assert_eq!(after.load(SeqCst), 1);
}

#[test]
fn a_panicking_scope_body_cancels_its_fibers_and_waits_for_them() {
    let _w = watchdog("a_panicking_scope_body_cancels_its_fibers_and_waits_for_them");
    let dropped = Arc::new(AtomicUsize::new(0));
    rt(2).run(|| {
        let (_tx, rx) = fibra::chan::bounded::<()>(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            fibra::scope(|s| {
                for _ in 0..4 {
                    let t = Tally(dropped.clone());
                    let rx = &rx;
                    s.spawn(move || {
                        let _t = t;
                        let _ = rx.recv(); // would wait for ever
                    });
                }
                fibra::yield_now();
                panic!("body failed");
            })
        }));
        assert!(r.is_err());
        // Every fiber was unwound before `scope` resumed the panic.
        assert_eq!(dropped.load(SeqCst), 4);
    });
}

#[test]
fn cancelling_a_scope_owner_cancels_its_fibers_first() {
    let _w = watchdog("cancelling_a_scope_owner_cancels_its_fibers_first");
    let dropped = Arc::new(AtomicUsize::new(0));
    let owner_saw = Arc::new(AtomicUsize::new(usize::MAX));
    rt(2).run(|| {
        for in_body in [true, false] {
            let (d, o) = (dropped.clone(), owner_saw.clone());
            let owner = fibra::spawn(move || {
                let (_tx, rx) = fibra::chan::bounded::<()>(0);
                struct Check(Arc<AtomicUsize>, Arc<AtomicUsize>);
                impl Drop for Check {
                    fn drop(&mut self) {
                        self.1.store(self.0.load(SeqCst), SeqCst);
                    }
                }
                let _check = Check(d.clone(), o);
                fibra::scope(|s| {
                    for _ in 0..3 {
                        let t = Tally(d.clone());
                        let rx = &rx;
                        s.spawn(move || {
                            let _t = t;
                            let _ = rx.recv();
                        });
                    }
                    if in_body {
                        fibra::park(); // cancelled here: the scope catches it
                    }
                    // else: the scope's own wait for its fibers gets the request, cancels
                    // them and returns once they are gone; the owner unwinds at its next park
                });
                fibra::park();
                unreachable!("the owner was cancelled");
            });
            while owner.fiber().park_reason() == fibra::ParkReason::None {
                fibra::yield_now();
            }
            let before = dropped.load(SeqCst);
            owner.cancel();
            assert!(matches!(owner.join(), Err(JoinError::Cancelled)));
            assert_eq!(dropped.load(SeqCst), before + 3);
            // The scope's fibers were gone before the owner's frames unwound past the scope.
            assert_eq!(owner_saw.load(SeqCst), before + 3);
        }
    });
}

#[test]
fn a_cancelled_scoped_fiber_is_still_waited_for() {
    let _w = watchdog("a_cancelled_scoped_fiber_is_still_waited_for");
    rt(2).run(|| {
        let data = vec![1, 2, 3];
        let finished = AtomicUsize::new(0);
        fibra::scope(|s| {
            let h = s.spawn(|| {
                struct Late<'a>(&'a [i32], &'a AtomicUsize);
                impl Drop for Late<'_> {
                    fn drop(&mut self) {
                        // Runs during the unwind; the scope must still be waiting.
                        self.1.fetch_add(self.0.len(), SeqCst);
                    }
                }
                let _l = Late(&data, &finished);
                fibra::park();
            });
            while h.fiber().park_reason() != fibra::ParkReason::User {
                fibra::yield_now();
            }
            h.cancel();
        });
        assert_eq!(finished.load(SeqCst), 3);
    });
}

#[test]
fn cancel_then_shutdown_and_cancel_during_shutdown() {
    let _w = watchdog("cancel_then_shutdown_and_cancel_during_shutdown");
    let dropped = Arc::new(AtomicUsize::new(0));
    let handles = rt(2).run(|| {
        let hs: Vec<_> = (0..64)
            .map(|i| {
                let t = Tally(dropped.clone());
                fibra::spawn(move || {
                    let _t = t;
                    fibra::sleep(Duration::from_millis(i % 3));
                    fibra::park();
                })
            })
            .collect();
        for h in hs.iter().step_by(2) {
            h.cancel();
        }
        hs // the session ends with some cancels in flight
    });
    for h in &handles {
        h.cancel(); // after the session: a no-op
    }
    for h in handles {
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    }
    assert_eq!(dropped.load(SeqCst), 64);
}
