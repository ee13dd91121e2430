//! `Barrier`: N parties wait until all have arrived, then all go on; reusable.
//!
//! State (count of arrivals, generation, wait list) lives under one short internal lock. The
//! N-th arrival is the leader: it starts a new generation and claims every waiter. A waiter
//! that gives up (timeout, shutdown) checks the generation under the lock: if it moved, the
//! barrier tripped with its arrival counted and it reports success; otherwise it takes its
//! arrival back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as StateLock;
use crate::park::ParkReason;

const PASSED: usize = 1;

struct State {
    arrived: usize,
    generation: u64,
    waiters: WaitList,
}

/// Lets `n` fibers (or threads) wait until all of them have called [`wait`](Barrier::wait).
/// It resets itself afterwards, so it can be used round after round.
///
/// # Memory ordering
/// Everything each party did before `wait` happens-before every party's `wait` returns.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// let barrier = Arc::new(fibra::sync::Barrier::new(4));
/// let fibers: Vec<_> = (0..4).map(|_| {
///     let b = barrier.clone();
///     fibra::spawn(move || b.wait().is_leader())
/// }).collect();
/// let leaders = fibers.into_iter().map(|f| f.join().unwrap()).filter(|&l| l).count();
/// assert_eq!(leaders, 1);
/// # });
/// ```
pub struct Barrier {
    n: usize,
    state: StateLock<State>,
}

// No user data, and the state changes only inside fibra's code, which never unwinds midway
// (no user code runs under the internal lock): a panic cannot leave it broken.
impl std::panic::UnwindSafe for Barrier {}
impl std::panic::RefUnwindSafe for Barrier {}

/// What [`Barrier::wait`] returns: exactly one party per round is the leader.
///
/// ```
/// # fibra::run(|| {
/// let res: fibra::sync::BarrierWaitResult = fibra::sync::Barrier::new(1).wait();
/// assert!(res.is_leader());
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for the one party per round whose arrival released the others (the last to
    /// arrive).
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::sync::Barrier::new(1).wait().is_leader());
    /// # });
    /// ```
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    crate::loom::const_fn! {
        /// A barrier for `n` parties. With `n` of 0 or 1 every `wait` returns at once as
        /// leader. `const`, so a barrier can be a `static`.
        ///
        /// ```
        /// let b = fibra::sync::Barrier::new(2);
        /// # drop(b);
        /// static START: fibra::sync::Barrier = fibra::sync::Barrier::new(1);
        /// assert!(START.wait().is_leader());
        /// ```
        pub fn new(n: usize) -> Barrier {
            Barrier {
                n,
                state: StateLock::new(State {
                    arrived: 0,
                    generation: 0,
                    waiters: WaitList::new(),
                }),
            }
        }
    }

    /// Parks until `n` parties (this one included) have called `wait` in this round.
    ///
    /// # Shutdown
    /// In a fiber being unwound by shutdown it takes its arrival back and returns at once (not
    /// as leader) instead of waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let b = Arc::new(fibra::sync::Barrier::new(2));
    /// let b2 = b.clone();
    /// let f = fibra::spawn(move || { b2.wait(); });
    /// b.wait();
    /// f.join().unwrap();
    /// # });
    /// ```
    pub fn wait(&self) -> BarrierWaitResult {
        self.wait_until(None).unwrap_or(BarrierWaitResult(false))
    }

    /// Like [`wait`](Barrier::wait), but gives up after `timeout` and returns `None`; the
    /// arrival is then taken back, as if this party never came.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let b = fibra::sync::Barrier::new(2);
    /// assert!(b.wait_timeout(Duration::from_millis(2)).is_none()); // nobody else came
    /// # });
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<BarrierWaitResult> {
        self.wait_until(wait::deadline(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<BarrierWaitResult> {
        let waiter = Waiter::current();
        let generation = {
            let mut st = self.state.lock();
            st.arrived += 1;
            if st.arrived >= self.n {
                st.arrived = 0;
                st.generation = st.generation.wrapping_add(1);
                st.waiters.notify_all(); // claims publish everything before (Release)
                return Some(BarrierWaitResult(true));
            }
            st.waiters.push(waiter.clone(), PASSED);
            st.generation
        };
        let abandon = || {
            wait::abandon(
                &waiter,
                || {
                    self.withdraw(&waiter, generation);
                },
                |_| {},
            );
        };
        if wait::wait(&waiter, ParkReason::Barrier, deadline, abandon) == PASSED {
            return Some(BarrierWaitResult(false));
        }
        self.withdraw(&waiter, generation)
            .then_some(BarrierWaitResult(false))
    }

    /// After the waiter claimed itself: true if its round completed anyway (its arrival was
    /// counted); else takes the arrival back and removes the entry.
    fn withdraw(&self, waiter: &Arc<Waiter>, generation: u64) -> bool {
        let mut st = self.state.lock();
        if st.generation != generation {
            return true;
        }
        st.arrived -= 1;
        st.waiters.remove(waiter);
        false
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}
