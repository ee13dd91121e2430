//! `OnceCell<T>` (std's `OnceLock`, with parking) and `Lazy<T>` (std's `LazyLock`).
//!
//! # State word
//! ```text
//! INCOMPLETE --CAS by the initialiser--> RUNNING --store after writing the value--> COMPLETE
//!                 ^------- initialiser panicked or was unwound (reset) -------'
//! ```
//! Concurrent initialisers park in the wait list (they never spin); `complete`/`reset` store
//! the new state *then* take the list lock and wake everyone. A waiter checks the state under
//! that lock before queuing, so it either sees the new state or is queued before the wake-up.
//! After a reset the woken waiters race to run their own initialiser.

use std::cell::UnsafeCell;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as ListLock;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::park::ParkReason;

const INCOMPLETE: usize = 0;
const RUNNING: usize = 1;
const COMPLETE: usize = 2;
/// The token of a waiter woken by `complete` or `reset`.
const CHANGED: usize = 1;

/// The once-state core, free of fiber code so loom can check it.
pub(crate) struct RawOnce {
    state: AtomicUsize,
    waiters: ListLock<WaitList>,
}

impl RawOnce {
    crate::loom::const_fn! {
        pub(crate) fn new() -> RawOnce {
            RawOnce {
                state: AtomicUsize::new(INCOMPLETE),
                waiters: ListLock::new(WaitList::new()),
            }
        }
    }

    /// Acquire pairs with `complete`'s Release: the value's write happens-before our read.
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Acquire) == COMPLETE
    }

    /// INCOMPLETE -> RUNNING: true if the caller is now the one initialiser.
    pub(crate) fn try_start(&self) -> bool {
        self.state
            .compare_exchange(INCOMPLETE, RUNNING, Acquire, Relaxed) // pairs with `reset`
            .is_ok()
    }

    /// RUNNING -> COMPLETE (the initialiser, after writing the value); wakes every waiter.
    pub(crate) fn complete(&self) {
        self.finish(COMPLETE);
    }

    /// RUNNING -> INCOMPLETE (the initialiser failed); wakes every waiter to retry.
    pub(crate) fn reset(&self) {
        self.finish(INCOMPLETE);
    }

    fn finish(&self, state: usize) {
        // Release pairs with `is_complete`'s Acquire (publishes the value).
        self.state.store(state, Release);
        self.waiters.lock().notify_all();
    }

    /// Queues `waiter` if an initialiser is running, or (with `until_complete`) whenever the
    /// cell is not complete: true if queued, false if there is nothing to wait for.
    pub(crate) fn register(&self, waiter: &Arc<Waiter>, until_complete: bool) -> bool {
        let mut list = self.waiters.lock();
        // Relaxed: the list lock orders this load after `finish`'s store, or our push before
        // its wake-up; readers then use `is_complete` (Acquire) for the value.
        let s = self.state.load(Relaxed);
        if s == COMPLETE || (s == INCOMPLETE && !until_complete) {
            return false;
        }
        list.push(waiter.clone(), CHANGED);
        true
    }

    pub(crate) fn withdraw(&self, waiter: &Arc<Waiter>) {
        self.waiters.lock().remove(waiter);
    }

    /// Parks until the state changes (see `register`); false if `deadline` passed or the
    /// fiber is being unwound by shutdown.
    fn wait_change(&self, until_complete: bool, deadline: Option<Instant>) -> bool {
        let waiter = Waiter::current();
        if !self.register(&waiter, until_complete) {
            return true;
        }
        let abandon = || wait::abandon(&waiter, || self.withdraw(&waiter), |_| {});
        if wait::wait(&waiter, ParkReason::OnceInit, deadline, abandon) == CHANGED {
            return true;
        }
        self.withdraw(&waiter);
        false
    }
}

