//! `Notify`: tokio's `Notify` for fibers: a wake-up signal with at most one stored permit.
//!
//! State (the permit, a `notify_waiters` generation and the wait list) lives under one short
//! internal lock, so "check for a permit, else queue" is atomic with respect to notifiers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as StateLock;
use crate::park::ParkReason;

const NOTIFIED: usize = 1;

struct State {
    permit: bool,
    /// Bumped by each `notify_waiters`: a waiter unwound after being claimed passes the
    /// notification on only if it came from `notify_one` (the generation did not move).
    generation: u64,
    waiters: WaitList,
}

/// Notifies one waiting fiber (or thread), or all of them, without carrying data.
///
/// [`notify_one`](Notify::notify_one) wakes the oldest waiter, or, if nobody waits, stores one
/// permit that the next [`notified`](Notify::notified) consumes at once (several calls still
/// store only one). [`notify_waiters`](Notify::notify_waiters) wakes everyone waiting now and
/// stores nothing.
///
/// # Memory ordering
/// A `notify_*` call happens-before the `notified` it completes returns.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// let notify = Arc::new(fibra::sync::Notify::new());
/// let n2 = notify.clone();
/// let waiter = fibra::spawn(move || n2.notified());
/// notify.notify_one(); // wakes the waiter, or leaves it a permit
/// waiter.join().unwrap();
/// # });
/// ```
pub struct Notify {
    state: StateLock<State>,
}

// No user data, and the state changes only inside fibra's code, which never unwinds midway
// (no user code runs under the internal lock): a panic cannot leave it broken.
impl std::panic::UnwindSafe for Notify {}
impl std::panic::RefUnwindSafe for Notify {}

impl Notify {
    crate::loom::const_fn! {
        /// A `Notify` with no permit and no waiters. `const`, so it can be a `static`.
        ///
        /// ```
        /// let n = fibra::sync::Notify::new();
        /// assert!(!n.notified_timeout(std::time::Duration::ZERO));
        /// static WAKE: fibra::sync::Notify = fibra::sync::Notify::new();
        /// WAKE.notify_one();
        /// assert!(WAKE.notified_timeout(std::time::Duration::ZERO));
        /// ```
        pub fn new() -> Notify {
            Notify {
                state: StateLock::new(State {
                    permit: false,
                    generation: 0,
                    waiters: WaitList::new(),
                }),
            }
        }
    }

    /// Wakes the oldest waiter; if nobody waits, stores a permit for the next `notified`.
    ///
    /// ```
    /// let n = fibra::sync::Notify::new();
    /// n.notify_one();
    /// n.notify_one(); // still one permit
    /// n.notified(); // consumes it without waiting
    /// assert!(!n.notified_timeout(std::time::Duration::ZERO));
    /// ```
    pub fn notify_one(&self) {
        let mut st = self.state.lock();
        if st.waiters.notify_one().is_none() {
            st.permit = true;
        }
    }

    /// Wakes every current waiter; stores no permit.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let n = Arc::new(fibra::sync::Notify::new());
    /// let waiters: Vec<_> = (0..3).map(|_| { let n = n.clone(); fibra::spawn(move || n.notified()) }).collect();
    /// while waiters.iter().any(|w| !w.is_finished()) {
    ///     n.notify_waiters();
    ///     fibra::yield_now();
    /// }
    /// # });
    /// ```
    pub fn notify_waiters(&self) {
        let mut st = self.state.lock();
        st.generation = st.generation.wrapping_add(1);
        st.waiters.notify_all();
    }

    /// Parks until notified, or consumes a stored permit at once.
    ///
    /// # Shutdown
    /// In a fiber being unwound by shutdown it returns at once.
    ///
    /// ```
    /// let n = fibra::sync::Notify::new();
    /// n.notify_one();
    /// n.notified();
    /// ```
    pub fn notified(&self) {
        self.notified_until(None);
    }

    /// Like [`notified`](Notify::notified), but gives up after `timeout`; true if notified.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let n = fibra::sync::Notify::new();
    /// assert!(!n.notified_timeout(std::time::Duration::from_millis(2)));
    /// n.notify_one();
    /// assert!(n.notified_timeout(std::time::Duration::from_millis(2)));
    /// # });
    /// ```
    pub fn notified_timeout(&self, timeout: Duration) -> bool {
        self.notified_until(wait::deadline(timeout))
    }

    fn notified_until(&self, deadline: Option<Instant>) -> bool {
        let waiter = Waiter::current();
        let generation = {
            let mut st = self.state.lock();
            if std::mem::take(&mut st.permit) {
                return true;
            }
            st.waiters.push(waiter.clone(), NOTIFIED);
            st.generation
        };
        let abandon = || {
            let give_back = |_| {
                if self.state.lock().generation == generation {
                    self.notify_one(); // ours came from `notify_one`: pass it on
                }
            };
            wait::abandon(&waiter, || self.withdraw(&waiter), give_back);
        };
        if wait::wait(&waiter, ParkReason::Notify, deadline, abandon) == NOTIFIED {
            return true;
        }
        self.withdraw(&waiter);
        false
    }

    fn withdraw(&self, waiter: &Arc<Waiter>) {
        self.state.lock().waiters.remove(waiter);
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new()
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify").finish_non_exhaustive()
    }
}
