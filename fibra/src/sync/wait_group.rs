//! `WaitGroup`: Go's `sync.WaitGroup` (`add`, `done`, `wait`).
//!
//! Chosen over crossbeam's clone/drop style because it reads like the Go code it ports and the
//! counter can be raised for work discovered later (`add` inside a worker), while the handle
//! is shared by reference (`&`, `Arc`, or a `fibra::scope` borrow).
//!
//! # No lost wake-up
//! ```text
//! done:  count -= 1 (CAS, never below 0) reaches 0  ->  lock list; notify_all; unlock
//! wait:  lock list; count == 0 ? return : push; unlock; park
//! ```
//! The waiter reads the count under the list lock and the last `done` takes that lock after
//! its decrement: either the waiter's section comes first (then it is queued when the `done`
//! notifies) or second (then it reads 0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as ListLock;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::park::ParkReason;

const ZERO: usize = 1;

/// Waits for a counter of outstanding tasks to reach zero, like Go's `sync.WaitGroup`.
///
/// [`add`](WaitGroup::add) before starting work, [`done`](WaitGroup::done) when each piece
/// finishes, [`wait`](WaitGroup::wait) for all of them. Waiters park (threads block).
///
/// # Memory ordering
/// Every `done` happens-before the `wait` it releases returns.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
/// let wg = Arc::new(fibra::sync::WaitGroup::new());
/// let hits = Arc::new(AtomicUsize::new(0));
/// for _ in 0..10 {
///     wg.add(1);
///     let (wg, hits) = (wg.clone(), hits.clone());
///     fibra::spawn(move || { hits.fetch_add(1, Relaxed); wg.done(); });
/// }
/// wg.wait();
/// assert_eq!(hits.load(Relaxed), 10);
/// # });
/// ```
pub struct WaitGroup {
    count: AtomicUsize,
    waiters: ListLock<WaitList>,
}

// No user data, and the state changes only inside fibra's code, which never unwinds midway
// (no user code runs under the internal lock): a panic cannot leave it broken.
impl std::panic::UnwindSafe for WaitGroup {}
impl std::panic::RefUnwindSafe for WaitGroup {}

impl WaitGroup {
    crate::loom::const_fn! {
        /// A wait group with a count of zero. `const`, so it can be a `static`.
        ///
        /// ```
        /// let wg = fibra::sync::WaitGroup::new();
        /// wg.wait(); // zero: returns at once
        /// static PENDING: fibra::sync::WaitGroup = fibra::sync::WaitGroup::new();
        /// assert_eq!(PENDING.count(), 0);
        /// ```
        pub fn new() -> WaitGroup {
            WaitGroup {
                count: AtomicUsize::new(0),
                waiters: ListLock::new(WaitList::new()),
            }
        }
    }

    /// Adds `n` to the count of outstanding tasks.
    ///
    /// # Panics
    /// If the count would pass `usize::MAX`; the count is left as it was.
    ///
    /// ```
    /// let wg = fibra::sync::WaitGroup::new();
    /// wg.add(2);
    /// assert_eq!(wg.count(), 2);
    /// let overflow = std::panic::AssertUnwindSafe(|| wg.add(usize::MAX));
    /// assert!(std::panic::catch_unwind(overflow).is_err());
    /// assert_eq!(wg.count(), 2); // unchanged
    /// ```
    pub fn add(&self, n: usize) {
        let mut count = self.count.load(Relaxed);
        loop {
            let Some(new) = count.checked_add(n) else {
                panic!(
                    "fibra::sync::WaitGroup::add({n}): the count ({count}) would pass usize::MAX; \
                     add only for tasks that will call done"
                );
            };
            // Relaxed: no data to publish; `done`'s Release does that.
            match self
                .count
                .compare_exchange_weak(count, new, Relaxed, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => count = actual,
            }
        }
    }

    /// Marks one task finished; the last one wakes every waiter.
    ///
    /// # Panics
    /// If the count is already zero (more `done`s than `add`s).
    ///
    /// ```
    /// let wg = fibra::sync::WaitGroup::new();
    /// wg.add(1);
    /// wg.done();
    /// assert_eq!(wg.count(), 0);
    /// ```
    pub fn done(&self) {
        let mut prev = self.count.load(Relaxed);
        loop {
            // Checked before the count moves, so it never wraps (not even for a moment: an
            // `add` racing a stray `done` would otherwise see usize::MAX).
            let Some(new) = prev.checked_sub(1) else {
                panic!("fibra::sync::WaitGroup::done called more times than add");
            };
            // AcqRel: Release publishes this task's work; Acquire makes the last `done` (which
            // wakes the waiters) carry every earlier `done`'s work to them. Pairs with `wait`'s
            // Acquire load and with the waiter's Acquire of the claim.
            match self.count.compare_exchange_weak(prev, new, AcqRel, Relaxed) {
                Ok(_) => break,
                Err(actual) => prev = actual,
            }
        }
        if prev == 1 {
            self.waiters.lock().notify_all();
        }
    }

    /// The current count (a hint: it may change at once).
    ///
    /// ```
    /// let wg = fibra::sync::WaitGroup::new();
    /// assert_eq!(wg.count(), 0);
    /// ```
    pub fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// Parks until the count is zero.
    ///
    /// # Shutdown
    /// In a fiber being unwound by shutdown it returns at once.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let wg = std::sync::Arc::new(fibra::sync::WaitGroup::new());
    /// wg.add(1);
    /// let wg2 = wg.clone();
    /// fibra::spawn(move || wg2.done());
    /// wg.wait();
    /// # });
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Like [`wait`](WaitGroup::wait), but gives up after `timeout`; true if the count reached
    /// zero.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let wg = fibra::sync::WaitGroup::new();
    /// wg.add(1);
    /// assert!(!wg.wait_timeout(std::time::Duration::from_millis(2)));
    /// wg.done();
    /// assert!(wg.wait_timeout(std::time::Duration::from_millis(2)));
    /// # });
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(wait::deadline(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.count.load(Acquire) == 0 {
            return true; // pairs with `done`'s Release
        }
        let waiter = Waiter::current();
        {
            let mut list = self.waiters.lock();
            if self.count.load(Acquire) == 0 {
                return true;
            }
            list.push(waiter.clone(), ZERO);
        }
        let abandon = || wait::abandon(&waiter, || self.withdraw(&waiter), |_| {});
        if wait::wait(&waiter, ParkReason::WaitGroup, deadline, abandon) == ZERO {
            return true;
        }
        self.withdraw(&waiter);
        self.count.load(Acquire) == 0
    }

    fn withdraw(&self, waiter: &Arc<Waiter>) {
        self.waiters.lock().remove(waiter);
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl std::fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}
