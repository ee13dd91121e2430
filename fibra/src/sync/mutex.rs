//! `Mutex<T>`: one CAS when uncontended, FIFO hand-off when contended.
//!
//! # State word
//! `LOCKED` (bit 0): held. `QUEUED` (bit 1): the wait list may hold waiters; it is set and
//! cleared only under the queue lock. Invariant, under the queue lock: `LOCKED == 0` implies
//! `QUEUED == 0` and no waiter is queued.
//! ```text
//! lock:     CAS 0 -> LOCKED                                  (fast path: one CAS)
//!           else spin briefly while nobody is queued, then under the queue lock:
//!             free -> CAS s -> s|LOCKED                      (nobody waits: barging is harmless)
//!             held -> CAS s -> s|QUEUED, push, unlock queue, park
//! unlock:   CAS LOCKED -> 0                                  (fast path; fails only if QUEUED)
//!           else under the queue lock: claim the oldest waiter, which now owns the lock
//!             (LOCKED stays set: hand-off); clear QUEUED when the list empties;
//!             nobody claimable -> store 0
//! give up:  the waiter claims itself (timeout/cancel), then removes its entry under the queue
//!           lock; if its claim lost, the unlocker handed it the lock and it unlocks it again.
//! ```
//! A waiter sets `QUEUED` with a CAS, not `fetch_or`: an unlock landing between its check and
//! its write would otherwise leave `QUEUED` set on a free lock and the waiter asleep forever.
//!
//! # Fairness: why hand-off
//! Once anyone waits, newcomers queue behind them (`QUEUED` makes the fast path fail) and an
//! unlock passes ownership straight to the oldest waiter, so a waiter is overtaken by at most
//! the waiters queued before it. Barging happens only when nobody waits, where it costs nobody.
//! Rejected: Go's "normal mode" (wake the head and let it race newcomers, switching to
//! hand-off after 1 ms of starvation). It gives more throughput under heavy contention
//! (`benches/sync.rs` reports both sides), but a fiber woken on a busy worker runs late and
//! loses nearly every race, so without the starvation switch it starves; the issue asks for
//! a bound, which strict hand-off gives simply.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait::{self, lock};
use super::waiter::{WaitList, Waiter};
use crate::loom::sync::atomic::AtomicU32;
use crate::loom::sync::Mutex as QueueLock;
use crate::loom::Ordering::*;
use crate::park::ParkReason;

const LOCKED: u32 = 1;
const QUEUED: u32 = 2;
/// The token of a waiter that was handed the lock.
const GRANTED: usize = 1;
/// Spins before queuing, while the lock is held but nobody waits. A critical section of a few
/// plain writes takes ~20-50 ns; 64 `spin_loop` hints (~1-3 µs) cover it with room to spare,
/// and stay well below the ~1 µs+ of a park and wake-up round trip times two.
const SPINS: u32 = 64;

/// The lock without the data: the state word and the wait list. Also used by `Condvar`.
pub(crate) struct RawMutex {
    state: AtomicU32,
    queue: QueueLock<WaitList>,
}

impl RawMutex {
    pub(crate) fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            queue: QueueLock::new(WaitList::new()),
        }
    }

    /// Any thread. One CAS; fails if the lock is held or anyone is queued for it.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        // Acquire pairs with the Release in `unlock`/`unlock_slow`: the previous critical
        // section happens-before ours.
        self.state
            .compare_exchange(0, LOCKED, Acquire, Relaxed)
            .is_ok()
    }

    /// Locks, parking with `reason` until `deadline`. False on timeout, or if the calling
    /// fiber is being unwound by shutdown.
    #[inline]
    pub(crate) fn lock(&self, reason: ParkReason, deadline: Option<Instant>) -> bool {
        self.try_lock() || self.lock_slow(reason, deadline)
    }

    #[cold]
    fn lock_slow(&self, reason: ParkReason, deadline: Option<Instant>) -> bool {
        for _ in 0..SPINS {
            let s = self.state.load(Relaxed);
            if s & QUEUED != 0 {
                break; // others wait: queue behind them
            }
            if s == 0 && self.try_lock() {
                return true;
            }
            crate::loom::hint::spin_loop();
        }
        let waiter = Waiter::current();
        if self.enqueue(&waiter) {
            return true;
        }
        let token = wait::wait(&waiter, reason, deadline, || self.abandon(&waiter));
        if token == GRANTED {
            return true; // handed over by `unlock_slow`, whose claim (Release) we Acquired
        }
        self.withdraw(&waiter);
        false
    }

    /// Under the queue lock: takes the lock if it is free (true), or queues `waiter` (false).
    pub(crate) fn enqueue(&self, waiter: &Arc<Waiter>) -> bool {
        let mut queue = lock(&self.queue);
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order) = if s & LOCKED == 0 {
                (s | LOCKED, Acquire) // pairs with the Release of the last unlock
            } else {
                (s | QUEUED, Relaxed) // only a flag; the queue lock orders the push
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if new & QUEUED == 0 => return true,
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        queue.push(waiter.clone(), GRANTED);
        false
    }

    /// The holder only.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release pairs with `try_lock`'s Acquire.
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut queue = lock(&self.queue);
        if queue.notify_one().is_some() {
            // Hand-off: LOCKED stays set. The claim's Release publishes our critical section
            // to the new owner (pairs with the Acquire in `Waiter::selected`).
            if queue.is_empty() {
                self.state.fetch_and(!QUEUED, Relaxed);
            }
        } else {
            // Nobody left (every entry had timed out): the list is now empty.
            self.state.store(0, Release); // pairs with `try_lock`'s Acquire
        }
    }

    /// After the waiter claimed itself (timeout, cancel): removes its entry.
    pub(crate) fn withdraw(&self, waiter: &Arc<Waiter>) {
        let mut queue = lock(&self.queue);
        queue.remove(waiter);
        if queue.is_empty() {
            // No-op when the lock is free (then QUEUED is already clear).
            self.state.fetch_and(!QUEUED, Relaxed);
        }
    }

    /// The fiber is unwound while queued: withdraw, or pass on a lock handed to it meanwhile.
    fn abandon(&self, waiter: &Arc<Waiter>) {
        wait::abandon(waiter, || self.withdraw(waiter), |_| self.unlock());
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }
}

