//! Fairness on one worker: a fiber that yields, or a pair that keeps waking each other, does
//! not starve the rest. Each test would hang if the scheduler were unfair; a watchdog turns
//! that hang into an abort with a message.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fibra::{Fiber, Runtime};

mod common;
use common::watchdog;

fn one_worker() -> Runtime {
    Runtime::builder().workers(1).build().unwrap()
}

/// A spins on `yield_now` until B sets a flag; with one worker this ends only if a yield
/// lets B run.
#[test]
fn yield_now_lets_others_run() {
    let _w = watchdog("yield_now_lets_others_run");
    let spins = one_worker().run(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let a = fibra::spawn(move || {
            let mut spins = 0u64;
            loop {
                fibra::yield_now();
                spins += 1;
                if f.load(Relaxed) {
                    break spins;
                }
            }
        });
        let b = fibra::spawn(move || flag.store(true, Relaxed));
        b.join().unwrap();
        a.join().unwrap()
    });
    assert!(spins >= 1);
}

/// Two yielding counters on one worker advance in step: round robin, not one then the other.
#[test]
fn yielding_fibers_share_the_worker_evenly() {
    let _w = watchdog("yielding_fibers_share_the_worker_evenly");
    let (a, b) = one_worker().run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let (stop, counters) = (stop.clone(), counters.clone());
                fibra::spawn(move || {
                    while !stop.load(Relaxed) {
                        counters[i].fetch_add(1, Relaxed);
                        fibra::yield_now();
                    }
                })
            })
            .collect();
        let c = counters.clone();
        let referee = fibra::spawn(move || {
            while c[0].load(Relaxed) < 1000 || c[1].load(Relaxed) < 1000 {
                fibra::yield_now();
            }
            stop.store(true, Relaxed);
        });
        referee.join().unwrap();
        for w in workers {
            w.join().unwrap();
        }
        (counters[0].load(Relaxed), counters[1].load(Relaxed))
    });
    assert!(a >= 1000 && b >= 1000);
    assert!(a <= 2 * b && b <= 2 * a, "uneven: {a} vs {b}");
}

/// Hand-overs after which a ping-pong pair gives up: far more than a fair scheduler needs for
/// the yielder's 100 turns (it sees a few hand-overs per turn), so reaching it means the
/// yielder was starved. Bounded so that a starved run fails instead of hanging.
const PING_PONG_LIMIT: u64 = if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

struct PingPong {
    turn: AtomicU64,
    fibers: [OnceLock<Fiber>; 2],
    stop: AtomicBool,
}

/// A ping-pong pair (each side wakes the other, so each runs from the waker's run-next slot)
/// and a third fiber that only yields, on one worker. Returns (hand-overs done, most
/// hand-overs between two turns of the yielder, whether the yielder finished its 100 turns
/// before the pair gave up). `yielder_first`: the yielder has started before the pair
/// begins; otherwise it is a new fiber, spawned after the pair.
fn ping_pong_and_a_yielder(yielder_first: bool) -> (u64, u64, bool) {
    one_worker().run(|| {
        let pp = Arc::new(PingPong {
            turn: AtomicU64::new(0),
            fibers: [OnceLock::new(), OnceLock::new()],
            stop: AtomicBool::new(false),
        });
        let yielder_started = Arc::new(AtomicBool::new(false));
        let spawn_yielder = || {
            let (p, started) = (pp.clone(), yielder_started.clone());
            fibra::spawn(move || {
                started.store(true, Relaxed);
                let mut max_burst = 0;
                let mut last = p.turn.load(Relaxed);
                for _ in 0..100 {
                    fibra::yield_now();
                    let now = p.turn.load(Relaxed);
                    max_burst = max_burst.max(now - last);
                    last = now;
                }
                let in_time = !p.stop.swap(true, Relaxed);
                for f in p.fibers.iter().filter_map(OnceLock::get) {
                    f.unpark();
                }
                (max_burst, in_time)
            })
        };
        let early = yielder_first.then(spawn_yielder);
        let players: Vec<_> = (0..2u64)
            .map(|side| {
                let (pp, started) = (pp.clone(), yielder_started.clone());
                fibra::spawn(move || {
                    while yielder_first && !started.load(Relaxed) {
                        fibra::yield_now();
                    }
                    pp.fibers[side as usize].set(fibra::current()).unwrap();
                    while pp.fibers[1 - side as usize].get().is_none() {
                        fibra::yield_now();
                    }
                    let partner = pp.fibers[1 - side as usize].get().unwrap().clone();
                    loop {
                        // Wait for our turn (even turns are side 0's).
                        loop {
                            if pp.stop.load(Relaxed) {
                                partner.unpark();
                                return;
                            }
                            if pp.turn.load(Acquire) % 2 == side {
                                break;
                            }
                            fibra::park();
                        }
                        if pp.turn.fetch_add(1, Release) + 1 >= PING_PONG_LIMIT {
                            pp.stop.store(true, Relaxed);
                        }
                        partner.unpark();
                    }
                })
            })
            .collect();
        let yielder = early.unwrap_or_else(spawn_yielder);
        let (max_burst, in_time) = yielder.join().unwrap();
        for p in players {
            p.join().unwrap();
        }
        (pp.turn.load(Relaxed), max_burst, in_time)
    })
}

