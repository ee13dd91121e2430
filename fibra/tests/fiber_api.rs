//! The fiber API: `Builder`, `JoinHandle`, `Fiber`, `scope`, `block_on`, `fiber_local!`,
//! `park`/`unpark`.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use fibra::{JoinError, ParkReason, Runtime, SpawnError};

mod common;
use common::watchdog;

/// The text of a panic payload (`panic!` gives `&str` or `String`).
fn message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}

type Identity = (fibra::FiberId, Option<String>);

/// Spawns a named fiber; returns its handle and the spawn site `Builder::spawn` should
/// record (this function's caller: `#[track_caller]` passes the location through).
#[track_caller]
fn spawn_alpha() -> (fibra::JoinHandle<Identity>, &'static Location<'static>) {
    let body = || {
        let me = fibra::current();
        (me.id(), me.name().map(str::to_owned))
    };
    let h = fibra::Builder::new()
        .name("alpha")
        .stack_size(128 * 1024)
        .spawn(body)
        .unwrap();
    (h, Location::caller())
}

#[test]
fn builder_name_and_location_are_visible() {
    fibra::run(|| {
        let (h, site) = spawn_alpha();
        assert_eq!(h.fiber().name(), Some("alpha"));
        assert_eq!(h.fiber().spawn_location(), site);
        assert_eq!(site.file(), file!());
        let id = h.fiber().id();
        let (inner_id, inner_name) = h.join().unwrap();
        assert_eq!(inner_id, id);
        assert_eq!(inner_name.as_deref(), Some("alpha"));

        let unnamed = fibra::spawn(|| fibra::current().name().map(str::to_owned));
        assert_eq!(unnamed.fiber().name(), None);
        assert_eq!(unnamed.join().unwrap(), None);

        let debug = format!(
            "{:?}",
            fibra::Builder::new().name("dbg").spawn(|| ()).unwrap()
        );
        assert!(debug.contains("dbg"), "{debug}");
    });
}

#[test]
fn fiber_ids_are_unique() {
    let ids = fibra::run(|| {
        let hs: Vec<_> = (0..1000)
            .map(|_| fibra::spawn(|| fibra::current().id()))
            .collect();
        let mut ids = HashSet::new();
        for h in hs {
            let outer = h.fiber().id();
            let inner = h.join().unwrap();
            assert_eq!(outer, inner);
            assert_eq!(inner.as_u64().to_string(), inner.to_string());
            ids.insert(inner);
        }
        ids.insert(fibra::current().id());
        ids
    });
    assert_eq!(ids.len(), 1001);
}

#[test]
fn builder_stack_size_below_minimum_is_rejected() {
    fibra::run(|| {
        match fibra::Builder::new().stack_size(1024).spawn(|| ()) {
            Err(SpawnError::StackTooSmall { requested, minimum }) => {
                assert_eq!(requested, 1024);
                assert_eq!(minimum, fibra::MIN_STACK_SIZE);
            }
            other => panic!("expected StackTooSmall, got {other:?}"),
        }
        // Exactly the minimum is fine for a leaf fiber.
        let h = fibra::Builder::new()
            .stack_size(fibra::MIN_STACK_SIZE)
            .spawn(|| 3)
            .unwrap();
        assert_eq!(h.join().unwrap(), 3);
    });
}

/// Recurses with 4 KiB frames until `top - here >= target`; returns the depth reached in bytes.
#[inline(never)]
fn dig(top: usize, target: usize) -> usize {
    let mut frame = [0u8; 4096];
    black_box(&mut frame);
    let here = black_box(frame.as_ptr()) as usize;
    let used = top - here;
    let deepest = if used >= target {
        used
    } else {
        dig(top, target)
    };
    black_box(&frame);
    deepest
}

fn stack_top() -> usize {
    let marker = 0u8;
    black_box(&marker) as *const u8 as usize
}

#[test]
fn a_big_stack_can_be_used() {
    let used = fibra::run(|| {
        fibra::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| dig(stack_top(), 100 * 1024))
            .unwrap()
            .join()
            .unwrap()
    });
    assert!(used >= 100 * 1024, "used {used} bytes");

    // The runtime's default stack size applies to the root fiber and to spawned ones.
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(256 * 1024)
        .build()
        .unwrap();
    let (root, child) = rt.run(|| {
        let root = dig(stack_top(), 200 * 1024);
        let child = fibra::spawn(|| dig(stack_top(), 200 * 1024))
            .join()
            .unwrap();
        (root, child)
    });
    assert!(root >= 200 * 1024 && child >= 200 * 1024);
}

