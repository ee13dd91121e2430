//! Many more workers than cores: 32 and 64 worker threads on this 2-core machine. Most
//! workers are preempted or asleep at any moment, which is what a 64-core machine looks like to
//! the scheduler's protocols when its cores are shared: stealing from victims that are not
//! running, idle workers woken for every spawn and going back to sleep, timers on many heaps,
//! the monitor sampling 64 slots and judging preempted runs. Each scenario checks exact counts
//! (nothing lost, nothing run twice), finishes (a lost wake-up or a stranded fiber shows as a
//! hang, which the watchdog turns into an abort) and that every fiber makes progress.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::{Runtime, StallReport};

mod common;
use common::{scaled, watchdog_for};

const WORKER_COUNTS: [usize; 2] = [32, 64];

/// A runtime with `workers` threads and the monitor on; its stall reports (preempted workers
/// are common here) are counted, not printed.
fn runtime(workers: usize, reports: &Arc<AtomicU64>) -> Runtime {
    let reports = reports.clone();
    Runtime::builder()
        .workers(workers)
        .on_stall(move |_: &StallReport| {
            reports.fetch_add(1, Relaxed);
        })
        .build()
        .unwrap()
}

/// Each scenario on 32 and then 64 workers.
fn on_many_workers(test: &'static str, scenario: impl Fn(usize, &Runtime)) {
    let _w = watchdog_for(test, Duration::from_secs(120));
    for workers in WORKER_COUNTS {
        let reports = Arc::new(AtomicU64::new(0));
        let rt = runtime(workers, &reports);
        assert_eq!(rt.workers(), workers);
        scenario(workers, &rt);
    }
}

/// One fiber at a time, each spawned from the root and joined at once: every spawn finds the
/// other workers asleep (or about to sleep) and must wake one or run the fiber itself; a
/// wake-up lost between "going to sleep" and "work arrived" leaves the root waiting for ever.
#[test]
fn one_at_a_time_spawns_never_lose_a_wake_up() {
    on_many_workers("one_at_a_time_spawns_never_lose_a_wake_up", |_, rt| {
        let rounds = scaled(20_000, 100);
        let sum = rt.run(move || {
            let mut sum = 0u64;
            for i in 0..rounds as u64 {
                sum += fibra::spawn(move || i * 2).join().unwrap();
            }
            sum
        });
        let n = rounds as u64;
        assert_eq!(sum, n * (n - 1), "a joined value was lost or repeated");
    });
}

/// Rings of fibers passing a token through rendezvous and one-slot channels: each hop parks
/// one fiber and wakes the next, which may live on any of the workers.
#[test]
fn token_rings_make_every_hop() {
    on_many_workers("token_rings_make_every_hop", |workers, rt| {
        let rings = workers / 2;
        let (size, laps) = (8, scaled(200, 10));
        let hops = rt.run(move || {
            let hops = Arc::new(AtomicUsize::new(0));
            let mut fibers = Vec::new();
            for ring in 0..rings {
                let chans: Vec<_> = (0..size)
                    .map(|i| match (ring + i) % 2 {
                        0 => fibra::chan::bounded::<usize>(0),
                        _ => fibra::chan::bounded::<usize>(1),
                    })
                    .collect();
                for i in 0..size {
                    let rx = chans[i].1.clone();
                    let tx = chans[(i + 1) % size].0.clone();
                    let hops = hops.clone();
                    fibers.push(fibra::spawn(move || {
                        if i == 0 {
                            tx.send(0).unwrap();
                        }
                        // Node 0 ends the ring after its last lap; the others stop when
                        // their inbound channel disconnects.
                        while let Ok(token) = rx.recv() {
                            hops.fetch_add(1, Relaxed);
                            if i == 0 && token + 1 == laps {
                                return;
                            }
                            let next = if i == 0 { token + 1 } else { token };
                            if tx.send(next).is_err() {
                                return;
                            }
                        }
                    }));
                }
            }
            fibers.into_iter().for_each(|f| f.join().unwrap());
            hops.load(Relaxed)
        });
        // Node 0 stops on receiving the token of the last lap: `laps` laps of `size` hops.
        assert_eq!(hops, rings * laps * size, "hops lost or repeated");
    });
}

/// Fibers looping on 1 ms sleeps: their timers sit in the heaps of many workers, which fire
/// them while most workers are asleep.
#[test]
fn sleepers_on_every_worker_wake_every_time() {
    on_many_workers("sleepers_on_every_worker_wake_every_time", |workers, rt| {
        let (fibers, sleeps) = (workers * 16, scaled(50, 5));
        let woke = rt.run(move || {
            let woke = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..fibers)
                .map(|_| {
                    let woke = woke.clone();
                    fibra::spawn(move || {
                        for _ in 0..sleeps {
                            fibra::sleep(Duration::from_millis(1));
                            woke.fetch_add(1, Relaxed);
                        }
                    })
                })
                .collect();
            handles.into_iter().for_each(|h| h.join().unwrap());
            woke.load(Relaxed)
        });
        assert_eq!(woke, fibers * sleeps);
    });
}

/// CPU-bound fibers that yield, one per worker and more: each runs until *every* one of them
/// has made `ITERS` steps, so the scenario ends only if none is starved (a fiber stranded on a
/// worker that never runs it again would keep the others looping until the watchdog fires).
/// A `fibra::sync::Mutex` counter shared by all checks exclusion on top.
#[test]
fn yielding_fibers_all_make_progress() {
    on_many_workers("yielding_fibers_all_make_progress", |workers, rt| {
        const ITERS: u64 = 200;
        let fibers = workers * 4;
        let (locked, steps) = rt.run(move || {
            let reached = Arc::new(AtomicUsize::new(0));
            let counter = Arc::new(fibra::sync::Mutex::new(0u64));
            let handles: Vec<_> = (0..fibers)
                .map(|_| {
                    let (reached, counter) = (reached.clone(), counter.clone());
                    fibra::spawn(move || {
                        let mut steps = 0u64;
                        while reached.load(Relaxed) < fibers {
                            *counter.lock() += 1;
                            steps += 1;
                            if steps == ITERS {
                                reached.fetch_add(1, Relaxed);
                            }
                            fibra::yield_now();
                        }
                        steps
                    })
                })
                .collect();
            let steps: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let locked = *counter.lock();
            (locked, steps)
        });
        assert!(steps.iter().all(|&s| s >= ITERS), "{steps:?}");
        assert_eq!(
            locked,
            steps.iter().sum::<u64>(),
            "the mutex lost an update"
        );
    });
}

/// Sessions started and ended back to back: every worker joins the session, goes idle and is
/// woken to end it; a worker that misses the end keeps `run` from returning.
#[test]
fn sessions_start_and_end_on_many_workers() {
    on_many_workers("sessions_start_and_end_on_many_workers", |workers, rt| {
        for session in 0..scaled(20, 2) {
            let ran = rt.run(move || {
                let ran = Arc::new(AtomicUsize::new(0));
                let handles: Vec<_> = (0..workers * 2)
                    .map(|_| {
                        let ran = ran.clone();
                        fibra::spawn(move || {
                            fibra::yield_now();
                            ran.fetch_add(1, Relaxed);
                        })
                    })
                    .collect();
                handles.into_iter().for_each(|h| h.join().unwrap());
                ran.load(Relaxed)
            });
            assert_eq!(ran, workers * 2, "session {session}");
        }
    });
}
