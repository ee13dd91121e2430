//! `Semaphore`: N permits, handed to waiters in FIFO order.
//!
//! # State word
//! `QUEUED` (bit 0, set and cleared only under the queue lock) and the number of available
//! permits in the bits above it (`PERMIT` = 2).
//! ```text
//! acquire:  no QUEUED and a permit -> CAS s -> s - PERMIT            (fast path)
//!           else under the queue lock re-check; else CAS s -> s|QUEUED, push, park
//! release:  add n PERMITs (CAS, refused past MAX_PERMITS); if QUEUED was set -> `grant`
//!           under the queue lock. A permit's drop: fetch_add PERMIT, the same otherwise.
//! grant:    while a permit is available and a waiter queued: take the permit
//!           (fetch_sub), claim the oldest waiter (undo if none); clear QUEUED if list empty
//! ```
//! While `QUEUED` is set the fast path fails, so released permits go to the queued waiters
//! first (no barging past them); under the queue lock only `release`'s `fetch_add`s race.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as QueueLock;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::park::ParkReason;

const QUEUED: usize = 1;
const PERMIT: usize = 2;
/// The token of a waiter that was handed a permit.
const GRANTED: usize = 1;

/// The permit-counting core, free of fiber code so loom can check it.
pub(crate) struct RawSemaphore {
    state: AtomicUsize,
    queue: QueueLock<WaitList>,
}

impl RawSemaphore {
    crate::loom::const_fn! {
        pub(crate) fn new(permits: usize) -> RawSemaphore {
            assert!(
                permits <= Semaphore::MAX_PERMITS,
                "fibra::sync::Semaphore: at most MAX_PERMITS permits"
            );
            RawSemaphore {
                state: AtomicUsize::new(permits * PERMIT),
                queue: QueueLock::new(WaitList::new()),
            }
        }
    }