/// A mutual-exclusion lock that parks the waiting fiber (or blocks the waiting thread), never
/// its worker.
///
/// Works between fibers and plain OS threads alike. Uncontended `lock`/`unlock` is one CAS
/// each. Under contention ownership passes to waiters in FIFO order, so a waiter is overtaken
/// by at most the waiters queued before it.
///
/// # No poisoning
/// Unlike `std::sync::Mutex`, a panic while holding the lock does not poison it. At shutdown
/// fibra unwinds every parked fiber; many hold locks at that moment through no fault of
/// their own, and poisoning would turn every such lock into an error for whoever runs next.
/// If a critical section can leave the data half-updated when it panics, restore it in a
/// drop guard.
///
/// # Memory ordering
/// An `unlock` (dropping the guard) happens-before the next successful lock of the same mutex.
///
/// # Migration
/// A fiber holding the guard stays on its worker's thread (started fibers never migrate by
/// default), which is why the guard may be `!Send` like std's.
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// let counter = Arc::new(fibra::sync::Mutex::new(0));
/// let fibers: Vec<_> = (0..10)
///     .map(|_| { let c = counter.clone(); fibra::spawn(move || *c.lock() += 1) })
///     .collect();
/// fibers.into_iter().for_each(|f| f.join().unwrap());
/// assert_eq!(*counter.lock(), 10);
/// # });
/// ```
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands `&mut T` to one holder at a time (LOCKED is owned by one party), so
// sharing the mutex only ever moves `T` between threads, which `T: Send` allows.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    ///
    /// ```
    /// let m = fibra::sync::Mutex::new(5);
    /// assert_eq!(m.into_inner(), 5);
    /// ```
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its value (no locking needed: we own it).
    ///
    /// ```
    /// let m = fibra::sync::Mutex::new(String::from("hi"));
    /// assert_eq!(m.into_inner(), "hi");
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, parking the calling fiber (or blocking the calling thread) until it is
    /// available.
    ///
    /// # Panics
    /// Only when called by a fiber that shutdown is unwinding (a destructor) and the lock stays
    /// held for over a second; see the module docs.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let m = fibra::sync::Mutex::new(vec![1]);
    /// m.lock().push(2);
    /// assert_eq!(*m.lock(), [1, 2]);
    /// # });
    /// ```
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !self.raw.lock(ParkReason::MutexLock, None) {
            wait::while_cancelled("Mutex::lock", || self.raw.try_lock().then_some(()));
        }
        MutexGuard::new(self)
    }

    /// Locks the mutex if that needs no waiting: it is free and nobody is queued for it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let m = fibra::sync::Mutex::new(1);
    /// let g = m.try_lock().unwrap();
    /// assert!(m.try_lock().is_none());
    /// drop(g);
    /// assert!(m.try_lock().is_some());
    /// # });
    /// ```
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().then(|| MutexGuard::new(self))
    }

    /// Like [`lock`](Mutex::lock), but gives up after `timeout` and returns `None` (also when
    /// the calling fiber is being unwound by shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let m = fibra::sync::Mutex::new(());
    /// let held = m.lock();
    /// assert!(m.lock_timeout(Duration::from_millis(5)).is_none());
    /// drop(held);
    /// assert!(m.lock_timeout(Duration::from_millis(5)).is_some());
    /// # });
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Option<MutexGuard<'_, T>> {
        let deadline = wait::deadline(timeout);
        self.raw
            .lock(ParkReason::MutexLock, deadline)
            .then(|| MutexGuard::new(self))
    }

    /// True if some fiber or thread holds the lock right now (a hint: it may change at once).
    ///
    /// ```
    /// let m = fibra::sync::Mutex::new(0);
    /// let g = m.try_lock().unwrap();
    /// assert!(m.is_locked());
    /// drop(g);
    /// assert!(!m.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// A mutable reference to the value; no locking needed since `&mut self` is exclusive.
    ///
    /// ```
    /// let mut m = fibra::sync::Mutex::new(1);
    /// *m.get_mut() += 1;
    /// assert_eq!(m.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Proof of holding a [`Mutex`]: dereferences to the data and unlocks when dropped.