/// A started fiber that only yields keeps getting turns while a ping-pong pair hands the
/// worker back and forth through the run-next slot (the streak cap sends the pair to the back
/// of the queue).
#[test]
fn ping_pong_pair_does_not_starve_a_started_yielder() {
    let _w = watchdog("ping_pong_pair_does_not_starve_a_started_yielder");
    let (handoffs, max_burst, in_time) = ping_pong_and_a_yielder(true);
    assert!(
        in_time,
        "the yielder was starved: the pair made {handoffs} hand-overs"
    );
    assert!(
        handoffs >= 100,
        "the pair was not ping-ponging: {handoffs} hand-overs"
    );
    assert!(
        max_burst <= 50,
        "{max_burst} hand-overs between two turns of the yielder"
    );
}

/// The same with a new fiber (never run yet, so it waits in the worker's ring, not in the
/// queue of started fibers): it must get to run while the pair keeps going.
#[test]
fn ping_pong_pair_does_not_starve_a_new_fiber() {
    let _w = watchdog("ping_pong_pair_does_not_starve_a_new_fiber");
    let (handoffs, max_burst, in_time) = ping_pong_and_a_yielder(false);
    assert!(
        in_time,
        "the new fiber never ran while the pair made {handoffs} hand-overs (limit {PING_PONG_LIMIT})"
    );
    assert!(
        handoffs >= 100,
        "the pair was not ping-ponging: {handoffs} hand-overs"
    );
    assert!(
        max_burst <= 50,
        "{max_burst} hand-overs between two turns of the yielder"
    );
}

/// A yielding fiber does not keep a fiber woken from another OS thread (the worker's inbox)
/// from running.
#[test]
fn remote_wake_is_served_while_a_fiber_yields() {
    let _w = watchdog("remote_wake_is_served_while_a_fiber_yields");
    one_worker().run(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let (f, r) = (flag.clone(), released.clone());
        let parked = fibra::spawn(move || {
            while !r.load(Acquire) {
                fibra::park();
            }
            f.store(true, Relaxed);
        });
        let target = parked.fiber().clone();
        let spinner = fibra::spawn(move || {
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                released.store(true, Release);
                target.unpark();
            });
            while !flag.load(Relaxed) {
                fibra::yield_now();
            }
            t
        });
        let t = spinner.join().unwrap();
        parked.join().unwrap();
        t.join().unwrap();
    });
}

/// A burst of spawns larger than a worker's ring (overflow goes to the global queue) all run
/// while another fiber keeps yielding.
#[test]
fn spawn_burst_runs_while_a_fiber_yields() {
    let _w = watchdog("spawn_burst_runs_while_a_fiber_yields");
    const N: usize = 2000;
    let ran = one_worker().run(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let spinner = fibra::spawn(move || {
            while r.load(Relaxed) < N {
                fibra::yield_now();
            }
        });
        fibra::yield_now();
        for _ in 0..N {
            let r = ran.clone();
            drop(fibra::spawn(move || {
                r.fetch_add(1, Relaxed);
            }));
        }
        spinner.join().unwrap();
        ran.load(Relaxed)
    });
    assert_eq!(ran, N);
}