    pub(crate) fn try_acquire(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while s & QUEUED == 0 && s >= PERMIT {
            // Acquire pairs with `release`'s Release: the releaser's work happens-before ours.
            match self
                .state
                .compare_exchange_weak(s, s - PERMIT, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// Takes a permit (true) or queues `waiter` for one (false); under the queue lock.
    pub(crate) fn enqueue(&self, waiter: &Arc<Waiter>) -> bool {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let free = s & QUEUED == 0 && s >= PERMIT;
            let (new, order) = if free {
                (s - PERMIT, Acquire) // as in `try_acquire`
            } else {
                (s | QUEUED, Relaxed) // a flag; the queue lock orders the push
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if free => return true,
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        queue.push(waiter.clone(), GRANTED);
        false
    }

    /// Adds `n` new permits (`Semaphore::release`). Panics, leaving the count as it was, if
    /// the permits available would exceed `MAX_PERMITS`.
    pub(crate) fn release(&self, n: usize) {
        let mut s = self.state.load(Relaxed);
        let prev = loop {
            let total = (s / PERMIT)
                .checked_add(n)
                .filter(|&total| total <= Semaphore::MAX_PERMITS);
            let Some(total) = total else {
                panic!(
                    "fibra::sync::Semaphore::release({n}): {} permits available, and at most \
                     Semaphore::MAX_PERMITS ({}) fit; release fewer",
                    s / PERMIT,
                    Semaphore::MAX_PERMITS
                );
            };
            // No overflow: `total <= MAX_PERMITS = usize::MAX >> 2`.
            let new = (total * PERMIT) | (s & QUEUED);
            // Release pairs with the Acquire of `try_acquire`/`enqueue`, or with `grant`'s.
            match self.state.compare_exchange_weak(s, new, Release, Relaxed) {
                Ok(prev) => break prev,
                Err(actual) => s = actual,
            }
        };
        if prev & QUEUED != 0 {
            self.grant(&mut self.queue.lock());
        }
    }

    /// Gives back one permit that was taken (a `SemaphorePermit`'s drop, or a grant to a
    /// waiter that had already given up). Never panics: the count may pass `MAX_PERMITS` by
    /// the permits outstanding (after `release` refilled it), and the state word holds up to
    /// `usize::MAX >> 1` permits, twice `MAX_PERMITS`, while outstanding permits (one live
    /// value each) number far fewer than `MAX_PERMITS`, so this never wraps.
    fn give_back(&self) {
        // Release pairs with the Acquire of `try_acquire`/`enqueue`, or with `grant`'s.
        let prev = self.state.fetch_add(PERMIT, Release);
        if prev & QUEUED != 0 {
            self.grant(&mut self.queue.lock());
        }
    }

    /// Under the queue lock: hands available permits to the oldest waiters.
    fn grant(&self, queue: &mut WaitList) {
        loop {
            // Acquire pairs with `release`'s Release; the claim below passes it on.
            let s = self.state.load(Acquire);
            if s & QUEUED == 0 || s < PERMIT {
                break;
            }
            self.state.fetch_sub(PERMIT, Relaxed); // only `release` races us: s stays >= 0
                                                   // The claim's Release publishes to the waiter (its `selected` Acquires).
            if queue.notify_one().is_none() {
                self.state.fetch_add(PERMIT, Relaxed);
                break;
            }
        }
        if queue.is_empty() {
            self.state.fetch_and(!QUEUED, Relaxed);
        }
    }

    /// After the waiter claimed itself: removes its entry.
    pub(crate) fn withdraw(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.queue.lock();
        queue.remove(waiter);
        self.grant(&mut queue);
    }

    pub(crate) fn available(&self) -> usize {
        self.state.load(Relaxed) / PERMIT
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        let waiter = Waiter::current();
        if self.enqueue(&waiter) {
            return true;
        }
        let abandon = || {
            wait::abandon(&waiter, || self.withdraw(&waiter), |_| self.give_back());
        };
        if wait::wait(&waiter, ParkReason::Semaphore, deadline, abandon) == GRANTED {
            return true;
        }
        self.withdraw(&waiter);
        false
    }
}

/// A counting semaphore: at most N holders of a permit at a time. Waiting fibers park (threads
/// block) and receive released permits in FIFO order.
///
/// # Memory ordering
/// A `release` (or a permit's drop) happens-before the `acquire` that takes that permit.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// let sem = Arc::new(fibra::sync::Semaphore::new(2));
/// let inside = Arc::new(AtomicUsize::new(0));
/// let fibers: Vec<_> = (0..8).map(|_| {
///     let (sem, inside) = (sem.clone(), inside.clone());
///     fibra::spawn(move || {
///         let _permit = sem.acquire();
///         assert!(inside.fetch_add(1, SeqCst) < 2);
///         fibra::yield_now();
///         inside.fetch_sub(1, SeqCst);
///     })
/// }).collect();
/// fibers.into_iter().for_each(|f| f.join().unwrap());
/// # });
/// ```
pub struct Semaphore {
    raw: RawSemaphore,
}

// No user data, and the state changes only inside fibra's code, which never unwinds midway
// (no user code runs under the internal lock): a panic cannot leave it broken.
impl std::panic::UnwindSafe for Semaphore {}
impl std::panic::RefUnwindSafe for Semaphore {}

impl Semaphore {
    /// The most permits a semaphore can hold.
    ///
    /// ```
    /// use fibra::sync::Semaphore;
    /// let sem = Semaphore::new(Semaphore::MAX_PERMITS);
    /// assert_eq!(sem.available_permits(), Semaphore::MAX_PERMITS);
    /// ```
    pub const MAX_PERMITS: usize = usize::MAX >> 2;

    crate::loom::const_fn! {
        /// A semaphore with `permits` available permits. `const`, so it can be a `static`.
        ///
        /// # Panics
        /// If `permits` exceeds [`MAX_PERMITS`](Semaphore::MAX_PERMITS) (at compile time in a
        /// `static`).
        ///
        /// ```
        /// let sem = fibra::sync::Semaphore::new(3);
        /// assert_eq!(sem.available_permits(), 3);
        /// static CONNECTIONS: fibra::sync::Semaphore = fibra::sync::Semaphore::new(2);
        /// assert!(CONNECTIONS.try_acquire().is_some());
        /// ```
        pub fn new(permits: usize) -> Semaphore {
            Semaphore {
                raw: RawSemaphore::new(permits),
            }
        }
    }

    /// Takes a permit, parking until one is available. The permit returns when dropped.
    ///
    /// # Panics
    /// Only from a fiber being unwound by shutdown, if no permit comes free for over a second
    /// (see the [module docs](super)).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let sem = fibra::sync::Semaphore::new(1);
    /// let permit = sem.acquire();
    /// assert_eq!(sem.available_permits(), 0);
    /// drop(permit);
    /// assert_eq!(sem.available_permits(), 1);
    /// # });
    /// ```
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        if !self.raw.acquire(None) {
            wait::while_cancelled("Semaphore::acquire", || {
                self.raw.try_acquire().then_some(())
            });
        }
        SemaphorePermit { sem: self }
    }

    /// Takes a permit if one is available and nobody is queued for it.
    ///
    /// ```
    /// let sem = fibra::sync::Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert!(sem.try_acquire().is_none());
    /// drop(p);
    /// ```
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.raw
            .try_acquire()
            .then(|| SemaphorePermit { sem: self })
    }

    /// Like [`acquire`](Semaphore::acquire), but gives up after `timeout` (or when the calling
    /// fiber is being unwound by shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let sem = fibra::sync::Semaphore::new(0);
    /// assert!(sem.acquire_timeout(std::time::Duration::from_millis(3)).is_none());
    /// # });
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphorePermit<'_>> {
        self.raw
            .acquire(wait::deadline(timeout))
            .then(|| SemaphorePermit { sem: self })
    }

    /// Like [`acquire`](Semaphore::acquire), for a semaphore in an `Arc`: the permit holds the
    /// `Arc` instead of a borrow, so it is `'static` and `Send`, and can outlive the caller's
    /// frame (move it into a spawned fiber, store it in a connection).
    ///
    /// # Panics
    /// As [`acquire`](Semaphore::acquire).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::Arc;
    /// let sem = Arc::new(fibra::sync::Semaphore::new(1));
    /// let permit = sem.clone().acquire_owned();
    /// let worker = fibra::spawn(move || drop(permit)); // the permit travels with the fiber
    /// worker.join().unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// # });
    /// ```
    pub fn acquire_owned(self: Arc<Self>) -> OwnedSemaphorePermit {
        if !self.raw.acquire(None) {
            wait::while_cancelled("Semaphore::acquire_owned", || {
                self.raw.try_acquire().then_some(())
            });
        }
        OwnedSemaphorePermit::new(self)
    }

    /// Like [`try_acquire`](Semaphore::try_acquire), with an owned permit.
    ///
    /// # Errors
    /// Hands the `Arc` back if no permit is free (or others are queued for one).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fibra::sync::Semaphore::new(1));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// let sem = sem.try_acquire_owned().unwrap_err(); // the `Arc` comes back
    /// drop(permit);
    /// assert!(sem.try_acquire_owned().is_ok());
    /// ```
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, Arc<Semaphore>> {
        if self.raw.try_acquire() {
            Ok(OwnedSemaphorePermit::new(self))
        } else {
            Err(self)
        }
    }

    /// Like [`acquire_timeout`](Semaphore::acquire_timeout), with an owned permit.
    ///
    /// # Errors
    /// Hands the `Arc` back if no permit came free within `timeout` (or the calling fiber is
    /// being unwound by shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::{sync::Arc, time::Duration};
    /// let sem = Arc::new(fibra::sync::Semaphore::new(0));
    /// let sem = sem.acquire_owned_timeout(Duration::from_millis(2)).unwrap_err();
    /// sem.release(1);
    /// assert!(sem.acquire_owned_timeout(Duration::from_millis(2)).is_ok());
    /// # });
    /// ```
    pub fn acquire_owned_timeout(
        self: Arc<Self>,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, Arc<Semaphore>> {
        if self.raw.acquire(wait::deadline(timeout)) {
            Ok(OwnedSemaphorePermit::new(self))
        } else {
            Err(self)
        }
    }

    /// Adds `n` permits, handing them to queued waiters first. Pairs with
    /// [`SemaphorePermit::forget`], or grows the semaphore.
    ///
    /// # Panics
    /// If the permits available would exceed [`MAX_PERMITS`](Semaphore::MAX_PERMITS); the
    /// semaphore is left as it was. (A permit's drop never panics: it may take the count past
    /// `MAX_PERMITS` by the permits outstanding.)
    ///
    /// ```
    /// use fibra::sync::Semaphore;
    /// let sem = Semaphore::new(0);
    /// sem.release(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// let release_too_many = std::panic::AssertUnwindSafe(|| sem.release(Semaphore::MAX_PERMITS));
    /// let too_many = std::panic::catch_unwind(release_too_many);
    /// assert!(too_many.is_err());
    /// assert_eq!(sem.available_permits(), 2); // unchanged
    /// ```
    pub fn release(&self, n: usize) {
        self.raw.release(n);
    }

    /// The number of permits available right now (a hint: it may change at once).
    ///
    /// ```
    /// let sem = fibra::sync::Semaphore::new(4);
    /// let _p = sem.try_acquire();
    /// assert_eq!(sem.available_permits(), 3);
    /// ```
    pub fn available_permits(&self) -> usize {
        self.raw.available()
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .finish_non_exhaustive()
    }
}

/// One permit of a [`Semaphore`]; dropping it releases the permit.
///
/// ```
/// # fibra::run(|| {
/// let sem = fibra::sync::Semaphore::new(1);
/// {
///     let _permit: fibra::sync::SemaphorePermit<'_> = sem.acquire();
///     assert!(sem.try_acquire().is_none());
/// }
/// assert!(sem.try_acquire().is_some());
/// # });
/// ```
#[must_use = "dropping the permit releases it at once"]
#[derive(Debug)]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken: dropping it no longer releases it (shrinks the semaphore; undo
    /// with [`Semaphore::release`]).
    ///
    /// ```
    /// let sem = fibra::sync::Semaphore::new(1);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.raw.give_back();
    }
}

