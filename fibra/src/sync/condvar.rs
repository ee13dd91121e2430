//! `Condvar`: wait for a notification while releasing a fibra `MutexGuard`.
//!
//! ```text
//! wait:    push (waiter, NOTIFIED) under the list lock -> unlock the mutex -> park -> lock the mutex
//! notify:  under the list lock, claim the oldest waiter (notify_one) or all (notify_all)
//! ```
//! The waiter registers *before* it unlocks the mutex, so a notifier that changes the state
//! under the mutex and then notifies always finds it: no lost wake-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mutex::MutexGuard;
use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as ListLock;
use crate::park::{self, ParkReason};

const NOTIFIED: usize = 1;

/// A condition variable for fibra's [`Mutex`](super::Mutex): parks the waiting fiber (or
/// blocks the waiting thread) until notified.
///
/// Waiters are woken in FIFO order by [`notify_one`](Condvar::notify_one). As with std, a
/// wait may return without a notification (at shutdown, see below), so wait in a loop or use
/// [`wait_while`](Condvar::wait_while).
///
/// # Memory ordering
/// A `notify_*` call happens-before the wait it wakes returns; the state itself is ordered by
/// the mutex.
///
/// # Shutdown
/// In a fiber being unwound by shutdown a wait cannot park: it yields the thread for ~1 ms
/// and returns as if woken spuriously.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// use fibra::sync::{Condvar, Mutex};
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// let p2 = pair.clone();
/// fibra::spawn(move || {
///     *p2.0.lock() = true;
///     p2.1.notify_one();
/// });
/// let (ready, cv) = &*pair;
/// let guard = cv.wait_while(ready.lock(), |ready| !*ready);
/// assert!(*guard);
/// # });
/// ```
pub struct Condvar {
    waiters: ListLock<WaitList>,
}

// No user data, and the state changes only inside fibra's code, which never unwinds midway
// (no user code runs under the internal lock): a panic cannot leave it broken.
impl std::panic::UnwindSafe for Condvar {}
impl std::panic::RefUnwindSafe for Condvar {}

/// Whether a timed [`Condvar`] wait returned because its timeout elapsed.
///
/// ```
/// # fibra::run(|| {
/// use std::time::Duration;
/// let (m, cv) = (fibra::sync::Mutex::new(()), fibra::sync::Condvar::new());
/// let (_guard, res) = cv.wait_timeout(m.lock(), Duration::from_millis(2));
/// assert!(res.timed_out());
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout elapsed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (m, cv) = (fibra::sync::Mutex::new(0), fibra::sync::Condvar::new());
    /// let (_g, res) = cv.wait_timeout(m.lock(), std::time::Duration::ZERO);
    /// assert!(res.timed_out());
    /// # });
    /// ```
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl Condvar {
    crate::loom::const_fn! {
        /// A condition variable with no waiters. `const`, so it can be a `static`.
        ///
        /// ```
        /// let cv = fibra::sync::Condvar::new();
        /// cv.notify_all(); // nobody waits: a no-op
        ///
        /// static READY: fibra::sync::Condvar = fibra::sync::Condvar::new();
        /// READY.notify_one();
        /// ```
        pub fn new() -> Condvar {
            Condvar {
                waiters: ListLock::new(WaitList::new()),
            }
        }
    }

    /// Unlocks `guard`'s mutex, parks until notified, and locks the mutex again.
    ///
    /// # Panics
    /// Only when the calling fiber is being unwound by shutdown and the mutex stays held for
    /// over a second while re-locking (see the [module docs](super)).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let pair = Arc::new((fibra::sync::Mutex::new(0), fibra::sync::Condvar::new()));
    /// let p2 = pair.clone();
    /// fibra::spawn(move || { *p2.0.lock() = 1; p2.1.notify_all(); });
    /// let mut g = pair.0.lock();
    /// while *g == 0 {
    ///     g = pair.1.wait(g);
    /// }
    /// assert_eq!(*g, 1);
    /// # });
    /// ```
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Waits while `condition` returns true, re-checking it after each wake-up; returns the
    /// guard once it is false.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let pair = Arc::new((fibra::sync::Mutex::new(0), fibra::sync::Condvar::new()));
    /// let p2 = pair.clone();
    /// fibra::spawn(move || for _ in 0..3 { *p2.0.lock() += 1; p2.1.notify_one(); });
    /// let g = pair.1.wait_while(pair.0.lock(), |n| *n < 3);
    /// assert_eq!(*g, 3);
    /// # });
    /// ```
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Like [`wait`](Condvar::wait), but gives up after `timeout`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let (m, cv) = (fibra::sync::Mutex::new(()), fibra::sync::Condvar::new());
    /// let t = std::time::Instant::now();
    /// let (_g, res) = cv.wait_timeout(m.lock(), Duration::from_millis(3));
    /// assert!(res.timed_out() && t.elapsed() >= Duration::from_millis(3));
    /// # });
    /// ```
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_until(guard, wait::deadline(timeout))
    }

    /// Like [`wait_while`](Condvar::wait_while), but gives up after `timeout`; the result says
    /// whether it timed out (with the condition still true).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let (m, cv) = (fibra::sync::Mutex::new(false), fibra::sync::Condvar::new());
    /// let (g, res) = cv.wait_timeout_while(m.lock(), Duration::from_millis(2), |ready| !*ready);
    /// assert!(res.timed_out() && !*g);
    /// # });
    /// ```
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let deadline = wait::deadline(timeout);
        while condition(&mut *guard) {
            let (g, res) = self.wait_until(guard, deadline);
            guard = g;
            if res.timed_out() {
                let still = condition(&mut *guard);
                return (guard, WaitTimeoutResult(still));
            }
        }
        (guard, WaitTimeoutResult(false))
    }

    /// Wakes the oldest waiter, if any.
    ///
    /// ```
    /// let cv = fibra::sync::Condvar::new();
    /// cv.notify_one(); // no waiter: nothing is remembered
    /// ```
    pub fn notify_one(&self) {
        self.waiters.lock().notify_one();
    }

    /// Wakes every current waiter.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let pair = Arc::new((fibra::sync::Mutex::new(false), fibra::sync::Condvar::new()));
    /// let waiters: Vec<_> = (0..3).map(|_| { let p = pair.clone(); fibra::spawn(move || {
    ///     drop(p.1.wait_while(p.0.lock(), |go| !*go));
    /// }) }).collect();
    /// *pair.0.lock() = true;
    /// pair.1.notify_all();
    /// waiters.into_iter().for_each(|w| w.join().unwrap());
    /// # });
    /// ```
    pub fn notify_all(&self) {
        self.waiters.lock().notify_all();
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let mutex = MutexGuard::mutex(&guard);
        if park::cancelling() {
            drop(guard);
            std::thread::sleep(Duration::from_millis(1));
            return (mutex.lock(), WaitTimeoutResult(false));
        }
        let waiter = Waiter::current();
        self.waiters.lock().push(waiter.clone(), NOTIFIED);
        drop(guard); // after registering: a notify from now on finds us
        let abandon = || {
            // Unwound while parked: pass on a notification we took, so it is not lost.
            wait::abandon(&waiter, || self.withdraw(&waiter), |_| self.notify_one());
        };
        let token = wait::wait(&waiter, ParkReason::Condvar, deadline, abandon);
        if token != NOTIFIED {
            self.withdraw(&waiter);
        }
        (mutex.lock(), WaitTimeoutResult(token != NOTIFIED))
    }

    fn withdraw(&self, waiter: &Arc<Waiter>) {
        self.waiters.lock().remove(waiter);
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}