#[test]
fn is_finished_and_park_reason_track_the_fiber() {
    let _w = watchdog("is_finished_and_park_reason_track_the_fiber");
    fibra::run(|| {
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let h = fibra::spawn(move || {
            while !g.load(Acquire) {
                fibra::park();
            }
            5
        });
        while h.fiber().park_reason() != ParkReason::User {
            fibra::yield_now();
        }
        assert!(!h.is_finished());
        assert!(!h.fiber().is_finished());

        let sleeper = fibra::spawn(|| fibra::sleep(Duration::from_millis(50)));
        while sleeper.fiber().park_reason() != ParkReason::Sleep {
            fibra::yield_now();
        }
        let target = h.fiber().clone();
        let joiner = fibra::spawn(move || h.join().unwrap());
        while joiner.fiber().park_reason() != ParkReason::Join {
            fibra::yield_now();
        }
        assert_eq!(fibra::current().park_reason(), ParkReason::None);

        go.store(true, Release);
        target.unpark();
        assert_eq!(joiner.join().unwrap(), 5);
        assert!(target.is_finished());
        sleeper.join().unwrap();
    });
}

/// A panicking fiber reports `Panicked` with its payload; the others and the runtime go on.
#[test]
fn panics_are_isolated_to_their_fiber() {
    fibra::run(|| {
        let hs: Vec<_> = (0..100usize)
            .map(|i| {
                fibra::spawn(move || {
                    fibra::yield_now();
                    if i % 10 == 0 {
                        panic!("fiber {i} failed");
                    }
                    i
                })
            })
            .collect();
        let (mut ok, mut panicked) = (0, 0);
        for (i, h) in hs.into_iter().enumerate() {
            match h.join() {
                Ok(v) => {
                    assert_eq!(v, i);
                    ok += 1;
                }
                Err(e @ JoinError::Panicked(_)) => {
                    assert_eq!(e.to_string(), format!("fiber panicked: fiber {i} failed"));
                    let payload = e.into_panic().unwrap();
                    assert_eq!(message(&*payload), format!("fiber {i} failed"));
                    panicked += 1;
                }
                Err(e) => panic!("fiber {i}: unexpected {e:?}"),
            }
        }
        assert_eq!((ok, panicked), (90, 10));
        assert_eq!(fibra::spawn(|| 5).join().unwrap(), 5);
    });
}

/// Dropping a `JoinHandle` detaches the fiber: it still runs to completion.
#[test]
fn dropping_a_join_handle_detaches() {
    let _w = watchdog("dropping_a_join_handle_detaches");
    fibra::run(|| {
        let done = Arc::new(AtomicBool::new(false));
        let me = fibra::current();
        let d = done.clone();
        drop(fibra::spawn(move || {
            fibra::yield_now();
            fibra::sleep(Duration::from_millis(1));
            d.store(true, Release);
            me.unpark();
        }));
        while !done.load(Acquire) {
            fibra::park();
        }
    });
}

#[test]
fn scoped_fibers_borrow_the_callers_stack() {
    fibra::run(|| {
        let counters: Vec<AtomicU64> = (0..10).map(|_| AtomicU64::new(0)).collect();
        let mut slots = vec![0usize; 100];
        let n = fibra::scope(|s| {
            for (i, slot) in slots.iter_mut().enumerate() {
                let counters = &counters;
                s.spawn(move || {
                    fibra::yield_now();
                    counters[i % 10].fetch_add(i as u64, Relaxed);
                    *slot = i * i;
                });
            }
            100
        });
        assert_eq!(n, 100);
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(*slot, i * i);
        }
        for (k, c) in counters.iter().enumerate() {
            // sum of i in 0..100 with i % 10 == k
            assert_eq!(
                c.load(Relaxed),
                (0..10).map(|j| (10 * j + k) as u64).sum::<u64>()
            );
        }
    });
}

#[test]
fn scoped_join_handle_returns_borrowed_values() {
    fibra::run(|| {
        let v = [1, 2, 3, 4];
        let (tail, finished) = fibra::scope(|s| {
            let h = s.spawn(|| &v[2..]);
            let other = s.spawn(|| v.len());
            let tail = h.join().unwrap();
            while !other.is_finished() {
                fibra::yield_now();
            }
            (tail, other.join().unwrap())
        });
        assert_eq!(tail, &[3, 4]);
        assert_eq!(finished, 4);

        // A joined panic is handled: the scope does not panic.
        let handled = fibra::scope(|s| s.spawn(|| panic!("joined")).join().is_err());
        assert!(handled);
    });
}