/// A cell written at most once; readers that arrive during the write park until it is done.
///
/// Like `std::sync::OnceLock`, but a fiber waiting for another fiber's initialiser parks
/// instead of blocking its worker. If the initialiser panics (or is unwound at shutdown) the
/// cell stays empty and a waiting caller runs its own initialiser.
///
/// # Memory ordering
/// The initialiser's write happens-before every `get` that returns `Some`.
///
/// # Unwind safety
/// A panicking initialiser leaves the cell empty, never half-written, so the cell is
/// `UnwindSafe` and `RefUnwindSafe` when `T` is (std's `OnceLock` bounds).
///
/// # Drop check
/// The cell has no `Drop` impl of its own (the value sits in an `Option`, which drops it), so
/// it may hold references that die just before it does, as std's `OnceLock` may:
/// ```
/// let cell = fibra::sync::OnceCell::new();
/// let name = String::from("fibra"); // declared after `cell`, so dropped before it
/// cell.set(&name).unwrap();
/// assert_eq!(cell.get().map(|s| s.len()), Some(5));
/// ```
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// let cell = Arc::new(fibra::sync::OnceCell::new());
/// let fibers: Vec<_> = (0..4).map(|i| {
///     let cell = cell.clone();
///     fibra::spawn(move || *cell.get_or_init(|| { fibra::yield_now(); i }))
/// }).collect();
/// let seen: Vec<i32> = fibers.into_iter().map(|f| f.join().unwrap()).collect();
/// assert!(seen.iter().all(|&v| v == seen[0])); // exactly one initialiser won
/// # });
/// ```
pub struct OnceCell<T> {
    raw: RawOnce,
    /// `Some` from the write that precedes COMPLETE on; an `Option` rather than a
    /// `MaybeUninit`, so that dropping the cell drops the value without a `Drop` impl (which
    /// would make the borrow checker assume that `T`'s borrows are used when the cell drops).
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is written once by the one RUNNING initialiser, and only read (`&T`, needs
// `T: Sync`) after COMPLETE; it may be written on one thread and dropped on another (`T: Send`).
unsafe impl<T: Send + Sync> Sync for OnceCell<T> {}
// SAFETY: moving the cell moves at most one `T`, which `T: Send` allows.
unsafe impl<T: Send> Send for OnceCell<T> {}

// See "Unwind safety" above; the bounds are std's `OnceLock`'s.
impl<T: RefUnwindSafe + UnwindSafe> RefUnwindSafe for OnceCell<T> {}
impl<T: UnwindSafe> UnwindSafe for OnceCell<T> {}

impl<T> OnceCell<T> {
    crate::loom::const_fn! {
        /// An empty cell. `const`, so a cell can be a `static`.
        ///
        /// ```
        /// let cell = fibra::sync::OnceCell::<u8>::new();
        /// assert!(cell.get().is_none());
        ///
        /// static GREETING: fibra::sync::OnceCell<String> = fibra::sync::OnceCell::new();
        /// assert_eq!(GREETING.get_or_init(|| "hi".to_string()), "hi");
        /// ```
        pub fn new() -> OnceCell<T> {
            OnceCell {
                raw: RawOnce::new(),
                value: UnsafeCell::new(None),
            }
        }
    }

    /// The value, if initialised (never waits).
    ///
    /// ```
    /// let cell = fibra::sync::OnceCell::new();
    /// assert_eq!(cell.get(), None);
    /// cell.set(3).unwrap();
    /// assert_eq!(cell.get(), Some(&3));
    /// ```
    pub fn get(&self) -> Option<&T> {
        if self.raw.is_complete() {
            // SAFETY: COMPLETE (read with Acquire) means the value was written and is never
            // written again while `&self` exists.
            unsafe { (*self.value.get()).as_ref() }
        } else {
            None
        }
    }

    /// A mutable reference to the value, if initialised.
    ///
    /// ```
    /// let mut cell = fibra::sync::OnceCell::new();
    /// cell.set(1).unwrap();
    /// *cell.get_mut().unwrap() += 1;
    /// assert_eq!(cell.get(), Some(&2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        // `&mut self` is exclusive: no initialiser runs, and `value` is `Some` iff COMPLETE.
        self.value.get_mut().as_mut()
    }

    /// The value, initialising it with `f` if the cell is empty. If another fiber or thread is
    /// initialising it, parks until that finishes; `f` runs at most once per call and, in the
    /// whole cell's life, succeeds exactly once. Calling it re-entrantly from `f` deadlocks.
    ///
    /// # Panics
    /// If `f` panics (the cell stays empty). From a fiber being unwound by shutdown, if
    /// another initialiser runs for over a second (see the [module docs](super)).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let cell = fibra::sync::OnceCell::new();
    /// assert_eq!(*cell.get_or_init(|| 1), 1);
    /// assert_eq!(*cell.get_or_init(|| 2), 1); // already set: `f` does not run
    /// # });
    /// ```
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        let mut f = Some(f);
        loop {
            if let Some(v) = self.get() {
                return v;
            }
            if self.raw.try_start() {
                /// Resets the cell if `f` unwinds (a panic, or shutdown cancelling the fiber).
                struct ResetOnUnwind<'a>(&'a RawOnce);
                impl Drop for ResetOnUnwind<'_> {
                    fn drop(&mut self) {
                        self.0.reset();
                    }
                }
                let on_unwind = ResetOnUnwind(&self.raw);
                let value = f.take().expect("runs once: we return right after")();
                std::mem::forget(on_unwind);
                self.initialise(value);
                return self.get().expect("just completed");
            }
            if !self.raw.wait_change(false, None) {
                return wait::while_cancelled("OnceCell::get_or_init", || self.get());
            }
        }
    }

    /// Sets the value if the cell is empty; else hands `value` back. Parks while another
    /// initialiser runs.
    ///
    /// # Errors
    /// `Err(value)` if the cell was already initialised.
    ///
    /// ```
    /// let cell = fibra::sync::OnceCell::new();
    /// assert_eq!(cell.set(1), Ok(()));
    /// assert_eq!(cell.set(2), Err(2));
    /// ```
    pub fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.get_or_init(|| value.take().expect("taken once"));
        value.map_or(Ok(()), Err)
    }

    /// Parks until the cell is initialised (by someone else), then returns the value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let cell = Arc::new(fibra::sync::OnceCell::new());
    /// let c2 = cell.clone();
    /// fibra::spawn(move || c2.set(7).unwrap());
    /// assert_eq!(*cell.wait(), 7);
    /// # });
    /// ```
    pub fn wait(&self) -> &T {
        self.wait_deadline(None)
            .unwrap_or_else(|| wait::while_cancelled("OnceCell::wait", || self.get()))
    }

    /// Like [`wait`](OnceCell::wait), but gives up after `timeout` and returns `None`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let cell = fibra::sync::OnceCell::<u8>::new();
    /// assert!(cell.wait_timeout(std::time::Duration::from_millis(2)).is_none());
    /// # });
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<&T> {
        self.wait_deadline(wait::deadline(timeout))
    }

    /// Consumes the cell and returns the value, if initialised.
    ///
    /// ```
    /// let cell = fibra::sync::OnceCell::new();
    /// cell.set(String::from("x")).unwrap();
    /// assert_eq!(cell.into_inner().as_deref(), Some("x"));
    /// ```
    pub fn into_inner(mut self) -> Option<T> {
        self.take()
    }

    /// Takes the value out, leaving the cell empty.
    ///
    /// ```
    /// let mut cell = fibra::sync::OnceCell::new();
    /// cell.set(1).unwrap();
    /// assert_eq!(cell.take(), Some(1));
    /// assert!(cell.get().is_none());
    /// ```
    pub fn take(&mut self) -> Option<T> {
        // `&mut self` is exclusive: no initialiser runs, and `value` is `Some` iff COMPLETE.
        let value = self.value.get_mut().take()?;
        self.raw = RawOnce::new();
        Some(value)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Option<&T> {
        loop {
            if let Some(v) = self.get() {
                return Some(v);
            }
            if !self.raw.wait_change(true, deadline) {
                return self.get();
            }
        }
    }

    /// The one initialiser (holding RUNNING): writes the value and completes.
    fn initialise(&self, value: T) {
        // SAFETY: we won INCOMPLETE -> RUNNING, so no one else reads or writes the value until
        // `complete` publishes it (it is `None`: nothing to drop).
        unsafe { *self.value.get() = Some(value) };
        self.raw.complete();
    }
}

