//! Shutdown: when the root returns, every fiber still alive is unwound (destructors run
//! exactly once, joins report `Cancelled`) wherever it waits, and `block_on` returns.
//! Thread and memory-map accounting is in `rt_shutdown_leaks.rs` (a binary of its own).

use std::cell::Cell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::mpsc::{self};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fibra::{JoinError, JoinHandle, ParkReason, Runtime, SpawnError};

mod common;
use common::{scaled, watchdog};

/// How long a session may take to shut down before the test fails as hung.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` as a session of `rt` on a thread of its own and returns its value; fails the
/// test (instead of hanging the whole binary) if `block_on` has not returned within
/// `SHUTDOWN_LIMIT`. A hung session's threads are left behind; the test fails anyway.
fn session<T, F>(rt: Runtime, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(|| rt.run(f))));
    });
    match rx.recv_timeout(SHUTDOWN_LIMIT) {
        Ok(Ok(v)) => v,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("block_on did not return within {SHUTDOWN_LIMIT:?}: shutdown hangs"),
    }
}

fn default_rt() -> Runtime {
    Runtime::new().unwrap()
}

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn assert_all_cancelled<T>(handles: Vec<JoinHandle<T>>) {
    for (i, h) in handles.into_iter().enumerate() {
        assert!(
            h.is_finished(),
            "handle {i}: not finished after the session"
        );
        match h.join() {
            Err(JoinError::Cancelled) => {}
            Err(e) => panic!("handle {i}: expected Cancelled, got {e:?}"),
            Ok(_) => panic!("handle {i}: expected Cancelled, got a value"),
        }
    }
}

/// Waits (yielding) until the fiber is parked for `reason`.
fn wait_parked(fiber: &fibra::Fiber, reason: ParkReason) {
    while fiber.park_reason() != reason {
        fibra::yield_now();
    }
}

/// 100k fibers parked forever (half in `park` loops on a flag never set, half sleeping an
/// hour) plus a few never started: `block_on` returns, every captured value is dropped once,
/// and every handle reports `Cancelled`. Debug builds use 20k (forced unwinding is slow
/// there); `rt_shutdown_leaks.rs` runs the full 100k in every build. Both counts are times
/// `FIBRA_TEST_SCALE`.
#[test]
fn shutdown_unwinds_100k_parked_fibers() {
    let parked = scaled(
        if cfg!(debug_assertions) {
            20_000
        } else {
            100_000
        },
        2,
    );
    let never_started = scaled(1000, 1);
    let _w = watchdog("shutdown_unwinds_100k_parked_fibers");
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let handles = session(default_rt(), move || {
        let never = Arc::new(AtomicBool::new(false));
        let mut hs: Vec<JoinHandle<()>> = (0..parked)
            .map(|i| {
                let (guard, never) = (DropCount(d.clone()), never.clone());
                fibra::spawn(move || {
                    let _guard = guard;
                    if i % 2 == 0 {
                        while !never.load(Relaxed) {
                            fibra::park();
                        }
                    } else {
                        fibra::sleep(Duration::from_secs(3600));
                    }
                })
            })
            .collect();
        for (i, h) in hs.iter().enumerate() {
            wait_parked(
                h.fiber(),
                if i % 2 == 0 {
                    ParkReason::User
                } else {
                    ParkReason::Sleep
                },
            );
        }
        assert_eq!(d.load(SeqCst), 0);
        // These are queued when the root returns; most never run.
        hs.extend((0..never_started).map(|_| {
            let guard = DropCount(d.clone());
            fibra::spawn(move || {
                let _guard = guard;
                fibra::park();
            })
        }));
        hs
    });
    assert_eq!(drops.load(SeqCst), parked + never_started);
    assert_all_cancelled(handles);
}

/// A future that never completes and counts its drop.
struct PendingWith(#[allow(dead_code)] DropCount);

impl Future for PendingWith {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Dropped inside a scope-owning fiber after its scoped children: adds what they counted.
struct Outer<'a> {
    children_dropped: &'a AtomicUsize,
    observed: Arc<AtomicUsize>,
}

impl Drop for Outer<'_> {
    fn drop(&mut self) {
        self.observed
            .fetch_add(self.children_dropped.load(SeqCst), SeqCst);
    }
}

