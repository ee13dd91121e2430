//! The cooperative budget's cost and effect (the figures in `fibra::coop`'s docs):
//! `cargo bench -p fibra --bench coop`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn runtime(budget: u32) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(1)
        .coop_budget(budget)
        .monitor(false)
        .build()
        .unwrap()
}

/// ns per counted operation, with the budget off and at 128 (a yield every 128, nobody else
/// to run).
fn cost_per_operation() {
    const N: u32 = 10_000_000;
    for budget in [0, 128] {
        let ns = runtime(budget).run(|| {
            let t = Instant::now();
            for _ in 0..N {
                fibra::coop::consume_budget();
            }
            t.elapsed().as_nanos() as f64 / f64::from(N)
        });
        println!("coop budget {budget:>4}: {ns:.2} ns per operation");
    }
}

/// A producer pushes 200k items into a queue it never blocks on, the consumer drains it; both
/// on one worker. Prints the longest queue the consumer saw, its turns, and the time.
fn producer_consumer_fairness() {
    const N: usize = 200_000;
    println!("budget  max queue  consumer turns  ms");
    for budget in [0, 16, 128, 1024] {
        let (max_len, turns, ms) = runtime(budget).run(|| {
            let q = Arc::new(Mutex::new(VecDeque::new()));
            let done = Arc::new(AtomicBool::new(false));
            let t = Instant::now();
            let (q2, d2) = (q.clone(), done.clone());
            let consumer = fibra::spawn(move || {
                let (mut max_len, mut turns, mut got) = (0, 0u64, 0);
                while got < N {
                    let mut q = q2.lock().unwrap();
                    max_len = max_len.max(q.len());
                    got += q.drain(..).count();
                    drop(q);
                    turns += 1;
                    if got < N && !d2.load(Acquire) {
                        fibra::yield_now();
                    }
                }
                (max_len, turns)
            });
            let producer = fibra::spawn(move || {
                for i in 0..N {
                    q.lock().unwrap().push_back(i);
                    fibra::coop::consume_budget();
                }
                done.store(true, Release);
            });
            producer.join().unwrap();
            let (max_len, turns) = consumer.join().unwrap();
            (max_len, turns, t.elapsed().as_secs_f64() * 1e3)
        });
        println!("{budget:>6}  {max_len:>9}  {turns:>14}  {ms:.1}");
    }
}

fn main() {
    cost_per_operation();
    producer_consumer_fairness();
}