/// An unjoined scoped fiber that panicked makes `scope` panic, after every fiber finished.
#[test]
fn scope_panics_if_an_unjoined_fiber_panicked() {
    fibra::run(|| {
        let finished = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            fibra::scope(|s| {
                s.spawn(|| panic!("scoped boom"));
                for _ in 0..10 {
                    s.spawn(|| {
                        fibra::yield_now();
                        fibra::sleep(Duration::from_millis(1));
                        finished.fetch_add(1, Relaxed);
                    });
                }
                5
            })
        }));
        assert_eq!(message(&*r.unwrap_err()), "a scoped fiber panicked");
        assert_eq!(finished.load(Relaxed), 10);

        // The closure's own panic resumes, after its fibers were cancelled (those not started
        // never run; the others unwind at their next park) and are gone.
        struct Gone<'a>(&'a AtomicUsize);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let gone = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            fibra::scope(|s| {
                for _ in 0..10 {
                    let g = Gone(&gone);
                    s.spawn(|| {
                        let _g = g;
                        fibra::yield_now();
                        fibra::sleep(Duration::from_secs(3600)); // cancelled here
                        finished.fetch_add(1, Relaxed);
                    });
                }
                fibra::yield_now(); // let some start
                panic!("closure boom");
            })
        }));
        assert_eq!(message(&*r.unwrap_err()), "closure boom");
        assert_eq!(gone.load(Relaxed), 10);
        assert_eq!(finished.load(Relaxed), 10);
    });
}

/// A hand-made oneshot channel: the receiver is a future.
struct Oneshot {
    value: Option<u32>,
    waker: Option<Waker>,
}

struct Recv(Arc<Mutex<Oneshot>>);