impl<T> Default for OnceCell<T> {
    fn default() -> OnceCell<T> {
        OnceCell::new()
    }
}

impl<T: Clone> Clone for OnceCell<T> {
    /// A cell holding a clone of the value, or an empty cell (also while an initialiser is
    /// running: the clone does not wait for it).
    ///
    /// ```
    /// let cell = fibra::sync::OnceCell::new();
    /// assert!(cell.clone().get().is_none());
    /// cell.set(vec![1]).unwrap();
    /// assert_eq!(cell.clone().get(), Some(&vec![1]));
    /// ```
    fn clone(&self) -> OnceCell<T> {
        match self.get() {
            Some(v) => OnceCell::from(v.clone()),
            None => OnceCell::new(),
        }
    }
}

impl<T> From<T> for OnceCell<T> {
    /// A cell already holding `value`.
    ///
    /// ```
    /// let cell = fibra::sync::OnceCell::from(3);
    /// assert_eq!(cell.get(), Some(&3));
    /// assert_eq!(cell.set(4), Err(4));
    /// ```
    fn from(value: T) -> OnceCell<T> {
        let mut cell = OnceCell::new();
        *cell.value.get_mut() = Some(value);
        cell.raw.complete(); // INCOMPLETE -> COMPLETE: we own the cell, nobody can race us
        cell
    }
}

