//! Cooperative budget: a fiber that keeps succeeding without parking yields now and then.
//!
//! A fiber switches out only when it parks or yields. An operation that *could* park but
//! succeeds at once (a `send` on a channel with room, a `recv` with a value waiting, a `join` of
//! a finished fiber, an uncontended lock) never switches, so a busy producer whose consumer
//! lives on the same worker could run for as long as it has input, and the consumer, and
//! every other fiber of that worker, would wait. Each such operation therefore counts against
//! the running fiber's budget; when the budget is spent the fiber yields (goes to the back of
//! its worker's queue) and gets a fresh budget at its next run.
//!
//! # The default: 128 operations per run
//! tokio's number. Measured on the 2-core VM, release build (`cargo test --release -p fibra
//! --lib coop::measure -- --ignored --nocapture`):
//! - cost: counting one operation takes ~4.4 ns (an out-of-line call into the runtime's
//!   thread-local); with the yield every 128 operations it is ~7.3 ns per operation (a lone
//!   fiber's yield, ~360 ns, spread over 128).
//! - fairness: a producer pushing 200k items into a queue it never blocks on, its consumer on
//!   the same worker. Budget off: the queue grows to all 200k items and the consumer runs
//!   twice (3.3 ms). 16: queue ≤ 16, 12,501 consumer turns (3.1 ms). **128: queue ≤ 128,
//!   1,564 turns, 1.5 ms** (batches stay in cache). 1024: queue ≤ 1,024, 197 turns (1.8 ms).
//!
//! Set it with [`RuntimeBuilder::coop_budget`](crate::RuntimeBuilder::coop_budget).
//!
//! ```
//! # fibra::run(|| {
//! // A fiber looping over operations that never park still lets the others run.
//! for _ in 0..1_000 {
//!     fibra::coop::consume_budget();
//! }
//! # });
//! ```

use crate::sched::context;

/// Operations per fiber run before it yields; see the module docs.
pub(crate) const DEFAULT_BUDGET: u32 = 128;

/// Counts one operation that completed without parking against the running fiber's budget,
/// and yields the fiber when the budget is spent. A no-op outside a fiber, during shutdown's
/// unwinding, and with a budget of 0.
///
/// Call it on the fast path of every operation that could park but did not (after the
/// operation has taken effect, so a yield never leaves it half done).
#[inline]
pub(crate) fn consume() {
    let spent = context::with_worker(|w| {
        let Some(w) = w else { return false };
        match w.budget.get() {
            0 => false, // budget off (or no fiber running: the worker resets it at each run)
            1 => {
                w.budget.set(w.shared.config.coop_budget);
                !w.current.get().is_null()
            }
            b => {
                w.budget.set(b - 1);
                false
            }
        }
    });
    if spent {
        crate::yield_now();
    }
}

/// Counts one operation against the running fiber's cooperative budget, yielding when it is
/// spent: call it in a loop of your own that may go on for long without parking.
///
/// On a plain OS thread it does nothing.
///
/// ```
/// # fibra::run(|| {
/// let mut sum = 0u64;
/// for i in 0..10_000u64 {
///     sum += i;
///     fibra::coop::consume_budget(); // lets this worker's other fibers run every 128 rounds
/// }
/// assert_eq!(sum, 49_995_000);
/// # });
/// ```
pub fn consume_budget() {
    consume();
}

/// Measurements behind the default (run with `--release -- --ignored --nocapture`).
#[cfg(all(test, not(loom)))]
mod measure {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering::*};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    fn runtime(budget: u32) -> crate::Runtime {
        crate::Runtime::builder()
            .workers(1)
            .coop_budget(budget)
            .monitor(false)
            .build()
            .unwrap()
    }

    /// ns per `consume`, with the budget off (the counting call only) and at 128 (with the
    /// yield every 128 operations, nobody else to run).
    #[test]
    #[ignore]
    fn measure_cost_per_operation() {
        const N: u32 = 10_000_000;
        for budget in [0, 128] {
            let ns = runtime(budget).block_on(|| {
                let t = Instant::now();
                for _ in 0..N {
                    super::consume();
                }
                t.elapsed().as_nanos() as f64 / f64::from(N)
            });
            println!("coop budget {budget:>4}: {ns:.2} ns per operation");
        }
    }

    /// A producer pushes 200k items into a queue it never blocks on, the consumer drains it;
    /// both on one worker. Prints the longest queue the consumer saw, its turns, and the time.
    #[test]
    #[ignore]
    fn measure_producer_consumer_fairness() {
        const N: usize = 200_000;
        println!("budget  max queue  consumer turns  ms");
        for budget in [0, 16, 128, 1024] {
            let (max_len, turns, ms) = runtime(budget).block_on(|| {
                let q = Arc::new(Mutex::new(VecDeque::new()));
                let done = Arc::new(AtomicBool::new(false));
                let t = Instant::now();
                let (q2, d2) = (q.clone(), done.clone());
                let consumer = crate::spawn(move || {
                    let (mut max_len, mut turns, mut got) = (0, 0u64, 0);
                    while got < N {
                        let mut q = q2.lock().unwrap();
                        max_len = max_len.max(q.len());
                        got += q.drain(..).count();
                        drop(q);
                        turns += 1;
                        if got < N && !d2.load(Acquire) {
                            crate::yield_now();
                        }
                    }
                    (max_len, turns)
                });
                let producer = crate::spawn(move || {
                    for i in 0..N {
                        q.lock().unwrap().push_back(i);
                        super::consume();
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
}