/// Dropped in a scoped child: writes into its owner's stack frame (which must still exist).
struct Inner<'a>(&'a AtomicUsize);

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// 1000 (times `FIBRA_TEST_SCALE`) fibers of each kind of wait — sleep, join, scope,
/// `block_on` of a pending future, `park`, and endless `yield_now` — all unwound at shutdown.
#[test]
fn shutdown_unwinds_fibers_in_every_kind_of_wait() {
    let n = scaled(1000, 1);
    const SCOPE_CHILDREN: usize = 3;
    let _w = watchdog("shutdown_unwinds_fibers_in_every_kind_of_wait");
    let drops = Arc::new(AtomicUsize::new(0));
    let observed = Arc::new(AtomicUsize::new(0));
    let (d, obs) = (drops.clone(), observed.clone());
    let rt = Runtime::builder().workers(2).build().unwrap();
    let start = Instant::now();
    let handles = session(rt, move || {
        let mut hs: Vec<JoinHandle<()>> = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..n {
            // sleep
            let g = DropCount(d.clone());
            let h = fibra::spawn(move || {
                let _g = g;
                fibra::sleep(Duration::from_secs(3600));
            });
            waits.push((h.fiber().clone(), ParkReason::Sleep));
            hs.push(h);

            // join a fiber that parks forever
            let g = DropCount(d.clone());
            let target = fibra::spawn(move || {
                let _g = g;
                loop {
                    fibra::park();
                }
            });
            let g = DropCount(d.clone());
            let h = fibra::spawn(move || {
                let _g = g;
                let _ = target.join();
                unreachable!("the target never finishes");
            });
            waits.push((h.fiber().clone(), ParkReason::Join));
            hs.push(h);

            // scope whose children park forever, borrowing the owner's stack
            let g = DropCount(d.clone());
            let obs = obs.clone();
            let h = fibra::spawn(move || {
                let _g = g;
                let children_dropped = AtomicUsize::new(0);
                let _outer = Outer {
                    children_dropped: &children_dropped,
                    observed: obs,
                };
                fibra::scope(|s| {
                    for _ in 0..SCOPE_CHILDREN {
                        let inner = Inner(&children_dropped);
                        s.spawn(move || {
                            let _inner = inner;
                            loop {
                                fibra::park();
                            }
                        });
                    }
                });
            });
            waits.push((h.fiber().clone(), ParkReason::Scope));
            hs.push(h);

            // block_on a future that never completes
            let fut = PendingWith(DropCount(d.clone()));
            let h = fibra::spawn(move || fibra::await_future(fut));
            waits.push((h.fiber().clone(), ParkReason::BlockOn));
            hs.push(h);

            // park
            let g = DropCount(d.clone());
            let h = fibra::spawn(move || {
                let _g = g;
                loop {
                    fibra::park();
                }
            });
            waits.push((h.fiber().clone(), ParkReason::User));
            hs.push(h);

            // yield forever: runnable, never parked
            let g = DropCount(d.clone());
            hs.push(fibra::spawn(move || {
                let _g = g;
                loop {
                    fibra::yield_now();
                }
            }));
        }
        for (fiber, reason) in &waits {
            wait_parked(fiber, *reason);
        }
        hs
    });
    // sleep, join + its target, scope, block_on's future, park, yield: 7 guards per round.
    assert_eq!(drops.load(SeqCst), 7 * n);
    // Every scope owner was unwound after its children: it saw all their drops.
    assert_eq!(observed.load(SeqCst), n * SCOPE_CHILDREN);
    assert_all_cancelled(handles);
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// A fiber parked when the root returns is unwound, never resumed, even when shutdown itself
/// wakes it: here each joiner is woken by the unwinding of the fiber it joins, which may run
/// on the other worker. Had the joiner been resumed, its `join` would return and its code go
/// on (it counts that) and its own handle would report `Ok`. The race window is short:
/// hundreds of sessions of 100 pairs each; it shows reliably in release builds. Sessions are
/// times `FIBRA_TEST_SCALE`.
#[test]
fn fibers_woken_during_shutdown_are_unwound_not_resumed() {
    let sessions = scaled(300, 1);
    const PAIRS: usize = 100;
    let _w = watchdog("fibers_woken_during_shutdown_are_unwound_not_resumed");
    let rt = Runtime::builder().workers(2).build().unwrap();
    let resumed = Arc::new(AtomicUsize::new(0));
    let mut not_cancelled = 0;
    for _ in 0..sessions {
        let r = resumed.clone();
        let joiners = session(rt.clone(), move || {
            let joiners: Vec<_> = (0..PAIRS)
                .map(|_| {
                    let target = fibra::spawn(|| loop {
                        fibra::park();
                    });
                    let r = r.clone();
                    fibra::spawn(move || {
                        let _ = target.join();
                        r.fetch_add(1, SeqCst); // only if resumed after shutdown began
                    })
                })
                .collect();
            for j in &joiners {
                wait_parked(j.fiber(), ParkReason::Join);
            }
            joiners
        });
        not_cancelled += joiners
            .into_iter()
            .map(JoinHandle::join)
            .filter(|r| !matches!(r, Err(JoinError::Cancelled)))
            .count();
    }
    assert_eq!(
        (resumed.load(SeqCst), not_cancelled),
        (0, 0),
        "(joiners resumed during shutdown, joiners not Cancelled) out of {}",
        sessions * PAIRS
    );
}

fibra::fiber_local! {
    static LOCAL_GUARD: Cell<Option<DropCount>> = Cell::new(None);
}

/// Fiber-local values of unwound fibers are dropped too.
#[test]
fn shutdown_drops_fiber_locals() {
    const N: usize = 500;
    let _w = watchdog("shutdown_drops_fiber_locals");
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let handles = session(default_rt(), move || {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let d = d.clone();
                fibra::spawn(move || {
                    LOCAL_GUARD.with(|g| g.set(Some(DropCount(d))));
                    loop {
                        fibra::park();
                    }
                })
            })
            .collect();
        for h in &hs {
            wait_parked(h.fiber(), ParkReason::User);
        }
        hs
    });
    assert_eq!(drops.load(SeqCst), N);
    assert_all_cancelled(handles);
}

