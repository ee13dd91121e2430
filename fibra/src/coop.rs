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
//! tokio's number. Measured on the 2-core VM, release build (`cargo bench -p fibra --bench
//! coop`):
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

/// Counts `units` operations' worth of work done without parking against the running fiber's
/// budget, yielding when that spends it (`consume` for work that is not one small operation:
/// a 1 MiB read from the page cache costs ~150 µs, as much as ~128 small ones, `fs/route.rs`).
/// Owner worker only, like `consume`; a no-op outside a fiber and with a budget of 0.
#[inline]
pub(crate) fn consume_n(units: u32) {
    let spent = context::with_worker(|w| {
        let Some(w) = w else { return false };
        match w.budget.get() {
            0 => false,
            b if units >= b => {
                w.budget.set(w.shared.config.coop_budget);
                !w.current.get().is_null()
            }
            b => {
                w.budget.set(b - units);
                false
            }
        }
    });
    if spent {
        crate::yield_now();
    }
}

/// Counts one operation that completed without parking against the running fiber's budget,
/// and yields the fiber when the budget is spent. A no-op outside a fiber, during shutdown's
/// unwinding, and with a budget of 0.
///
/// Call it on the fast path of every operation that could park but did not (after the
/// operation has taken effect, so a yield never leaves it half done).
#[inline]
pub(crate) fn consume() {
    if spend() {
        crate::yield_now();
    }
}

/// `consume` without the yield: counts one operation and returns true when the budget is
/// spent, so the caller yields itself (the hooks do, inside `catch_unwind` and with `errno`
/// kept, since nothing may unwind out of an `extern "C"` hook). Owner worker only.
#[inline]
pub(crate) fn spend() -> bool {
    context::with_worker(|w| {
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
    })
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

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
    use std::sync::Arc;

    /// On one worker, a fiber that only ever succeeds (never parks) still lets another fiber
    /// run, once per budget: with the budget off the other fiber would not run until it ends.
    #[test]
    fn a_busy_fiber_yields_once_its_budget_is_spent() {
        for (budget, expect_turns) in [(16u32, true), (0, false)] {
            let rt = crate::Runtime::builder()
                .workers(1)
                .coop_budget(budget)
                .monitor(false)
                .build()
                .unwrap();
            let turns_while_busy = rt.run(|| {
                let busy_done = Arc::new(AtomicBool::new(false));
                let turns = Arc::new(AtomicU64::new(0));
                let (d, t) = (busy_done.clone(), turns.clone());
                let other = crate::spawn(move || {
                    while !d.load(Acquire) {
                        t.fetch_add(1, Relaxed);
                        crate::yield_now();
                    }
                });
                let t = turns.clone();
                let busy = crate::spawn(move || {
                    let before = t.load(Relaxed);
                    for _ in 0..10_000 {
                        super::consume();
                    }
                    t.load(Relaxed) - before
                });
                let seen = busy.join().unwrap();
                busy_done.store(true, Release);
                other.join().unwrap();
                seen
            });
            assert_eq!(
                turns_while_busy > 0,
                expect_turns,
                "budget {budget}: {turns_while_busy} turns"
            );
        }
    }
}
