//! Run-queue micro-benchmarks: fibra's ring (`src/sched/queue`) vs crossbeam-deque
//! (`Worker::new_fifo` + `Stealer` + `Injector`), the queue it replaced.
//!
//! `cargo bench -p fibra --bench queue` prints the median ns per item of 7 runs for each.
//! The queue is crate-private, so this bench compiles its source files directly (`#[path]`);
//! they depend on nothing but `crate::loom` and std.
//!
//! - `push+pop`: the owner pushes one item and pops it (a fiber yields and is run again).
//! - `burst 64`: the owner pushes 64 items, then pops 64 (a fiber spawns a batch).
//! - `push, 1 thief`: the owner pushes N items; another thread steals and drains them.
//! - `push+pop, 1 thief`: the owner pushes and pops alternately while another thread steals.
//!   In both thief cases the owner outruns the thief, so the ring overflows to the inject queue
//!   (popped item by item under its lock), which crossbeam's unbounded deque never does.
//! - `bounded, 1 thief`: as above, but the owner pops whenever it holds more than 32 items,
//!   like a worker that runs what it spawns: no overflow, this compares the steal paths.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[path = "../src/loom.rs"]
#[allow(dead_code)]
mod loom;
#[path = "../src/sched/queue/mod.rs"]
#[allow(dead_code, unused_imports)] // the parts the bench does not call; test-only imports
mod queue;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

const RUNS: usize = 11;
const N: u64 = 2_000_000;

/// Median over `RUNS` of `f()`, which returns (elapsed ns, items).
fn median(mut f: impl FnMut() -> (f64, u64)) -> f64 {
    let mut v: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (ns, items) = f();
            ns / items as f64
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[RUNS / 2]
}

fn timed(f: impl FnOnce() -> u64) -> (f64, u64) {
    let t = Instant::now();
    let items = f();
    (t.elapsed().as_nanos() as f64, items)
}

// ---- single thread -------------------------------------------------------------------------

fn fibra_push_pop() -> (f64, u64) {
    let inject = queue::Inject::new();
    let (mut local, _s) = queue::local::<u64>();
    timed(|| {
        for i in 0..N {
            local.push_back(black_box(i), &inject);
            black_box(local.pop());
        }
        N
    })
}

fn cb_push_pop() -> (f64, u64) {
    let w = Worker::<u64>::new_fifo();
    timed(|| {
        for i in 0..N {
            w.push(black_box(i));
            black_box(w.pop());
        }
        N
    })
}

fn fibra_burst() -> (f64, u64) {
    let inject = queue::Inject::new();
    let (mut local, _s) = queue::local::<u64>();
    timed(|| {
        for r in 0..N / 64 {
            for i in 0..64 {
                local.push_back(black_box(r * 64 + i), &inject);
            }
            for _ in 0..64 {
                black_box(local.pop());
            }
        }
        N / 64 * 64
    })
}

fn cb_burst() -> (f64, u64) {
    let w = Worker::<u64>::new_fifo();
    timed(|| {
        for r in 0..N / 64 {
            for i in 0..64 {
                w.push(black_box(r * 64 + i));
            }
            for _ in 0..64 {
                black_box(w.pop());
            }
        }
        N / 64 * 64
    })
}

// ---- owner + one thief ---------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Owner {
    Pushes,
    Alternates,
    Bounded,
}

/// The owner pushes `N` items (and pops some, per `owner`); a thief steals. Time until all `N`
/// are consumed. Each side counts what it consumed.
fn fibra_thief(owner: Owner) -> (f64, u64) {
    let inject = Arc::new(queue::Inject::new());
    let (mut local, stealer) = queue::local::<u64>();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(2));
    let thief = {
        let (inject, done, start) = (inject.clone(), done.clone(), start.clone());
        thread::spawn(move || {
            let (mut mine, _) = queue::local::<u64>();
            let mut got = 0u64;
            start.wait();
            loop {
                let finished = done.load(Acquire); // pairs with the owner's Release store
                if let Some(v) = stealer.steal_into(&mut mine).or_else(|| inject.pop()) {
                    black_box(v);
                    got += 1;
                    while let Some(v) = mine.pop() {
                        black_box(v);
                        got += 1;
                    }
                } else if finished {
                    return got;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    start.wait();
    timed(|| {
        let mut got = 0u64;
        for i in 0..N {
            local.push_back(black_box(i), &inject);
            let pop = match owner {
                Owner::Pushes => false,
                Owner::Alternates => i % 2 == 1,
                Owner::Bounded => local.len() > 32,
            };
            if pop && local.pop().is_some() {
                got += 1;
            }
        }
        while local.pop().is_some() {
            got += 1;
        }
        done.store(true, Release); // pairs with the thief's Acquire load
        got += thief.join().unwrap();
        assert_eq!(got, N);
        N
    })
}

fn cb_thief(owner: Owner) -> (f64, u64) {
    let inject = Arc::new(Injector::<u64>::new());
    let local = Worker::<u64>::new_fifo();
    let stealer: Stealer<u64> = local.stealer();
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(2));
    let thief = {
        let (inject, done, start) = (inject.clone(), done.clone(), start.clone());
        thread::spawn(move || {
            let mine = Worker::<u64>::new_fifo();
            let mut got = 0u64;
            start.wait();
            loop {
                let finished = done.load(Acquire); // pairs with the owner's Release store
                let stolen = match stealer.steal_batch_and_pop(&mine) {
                    Steal::Success(v) => Some(v),
                    Steal::Retry => continue,
                    Steal::Empty => match inject.steal() {
                        Steal::Success(v) => Some(v),
                        _ => None,
                    },
                };
                if let Some(v) = stolen {
                    black_box(v);
                    got += 1;
                    while let Some(v) = mine.pop() {
                        black_box(v);
                        got += 1;
                    }
                } else if finished {
                    return got;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    start.wait();
    timed(|| {
        let mut got = 0u64;
        for i in 0..N {
            local.push(black_box(i));
            let pop = match owner {
                Owner::Pushes => false,
                Owner::Alternates => i % 2 == 1,
                Owner::Bounded => local.len() > 32,
            };
            if pop && local.pop().is_some() {
                got += 1;
            }
        }
        while local.pop().is_some() {
            got += 1;
        }
        done.store(true, Release); // pairs with the thief's Acquire load
        got += thief.join().unwrap();
        assert_eq!(got, N);
        N
    })
}

fn main() {
    println!("run queue, median of {RUNS} runs, ns per item (lower is better)");
    println!(
        "{:<22} {:>10} {:>14}",
        "case", "fibra ring", "crossbeam-deque"
    );
    let row =
        |name: &str, ours: f64, theirs: f64| println!("{name:<22} {ours:>10.2} {theirs:>14.2}");
    row("push+pop", median(fibra_push_pop), median(cb_push_pop));
    row("burst 64", median(fibra_burst), median(cb_burst));
    row(
        "push, 1 thief",
        median(|| fibra_thief(Owner::Pushes)),
        median(|| cb_thief(Owner::Pushes)),
    );
    row(
        "push+pop, 1 thief",
        median(|| fibra_thief(Owner::Alternates)),
        median(|| cb_thief(Owner::Alternates)),
    );
    row(
        "bounded, 1 thief",
        median(|| fibra_thief(Owner::Bounded)),
        median(|| cb_thief(Owner::Bounded)),
    );
}