/// Outcomes of fibra calls made by destructors that run during shutdown's unwinding.
#[derive(Default)]
struct Outcomes {
    ran: AtomicUsize,
    spawn_cancelled: AtomicUsize,
    builder_shutting_down: AtomicUsize,
    unexpected: AtomicUsize,
}

/// Calls fibra from its destructor: spawning is refused, waits do not block.
struct CallsFibraOnDrop(Arc<Outcomes>);

impl Drop for CallsFibraOnDrop {
    fn drop(&mut self) {
        let o = &self.0;
        match fibra::spawn(|| 1).join() {
            Err(JoinError::Cancelled) => o.spawn_cancelled.fetch_add(1, SeqCst),
            _ => o.unexpected.fetch_add(1, SeqCst),
        };
        match fibra::Builder::new().spawn(|| ()) {
            Err(SpawnError::ShuttingDown) => o.builder_shutting_down.fetch_add(1, SeqCst),
            _ => o.unexpected.fetch_add(1, SeqCst),
        };
        fibra::sleep(Duration::from_secs(3600)); // must not wait: nothing will wake it
        fibra::yield_now();
        o.ran.fetch_add(1, SeqCst);
    }
}

/// Destructors running during shutdown may call fibra: spawns are refused (`spawn` hands
/// back a cancelled handle, `Builder::spawn` an error) and sleeps/yields return at once.
#[test]
fn destructors_may_call_fibra_during_shutdown() {
    const N: usize = 100;
    let _w = watchdog("destructors_may_call_fibra_during_shutdown");
    let outcomes = Arc::new(Outcomes::default());
    let o = outcomes.clone();
    session(default_rt(), move || {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let guard = CallsFibraOnDrop(o.clone());
                fibra::spawn(move || {
                    let _guard = guard;
                    fibra::sleep(Duration::from_secs(3600));
                })
            })
            .collect();
        for h in &hs {
            wait_parked(h.fiber(), ParkReason::Sleep);
        }
    });
    assert_eq!(outcomes.ran.load(SeqCst), N);
    assert_eq!(outcomes.spawn_cancelled.load(SeqCst), N);
    assert_eq!(outcomes.builder_shutting_down.load(SeqCst), N);
    assert_eq!(outcomes.unexpected.load(SeqCst), 0);
}

/// After a session that had to unwind fibers, the same `Runtime` runs the next one normally.
#[test]
fn a_runtime_is_reusable_after_shutdown() {
    let _w = watchdog("a_runtime_is_reusable_after_shutdown");
    let rt = Runtime::builder().workers(2).build().unwrap();
    for round in 0..3usize {
        let handles = session(rt.clone(), || {
            let hs: Vec<_> = (0..100)
                .map(|_| {
                    fibra::spawn(|| loop {
                        fibra::park();
                    })
                })
                .collect();
            for h in &hs {
                wait_parked(h.fiber(), ParkReason::User);
            }
            hs
        });
        assert_all_cancelled(handles);
        let v = session(rt.clone(), move || {
            fibra::spawn(move || round * 2).join().unwrap()
        });
        assert_eq!(v, round * 2);
    }
}