/// One permit of a [`Semaphore`] held through an `Arc` (from
/// [`acquire_owned`](Semaphore::acquire_owned)); dropping it releases the permit. `'static`
/// and `Send`, unlike [`SemaphorePermit`], so it can move into another fiber or thread.
///
/// ```
/// use std::sync::Arc;
/// use fibra::sync::{OwnedSemaphorePermit, Semaphore};
/// fn assert_static_send<T: Send + 'static>(_: &T) {}
/// let sem = Arc::new(Semaphore::new(1));
/// let permit: OwnedSemaphorePermit = sem.clone().try_acquire_owned().unwrap();
/// assert_static_send(&permit);
/// let held = std::thread::spawn(move || drop(permit));
/// held.join().unwrap();
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[must_use = "dropping the permit releases it at once"]
#[derive(Debug)]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    /// False once [`forget`](OwnedSemaphorePermit::forget) kept the permit taken.
    release: bool,
}

impl OwnedSemaphorePermit {
    fn new(sem: Arc<Semaphore>) -> OwnedSemaphorePermit {
        OwnedSemaphorePermit { sem, release: true }
    }

    /// The semaphore this permit belongs to.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fibra::sync::Semaphore::new(1));
    /// let permit = sem.clone().try_acquire_owned().unwrap();
    /// assert!(Arc::ptr_eq(permit.semaphore(), &sem));
    /// ```
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }

    /// Keeps the permit taken, as [`SemaphorePermit::forget`]; the `Arc` is still released.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(fibra::sync::Semaphore::new(1));
    /// sem.clone().try_acquire_owned().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// assert_eq!(Arc::strong_count(&sem), 1);
    /// ```
    pub fn forget(mut self) {
        self.release = false;
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        if self.release {
            self.sem.raw.give_back();
        }
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose
mod loom_tests {
    use super::*;
    use crate::sync::waiter::{TIMED_OUT, WAITING};
    use loom::sync::atomic::AtomicUsize as Count;
    use loom::thread;

    /// `acquire` with the park replaced by a spin on the selection word (loom cannot park a
    /// fiber); `give_up` makes the waiter time out instead.
    fn acquire(s: &RawSemaphore, give_up: bool) -> bool {
        if s.try_acquire() {
            return true;
        }
        let waiter = Waiter::spinning();
        if s.enqueue(&waiter) {
            return true;
        }
        if give_up && waiter.try_select(TIMED_OUT) {
            s.withdraw(&waiter);
            return false;
        }
        while waiter.selected() == WAITING {
            thread::yield_now();
        }
        true
    }

    /// One permit, two acquirers (one may time out) and the main thread: never two holders,
    /// and every permit comes back.
    #[test]
    fn permits_are_exclusive_and_conserved() {
        loom::model(|| {
            let sem = Arc::new((RawSemaphore::new(1), Count::new(0)));
            let threads: Vec<_> = [false, true]
                .into_iter()
                .map(|give_up| {
                    let sem = sem.clone();
                    thread::spawn(move || {
                        if acquire(&sem.0, give_up) {
                            assert_eq!(sem.1.fetch_add(1, SeqCst), 0, "two holders");
                            sem.1.fetch_sub(1, SeqCst);
                            sem.0.give_back();
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            assert_eq!(sem.0.available(), 1);
            assert!(sem.0.try_acquire(), "permit stuck behind QUEUED");
        });
    }
}