///
/// `!Send`, like std's guard: it stays with the fiber (or thread) that locked.
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let m = fibra::sync::Mutex::new(0);
/// assert_send(m.lock());
/// ```
/// ```
/// # fibra::run(|| {
/// let m = fibra::sync::Mutex::new(1);
/// let mut guard = m.lock();
/// *guard += 1;
/// drop(guard); // unlocks
/// assert_eq!(*m.lock(), 2);
/// # });
/// ```
#[must_use = "dropping the guard unlocks the mutex at once"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared `&MutexGuard` only gives out `&T`, which other threads may hold when
// `T: Sync`; the guard itself (and so the unlock) stays on its thread.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    fn new(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        MutexGuard {
            mutex,
            _not_send: PhantomData,
        }
    }

    /// The mutex this guard holds (for `Condvar`).
    pub(crate) fn mutex(guard: &Self) -> &'a Mutex<T> {
        guard.mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard's existence means this party holds LOCKED, so no `&mut T` exists
        // elsewhere.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds LOCKED and `&mut self` makes this the only access path.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose
mod loom_tests {
    use super::*;
    use crate::loom::cell::UnsafeCell;
    use crate::sync::waiter::{TIMED_OUT, WAITING};
    use loom::thread;
    use std::task::{Wake, Waker};

    /// A waker that does nothing: these models spin on the selection word instead.
    struct NoWake;
    impl Wake for NoWake {
        fn wake(self: Arc<Self>) {}
    }

    /// `lock` with the park replaced by a spin on the selection word (loom cannot park a
    /// fiber); `give_up` makes the waiter time out instead, as its timer would.
    fn lock(m: &RawMutex, give_up: bool) -> bool {
        if m.try_lock() {
            return true;
        }
        let waiter = Waiter::from_waker(Waker::from(Arc::new(NoWake)));
        if m.enqueue(&waiter) {
            return true;
        }
        if give_up && waiter.try_select(TIMED_OUT) {
            m.withdraw(&waiter);
            return false;
        }
        while waiter.selected() == WAITING {
            thread::yield_now();
        }
        true
    }

    /// Two lockers and the main thread: every critical section is exclusive (loom's cell
    /// checks it), the hand-off publishes the data, and the count is exact.
    #[test]
    fn exclusive_with_hand_off() {
        loom::model(|| {
            let m = Arc::new((RawMutex::new(), UnsafeCell::new(0u32)));
            let lockers: Vec<_> = (0..2)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || {
                        assert!(lock(&m.0, false));
                        // SAFETY: we hold the lock.
                        m.1.with_mut(|p| unsafe { *p += 1 });
                        m.0.unlock();
                    })
                })
                .collect();
            lockers.into_iter().for_each(|t| t.join().unwrap());
            assert!(m.0.try_lock(), "lock left held or QUEUED");
            // SAFETY: we hold the lock and every other thread is joined.
            assert_eq!(m.1.with(|p| unsafe { *p }), 2);
        });
    }

    /// A waiter that times out races the unlock that would hand it the lock: either it gets
    /// the lock, or it leaves and the lock ends up free, never held by nobody.
    #[test]
    fn timeout_races_hand_off() {
        loom::model(|| {
            let m = Arc::new(RawMutex::new());
            assert!(m.try_lock());
            let t = {
                let m = m.clone();
                thread::spawn(move || {
                    if lock(&m, true) {
                        m.unlock();
                    }
                })
            };
            m.unlock();
            t.join().unwrap();
            assert!(m.try_lock(), "lock lost");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// An unlock with a waiter queued hands the lock over: a `try_lock` in between fails.
    #[test]
    fn unlock_hands_off_to_the_queued_waiter() {
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let m2 = m.clone();
        let t = std::thread::spawn(move || *m2.lock() += 1);
        while m.raw.queue.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        drop(g);
        // Until the waiter's thread runs and unlocks, the lock is its, not free.
        if let Some(g) = m.try_lock() {
            assert_eq!(*g, 1, "took the lock from the waiter it was handed to");
        }
        t.join().unwrap();
        assert_eq!(*m.lock(), 1);
    }
}