impl Future for Recv {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        let mut s = self.0.lock().unwrap();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn oneshot() -> (Arc<Mutex<Oneshot>>, Recv) {
    let s = Arc::new(Mutex::new(Oneshot {
        value: None,
        waker: None,
    }));
    (s.clone(), Recv(s))
}

fn send(s: &Mutex<Oneshot>, v: u32) {
    let waker = {
        let mut s = s.lock().unwrap();
        s.value = Some(v);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

#[test]
fn block_on_a_future_woken_from_another_thread() {
    let _w = watchdog("block_on_a_future_woken_from_another_thread");
    fibra::run(|| {
        let hs: Vec<_> = (0..8u32)
            .map(|i| {
                fibra::spawn(move || {
                    let (tx, rx) = oneshot();
                    // Taken before the sender starts, so the bound holds however late this
                    // fiber runs again: the value cannot exist before the sender's sleep.
                    let start = Instant::now();
                    let t = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(10));
                        send(&tx, i + 100);
                    });
                    let v = fibra::await_future(rx);
                    assert!(start.elapsed() >= Duration::from_millis(10));
                    t.join().unwrap();
                    v
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i as u32 + 100);
        }
    });
}

/// `block_on` parks only the fiber: on one worker, the future is completed by another fiber.
#[test]
fn block_on_parks_only_the_fiber() {
    let _w = watchdog("block_on_parks_only_the_fiber");
    let rt = Runtime::builder().workers(1).build().unwrap();
    let v = rt.run(|| {
        let (tx, rx) = oneshot();
        let waiter = fibra::spawn(move || fibra::await_future(rx));
        while waiter.fiber().park_reason() != ParkReason::BlockOn {
            fibra::yield_now();
        }
        fibra::spawn(move || send(&tx, 7)).join().unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(v, 7);
}

/// A future that wakes itself while being polled is polled again (the wake is not lost).
#[test]
fn block_on_a_self_waking_future() {
    struct WakeSelf(u32);
    impl Future for WakeSelf {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.0 == 0 {
                return Poll::Ready(99);
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    let _w = watchdog("block_on_a_self_waking_future");
    assert_eq!(fibra::run(|| fibra::await_future(WakeSelf(1000))), 99);
}

fibra::fiber_local! {
    static OWN: Cell<u64> = Cell::new(0);
}

#[test]
fn fiber_locals_are_per_fiber() {
    fibra::run(|| {
        OWN.with(|v| v.set(u64::MAX));
        let hs: Vec<_> = (1..=100u64)
            .map(|i| {
                fibra::spawn(move || {
                    assert_eq!(OWN.with(Cell::get), 0, "a new fiber starts fresh");
                    OWN.with(|v| v.set(i));
                    for _ in 0..10 {
                        fibra::yield_now();
                        assert_eq!(OWN.with(Cell::get), i);
                    }
                    OWN.with(Cell::get)
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i as u64 + 1);
        }
        assert_eq!(OWN.with(Cell::get), u64::MAX);
    });
    // On a plain thread the key works too (a per-thread value).
    std::thread::spawn(|| {
        assert_eq!(OWN.with(Cell::get), 0);
        OWN.with(|v| v.set(3));
        assert_eq!(OWN.with(Cell::get), 3);
    })
    .join()
    .unwrap();
}

static LAZY_INITS: AtomicUsize = AtomicUsize::new(0);

fibra::fiber_local! {
    static LAZY: u32 = {
        LAZY_INITS.fetch_add(1, SeqCst);
        17
    };
}

/// The initializer runs on first use, once per fiber that uses the key.
#[test]
fn fiber_local_init_is_lazy_and_once_per_fiber() {
    fibra::run(|| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                fibra::spawn(move || {
                    if i % 2 == 0 {
                        for _ in 0..3 {
                            assert_eq!(LAZY.with(|v| *v), 17);
                            fibra::yield_now();
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(LAZY_INITS.load(SeqCst), 25);
}

static LOCAL_DROPS: AtomicUsize = AtomicUsize::new(0);

struct CountsDrop(u32);

impl Drop for CountsDrop {
    fn drop(&mut self) {
        LOCAL_DROPS.fetch_add(1, SeqCst);
    }
}

fibra::fiber_local! {
    static DROPPED: CountsDrop = CountsDrop(1);
}

/// A fiber's locals are dropped when it ends, also when it ends by panicking.
#[test]
fn fiber_local_destructors_run_when_the_fiber_ends() {
    fibra::run(|| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                fibra::spawn(move || {
                    assert_eq!(DROPPED.with(|d| d.0), 1);
                    fibra::yield_now();
                    if i % 5 == 0 {
                        panic!("with a local");
                    }
                })
            })
            .collect();
        let panicked = hs
            .into_iter()
            .map(|h| h.join().is_err() as usize)
            .sum::<usize>();
        assert_eq!(panicked, 10);
        // Every joined fiber has dropped its local before `join` returned.
        assert_eq!(LOCAL_DROPS.load(SeqCst), 50);
    });
}

/// `unpark` before `park` leaves a token: the next `park` returns at once.
#[test]
fn unpark_before_park_makes_park_return() {
    let _w = watchdog("unpark_before_park_makes_park_return");
    fibra::run(|| {
        let me = fibra::current();
        me.unpark();
        fibra::park();
        me.waker().wake_by_ref();
        fibra::park();

        // A token left while a fiber is queued, before it ever ran.
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let h = fibra::spawn(move || {
            fibra::park();
            r.store(true, Release);
        });
        h.fiber().unpark();
        h.join().unwrap();
        assert!(ran.load(Acquire));
    });
}

/// A parked fiber is woken by an unpark, or its waker, from a plain OS thread.
#[test]
fn unpark_from_another_thread() {
    let _w = watchdog("unpark_from_another_thread");
    fibra::run(|| {
        for use_waker in [false, true] {
            let flag = Arc::new(AtomicBool::new(false));
            let me = fibra::current();
            let f = flag.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                f.store(true, Release);
                if use_waker {
                    me.waker().wake();
                } else {
                    me.unpark();
                }
            });
            while !flag.load(Acquire) {
                fibra::park();
            }
            t.join().unwrap();
        }
    });
}

/// `JoinHandle::join` also works from a plain OS thread (it blocks the thread).
#[test]
fn join_from_a_plain_thread() {
    let _w = watchdog("join_from_a_plain_thread");
    let v = fibra::run(|| {
        let h = fibra::spawn(|| {
            fibra::sleep(Duration::from_millis(5));
            11
        });
        let t = std::thread::spawn(move || h.join().unwrap());
        // The thread blocks, not this worker: keep the runtime busy meanwhile.
        while !t.is_finished() {
            fibra::sleep(Duration::from_millis(1));
        }
        t.join().unwrap()
    });
    assert_eq!(v, 11);
}

/// Counts its drops (a packet's code or result).
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Over-aligned: no packet holding one fits the header's inline area.
#[repr(align(64))]
struct Aligned(u64);

/// A packet's contents go when the fiber and its handle are both done with them, not when
/// the last `Fiber` handle goes: inline packets (small), boxed ones (big or over-aligned).
#[test]
fn packets_are_dropped_when_both_sides_are_done() {
    let _w = watchdog("packets_are_dropped_when_both_sides_are_done");
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        // Joined: the result is taken; the closure's capture went when it ran.
        let d = DropCount(drops.clone());
        let h = fibra::spawn(move || {
            let _d = d;
            [7u64; 32] // a big result: boxed packet
        });
        let fiber = h.fiber().clone();
        assert_eq!(h.join().unwrap(), [7u64; 32]);
        assert_eq!(drops.load(SeqCst), 1);
        assert!(fiber.is_finished());

        // Detached: the result (never taken) is dropped by the fiber side, while `Fiber`
        // handles are still held.
        for big in [false, true] {
            let before = drops.load(SeqCst);
            let pad = [1u8; 256];
            let d = DropCount(drops.clone());
            let h = if big {
                fibra::spawn(move || {
                    black_box(&pad);
                    d
                })
            } else {
                fibra::spawn(move || d)
            };
            let fiber = h.fiber().clone();
            drop(h);
            while !fiber.is_finished() {
                fibra::yield_now();
            }
            let start = Instant::now();
            while drops.load(SeqCst) == before {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "result never dropped"
                );
                fibra::yield_now();
            }
            assert_eq!(drops.load(SeqCst), before + 1);
            drop(fiber);
        }

        // Over-aligned code and result.
        let a = Aligned(5);
        let h = fibra::spawn(move || Aligned(a.0 + 1));
        assert_eq!(h.join().unwrap().0, 6);

        // Scoped, big and small: the scope waits for every packet.
        let data = [1u64, 2, 3];
        let pad = [3u8; 200];
        let (small, big) = fibra::scope(|s| {
            let small = s.spawn(|| data.iter().sum::<u64>());
            let big = s.spawn(|| data.len() as u64 + black_box(&pad)[0] as u64);
            let _detached = s.spawn(|| black_box(&pad).len());
            (small.join().unwrap(), big.join().unwrap())
        });
        assert_eq!((small, big), (6, 6));
    });
}

/// Fibers still queued when the session ends never run: their closures, inline or boxed,
/// are dropped once (and a handle kept past the session reports them cancelled).
#[test]
fn never_run_fibers_drop_their_code_once() {
    let _w = watchdog("never_run_fibers_drop_their_code_once");
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handles = rt.run(|| {
        let mut hs = Vec::new();
        for i in 0..20 {
            let d = DropCount(drops.clone());
            let pad = [i as u8; 128];
            hs.push(if i % 2 == 0 {
                fibra::spawn(move || drop(black_box((d, pad))))
            } else {
                fibra::spawn(move || drop(d))
            });
        }
        hs // the root returns at once: the fibers are still queued
    });
    for h in handles {
        let _ = h.join();
    }
    assert_eq!(drops.load(SeqCst), 20);
}

/// Headers are reused for later spawns: each fiber still sees its own id, name, locals and
/// parks, whatever ran in that memory before.
#[test]
fn recycled_headers_start_fresh() {
    let _w = watchdog("recycled_headers_start_fresh");
    fibra::fiber_local! {
        static COUNT: Cell<u32> = Cell::new(0);
    }
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let mut ids = HashSet::new();
        for round in 0..20u32 {
            let hs: Vec<_> = (0..200u32)
                .map(|i| {
                    let name = format!("r{round}-{i}");
                    fibra::Builder::new()
                        .name(name.clone())
                        .spawn(move || {
                            let me = fibra::current();
                            assert_eq!(me.name(), Some(name.as_str()));
                            COUNT.with(|c| c.set(c.get() + 1));
                            if i % 3 == 0 {
                                me.unpark();
                                fibra::park(); // the token: returns at once
                                fibra::yield_now();
                            }
                            (me.id(), COUNT.with(Cell::get))
                        })
                        .unwrap()
                })
                .collect();
            for h in hs {
                assert!(!h.is_finished() || h.fiber().park_reason() == ParkReason::None);
                let (id, count) = h.join().unwrap();
                assert!(ids.insert(id), "fiber id {id} seen twice");
                assert_eq!(count, 1, "a fiber local leaked into a recycled header");
            }
        }
    });
}
