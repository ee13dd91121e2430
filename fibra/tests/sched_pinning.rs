//! A started fiber stays on the OS thread of its first run (the sound default), under
//! stealing pressure; with the unsafe migration opt-in the same workload still completes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Duration;

use fibra::{Fiber, Runtime};

mod common;
use common::watchdog;

/// Long-running fibers, in partner pairs.
const FIBERS: usize = 64;
/// Park-causing operations per long-running fiber.
const ITERATIONS: u64 = 10_000;
/// Fibers that spawn short fibers meanwhile, rounds each, and short fibers per round.
const SPAWNERS: usize = 4;
const ROUNDS: usize = 50;
const PER_ROUND: usize = 64;

/// Two fibers that wake each other in turn (side 0 moves on even turns, side 1 on odd).
struct Pair {
    turn: AtomicU64,
    fibers: [OnceLock<Fiber>; 2],
}

#[derive(Default)]
struct Totals {
    handshakes: AtomicU64,
    yields: AtomicU64,
    sleeps: AtomicU64,
    short_fibers: AtomicUsize,
}

/// One long-running fiber: `ITERATIONS` steps, each a yield, a sleep, or a park/unpark
/// handshake with its partner (which may live on the other worker). With `check`, asserts it
/// never changes OS thread.
fn long_runner(pair: &Pair, side: u64, totals: &Totals, check: bool) {
    let home: Option<ThreadId> = check.then(|| thread::current().id());
    pair.fibers[side as usize].set(fibra::current()).unwrap();
    let partner = loop {
        match pair.fibers[1 - side as usize].get() {
            Some(p) => break p.clone(),
            None => fibra::yield_now(),
        }
    };
    let mut step = 0;
    for i in 0..ITERATIONS {
        match i % 8 {
            0..=3 => {
                fibra::yield_now();
                totals.yields.fetch_add(1, Relaxed);
            }
            4 | 5 => {
                // Handshake `step`: wait for our turn, take it, wake the partner.
                let target = 2 * step + side;
                while pair.turn.load(Acquire) != target {
                    fibra::park();
                }
                pair.turn.store(target + 1, Release);
                partner.unpark();
                step += 1;
                totals.handshakes.fetch_add(1, Relaxed);
            }
            6 if i % 64 == 6 => {
                fibra::sleep(Duration::from_micros(20));
                totals.sleeps.fetch_add(1, Relaxed);
            }
            _ => {
                fibra::yield_now();
                totals.yields.fetch_add(1, Relaxed);
            }
        }
        if let Some(home) = home {
            assert_eq!(
                thread::current().id(),
                home,
                "fiber {} moved at step {i}",
                fibra::current().id()
            );
        }
    }
}

/// Spawns short fibers in rounds, so idle workers keep finding fibers to steal.
fn spawner(totals: &Arc<Totals>, check: bool) {
    for _ in 0..ROUNDS {
        let hs: Vec<_> = (0..PER_ROUND)
            .map(|_| {
                let totals = totals.clone();
                fibra::spawn(move || {
                    let first = thread::current().id();
                    fibra::yield_now();
                    if check {
                        assert_eq!(thread::current().id(), first, "a short fiber moved");
                    }
                    totals.short_fibers.fetch_add(1, Relaxed);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
}

/// Runs the workload on `rt`; returns the totals.
fn workload(rt: &Runtime, check: bool) -> Totals {
    let totals = Arc::new(Totals::default());
    let t = totals.clone();
    rt.run(move || {
        let root_thread = thread::current().id();
        let mut hs = Vec::new();
        for _ in 0..FIBERS / 2 {
            let pair = Arc::new(Pair {
                turn: AtomicU64::new(0),
                fibers: [OnceLock::new(), OnceLock::new()],
            });
            for side in 0..2 {
                let (pair, t) = (pair.clone(), t.clone());
                hs.push(fibra::spawn(move || long_runner(&pair, side, &t, check)));
            }
        }
        for _ in 0..SPAWNERS {
            let t = t.clone();
            hs.push(fibra::spawn(move || spawner(&t, check)));
        }
        for h in hs {
            h.join().unwrap();
        }
        if check {
            assert_eq!(thread::current().id(), root_thread, "the root fiber moved");
        }
    });
    Arc::into_inner(totals).unwrap()
}

fn assert_exact(totals: &Totals) {
    let per_fiber = |pred: fn(u64) -> bool| (0..ITERATIONS).filter(|&i| pred(i)).count() as u64;
    let handshakes = per_fiber(|i| matches!(i % 8, 4 | 5));
    let sleeps = per_fiber(|i| i % 64 == 6);
    assert_eq!(totals.handshakes.load(Relaxed), FIBERS as u64 * handshakes);
    assert_eq!(totals.sleeps.load(Relaxed), FIBERS as u64 * sleeps);
    assert_eq!(
        totals.yields.load(Relaxed),
        FIBERS as u64 * (ITERATIONS - handshakes - sleeps)
    );
    assert_eq!(
        totals.short_fibers.load(Relaxed),
        SPAWNERS * ROUNDS * PER_ROUND
    );
}

#[test]
fn started_fibers_stay_on_their_thread() {
    let _w = watchdog("started_fibers_stay_on_their_thread");
    let rt = Runtime::builder().workers(2).build().unwrap();
    let totals = workload(&rt, true);
    assert_exact(&totals);
}

#[test]
fn migration_opt_in_runs_the_same_workload() {
    let _w = watchdog("migration_opt_in_runs_the_same_workload");
    // SAFETY: the fibers of this workload hold no `!Send` value and no reference to a
    // `thread_local!` across a park or yield: they hold only `Arc`s, atomics, `Fiber` handles
    // and `JoinHandle`s, all `Send`; `thread::current()` is called afresh (not held) and only
    // when `check` is set, which it is not here.
    let rt = unsafe { Runtime::builder().workers(2).migrate_started_fibers() }
        .build()
        .unwrap();
    let totals = workload(&rt, false);
    assert_exact(&totals);
}