impl<T: PartialEq> PartialEq for OnceCell<T> {
    /// Equal if both are empty, or both hold equal values (a running initialiser counts as
    /// empty).
    ///
    /// ```
    /// use fibra::sync::OnceCell;
    /// assert_eq!(OnceCell::<u8>::new(), OnceCell::new());
    /// assert_eq!(OnceCell::from(1), OnceCell::from(1));
    /// assert_ne!(OnceCell::from(1), OnceCell::new());
    /// ```
    fn eq(&self, other: &OnceCell<T>) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for OnceCell<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for OnceCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OnceCell").field(&self.get()).finish()
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose
mod loom_tests {
    use super::*;
    use crate::loom::cell::UnsafeCell;
    use crate::sync::waiter::WAITING;
    use loom::sync::atomic::AtomicUsize as Count;
    use loom::thread;

    /// `get_or_init` on the raw state with the park replaced by a spin on the selection word
    /// (loom cannot park a fiber). `fail` makes this initialiser fail (reset) instead.
    fn get_or_init(
        once: &RawOnce,
        value: &UnsafeCell<usize>,
        runs: &Count,
        mine: usize,
        fail: bool,
    ) {
        loop {
            if once.is_complete() {
                return;
            }
            if once.try_start() {
                runs.fetch_add(1, Relaxed);
                if fail {
                    once.reset();
                    return;
                }
                // SAFETY: RUNNING makes us the only accessor until `complete`.
                value.with_mut(|p| unsafe { *p = mine });
                once.complete();
                return;
            }
            let waiter = Waiter::spinning();
            if once.register(&waiter, false) {
                while waiter.selected() == WAITING {
                    thread::yield_now();
                }
            }
        }
    }

    /// Two initialisers (one may fail) and a reader: at most one successful initialiser, the
    /// reader sees its value once complete, and nobody waits forever (a loom deadlock).
    fn race(first_fails: bool) {
        loom::model(move || {
            let s = Arc::new((RawOnce::new(), UnsafeCell::new(0usize), Count::new(0)));
            let threads: Vec<_> = [(1, first_fails), (2, false)]
                .into_iter()
                .map(|(mine, fail)| {
                    let s = s.clone();
                    thread::spawn(move || get_or_init(&s.0, &s.1, &s.2, mine, fail))
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            assert!(s.0.is_complete());
            // SAFETY: complete, and every writer is joined.
            let v = s.1.with(|p| unsafe { *p });
            assert!(v == 2 || (v == 1 && !first_fails));
            let runs = s.2.load(Relaxed);
            assert!(runs == 1 || (first_fails && runs == 2));
        });
    }

    #[test]
    fn one_initialiser_runs() {
        race(false);
    }

    #[test]
    fn failed_initialiser_lets_a_waiter_retry() {
        race(true);
    }
}
