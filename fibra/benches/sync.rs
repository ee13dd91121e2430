//! `fibra::sync::Mutex` vs `std::sync::Mutex` (parking_lot and tokio are not dependencies of
//! fibra; the lab compares against tokio). `cargo bench -p fibra --bench sync` prints the
//! median of 5 runs, in ns per lock+unlock.
//!
//! - `uncontended, thread`: one plain thread locks and unlocks in a loop.
//! - `uncontended, fiber`: the same inside a fiber.
//! - `contended, 8 fibers`: 8 fibers × 100k increments of one counter on a 2-worker runtime.
//!   With std's mutex a waiting fiber blocks its whole worker thread.
//! - `contended, 8 threads`: 8 OS threads × 100k increments (std's home ground).
//! - `contended + yield, 8 fibers`: as above, but every 16th critical section yields while
//!   holding the lock, so waiters really queue (and, with std, a worker blocks on a lock whose
//!   holder cannot run until it does: that case is skipped for std, it can deadlock).
//! - `semaphore(1), ...`: the same scenarios with a one-permit `fibra::sync::Semaphore` as the
//!   lock (std has no semaphore).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

const RUNS: usize = 5;
const UNCONTENDED: u64 = 5_000_000;
const PARTIES: u64 = 8;
const PER: u64 = 100_000;

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[RUNS / 2]
}

/// A mutex-protected counter, behind one trait so each scenario runs both implementations.
trait Counter: Send + Sync + 'static {
    fn new() -> Self;
    fn incr(&self, yield_inside: bool);
    fn get(&self) -> u64;
}

impl Counter for fibra::sync::Mutex<u64> {
    fn new() -> Self {
        fibra::sync::Mutex::new(0)
    }
    fn incr(&self, yield_inside: bool) {
        let mut g = self.lock();
        *g += 1;
        if yield_inside {
            fibra::yield_now();
        }
    }
    fn get(&self) -> u64 {
        *self.lock()
    }
}

impl Counter for std::sync::Mutex<u64> {
    fn new() -> Self {
        std::sync::Mutex::new(0)
    }
    fn incr(&self, _: bool) {
        *self.lock().unwrap() += 1;
    }
    fn get(&self) -> u64 {
        *self.lock().unwrap()
    }
}

/// A counter guarded by a one-permit semaphore (the permit gives exclusivity; the atomic only
/// keeps the bench free of `unsafe`).
struct Sem(fibra::sync::Semaphore, AtomicU64);

impl Counter for Sem {
    fn new() -> Self {
        Sem(fibra::sync::Semaphore::new(1), AtomicU64::new(0))
    }
    fn incr(&self, yield_inside: bool) {
        let _permit = self.0.acquire();
        self.1.store(self.1.load(Relaxed) + 1, Relaxed);
        if yield_inside {
            fibra::yield_now();
        }
    }
    fn get(&self) -> u64 {
        let _permit = self.0.acquire();
        self.1.load(Relaxed)
    }
}

fn uncontended<C: Counter>() -> f64 {
    let c = C::new();
    let t = Instant::now();
    for _ in 0..UNCONTENDED {
        black_box(&c).incr(false);
    }
    assert_eq!(c.get(), UNCONTENDED);
    t.elapsed().as_nanos() as f64 / UNCONTENDED as f64
}

fn contended_fibers<C: Counter>(yield_every: u64) -> f64 {
    fibra::run(move || {
        let c = Arc::new(C::new());
        let t = Instant::now();
        let fibers: Vec<_> = (0..PARTIES)
            .map(|_| {
                let c = c.clone();
                fibra::spawn(move || {
                    for i in 0..PER {
                        c.incr(yield_every != 0 && i % yield_every == 0);
                    }
                })
            })
            .collect();
        fibers.into_iter().for_each(|f| f.join().unwrap());
        let ns = t.elapsed().as_nanos() as f64 / (PARTIES * PER) as f64;
        assert_eq!(c.get(), PARTIES * PER);
        ns
    })
}

fn contended_threads<C: Counter>() -> f64 {
    let c = Arc::new(C::new());
    let t = Instant::now();
    let threads: Vec<_> = (0..PARTIES)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || (0..PER).for_each(|_| c.incr(false)))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(c.get(), PARTIES * PER);
    t.elapsed().as_nanos() as f64 / (PARTIES * PER) as f64
}

type Fibra = fibra::sync::Mutex<u64>;
type Std = std::sync::Mutex<u64>;

fn main() {
    println!("ns per lock+unlock, median of {RUNS}");
    println!("{:<32} {:>10} {:>10}", "scenario", "fibra", "std");
    let row = |name: &str, fibra: f64, std: Option<f64>| {
        let std = std.map_or("-".into(), |s| format!("{s:.1}"));
        println!("{name:<32} {fibra:>10.1} {std:>10}");
    };
    row(
        "uncontended, thread",
        median(uncontended::<Fibra>),
        Some(median(uncontended::<Std>)),
    );
    row(
        "uncontended, fiber",
        median(|| fibra::run(uncontended::<Fibra>)),
        Some(median(|| fibra::run(uncontended::<Std>))),
    );
    row(
        "contended, 8 fibers",
        median(|| contended_fibers::<Fibra>(0)),
        Some(median(|| contended_fibers::<Std>(0))),
    );
    row(
        "contended, 8 threads",
        median(contended_threads::<Fibra>),
        Some(median(contended_threads::<Std>)),
    );
    row(
        "contended + yield, 8 fibers",
        median(|| contended_fibers::<Fibra>(16)),
        None,
    );
    row(
        "semaphore(1): uncontended, fiber",
        median(|| fibra::run(uncontended::<Sem>)),
        None,
    );
    row(
        "semaphore(1): 8 fibers",
        median(|| contended_fibers::<Sem>(0)),
        None,
    );
    row(
        "semaphore(1): 8 threads",
        median(contended_threads::<Sem>),
        None,
    );
    row(
        "semaphore(1) + yield, 8 fibers",
        median(|| contended_fibers::<Sem>(16)),
        None,
    );
}
