//! `Mutex<T>`: one CAS when uncontended; under contention, bounded barging ("eventual
//! fairness", as Go's `sync.Mutex` and parking_lot).
//!
//! # Why not strict hand-off
//! Passing ownership straight to the oldest waiter leaves the lock idle while that waiter is
//! woken and scheduled (~1-2 µs), and serialises every acquisition behind a wake-up: 8 fibers
//! on 2 workers paid ~1-2 µs per acquisition, 100x std (`benches/sync.rs`). Here an unlock
//! releases the lock and wakes the oldest waiter to *race* for it; meanwhile anyone may take
//! it ("barge"). Barging is counted, and once the oldest waiter has been overtaken
//! [`MAX_BARGES`] times the mutex switches to hand-off until that debt is paid.
//!
//! # State word
//! ```text
//! bit 0 LOCKED   held
//! bit 1 QUEUED   the wait list may hold waiters (set and cleared under the queue lock)
//! bit 2 WOKEN    one waiter was claimed with TRY_AGAIN and is racing for the lock: no unlock
//!                wakes another meanwhile (Go's mutexWoken); it clears the bit when it is done
//! bit 3 HANDOFF  barging is off: unlock hands the lock to the oldest waiter (or, if that
//!                waiter is WOKEN, frees it for that waiter alone); newcomers queue
//! bit 4 UNCOUNTED  the oldest waiter is an OS thread: barges are not counted (see below)
//! bits 8..16  B      barges: acquisitions taken by CAS while someone waited (wraps, u8)
//! bits 16..24 LIMIT  the value of B at which barging stops: oldest waiter's stamp + MAX_BARGES
//! ```
//! Each queued entry carries the waiter's *stamp* (B when it first queued), a *starving* flag
//! and a *thread* flag. Whenever QUEUED and WOKEN are both clear, everything but LOCKED is
//! zero, so the fast paths (`CAS 0 -> LOCKED`, `CAS LOCKED -> 0`) keep working after
//! contention.
//! Invariants: `!LOCKED && QUEUED => WOKEN` (a free lock with waiters has someone on its way);
//! `HANDOFF && !LOCKED => WOKEN` (a lock freed in hand-off mode is that waiter's).
//!
//! # Protocol
//! ```text
//! lock:     CAS 0 -> LOCKED                                  (fast path: one CAS)
//!           try to barge (a thread spins 64x while nobody waits) if free and not HANDOFF:
//!             CAS s -> s|LOCKED, B+1 if anyone waits, HANDOFF if B+1 == LIMIT
//!           under the queue lock: barge as above, or CAS s -> s|QUEUED, push_back(stamp = B)
//!           park. GRANTED: ours. TRY_AGAIN: spin for it (free -> CAS take, clear WOKEN, even
//!           in HANDOFF: it is the oldest). Lost: under the queue lock, take it if it came
//!           free, else CAS s -> s|QUEUED &!WOKEN (|HANDOFF if starving), push_front, park.
//! unlock:   CAS LOCKED -> 0                                  (fast path; fails if anyone waits)
//!           WOKEN set -> CAS clear LOCKED; done            (for the woken one, or a barger)
//!           QUEUED    -> under the queue lock, state frozen (we hold LOCKED, WOKEN is clear):
//!             front due (starving, or B - stamp >= MAX_BARGES) -> claim it GRANTED; LOCKED
//!               stays; HANDOFF stays iff the next front is due too; LIMIT for the next front
//!             else claim it TRY_AGAIN; store: LOCKED off, WOKEN on, HANDOFF off,
//!               LIMIT = stamp + MAX_BARGES; wake it after the store
//! give up:  queued: claim itself (timeout, cancel), remove its entry under the queue lock.
//!           woken or granted: pass it on (take the lock if free and unlock it, else clear
//!           WOKEN by a CAS that sees LOCKED, so the holder's unlock wakes the next).
//! ```
//! Flags that a waiter sets (QUEUED, or WOKEN cleared) are set by a CAS that observes LOCKED:
//! an unlock landing between a check and a blind write would leave a free lock with a waiter
//! asleep and nobody on the way.
//!
//! # The bound
//! B only grows by barging, and no barge passes LIMIT = (oldest waiter's stamp) + MAX_BARGES,
//! so every queued waiter is overtaken by at most MAX_BARGES barges; besides those, only the
//! waiters ahead of it take the lock (each once: back as a newcomer it barges, which counts,
//! or queues behind). With N contenders a waiter is overtaken by at most
//! MAX_BARGES + N - 1 acquisitions while queued (`tests/sync_fairness.rs`).
//! Rejected: counting only the races a woken waiter *loses* (Go): while it waits to be
//! scheduled a barger on its worker can take the lock any number of times, so that bounds
//! time (with the 1 ms rule), not acquisitions.
//!
//! # Threads get Go's time bound
//! A woken OS thread may wait a whole time slice for a core (8 threads on 2 cores), and a
//! lock reserved for it sits idle meanwhile: with the count bound, 8 threads paid ~2 µs per
//! acquisition instead of ~20 ns. So while the oldest waiter is a thread (UNCOUNTED), barges
//! are not counted and only its 1 ms starvation rule hands it the lock; fibers queued behind
//! it are not charged for those barges either, so their count bound resumes when they reach
//! the front. The count bound is for fibers, whose wake-up is a run-queue push (~1-2 µs).

mod raw;

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::time::Duration;

use super::wait;
use crate::park::ParkReason;

pub(crate) use raw::RawMutex;

/// A mutual-exclusion lock that parks the waiting fiber (or blocks the waiting thread), never
/// its worker.
///
/// Works between fibers and plain OS threads alike. Uncontended `lock`/`unlock` is one CAS
/// each.
///
/// # Fairness
/// Waiters queue in FIFO order. An unlock frees the lock and wakes the oldest waiter to race
/// for it, so a running fiber or thread may take it first ("barging": the lock never sits
/// idle while a sleeper wakes up). Barges are counted: once the oldest waiter, if a fiber,
/// has been overtaken 128 times, or has kept losing for over 1 ms (fiber or thread), unlocks
/// hand the lock straight to it and newcomers queue. With N contending fibers a queued fiber
/// is therefore overtaken by at most 128 + N - 1 acquisitions (a few µs of short critical
/// sections; each hand-off idles the lock while its fiber is scheduled, so a tighter bound
/// costs throughput: 8 fibers on 2 workers took 139 ns a lock/unlock with 8, 37 with 128).
/// A woken OS thread may wait a whole time slice for a core; reserving the lock for it that
/// often would idle the lock, so threads get the 1 ms bound only, as with Go's `sync.Mutex`.
///
/// # No poisoning
/// Unlike `std::sync::Mutex`, a panic while holding the lock does not poison it. At shutdown
/// fibra unwinds every parked fiber; many hold locks at that moment through no fault of
/// their own, and poisoning would turn every such lock into an error for whoever runs next.
/// If a critical section can leave the data half-updated when it panics, restore it in a
/// drop guard.
///
/// # Unwind safety
/// `Mutex` is `UnwindSafe` and `RefUnwindSafe`, like std's, so `catch_unwind` accepts a
/// closure that uses one. A panic can never leave the *lock* broken: fibra's own code does not
/// unwind in the middle of a state change (no user code runs under its internal lock), and the
/// panicking holder's guard unlocks on the way out. Unlike std, nothing marks the *data* as
/// interrupted (see above), so code that catches panics must keep the data consistent itself.
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

// See "Unwind safety" above: the lock stays consistent across a panic, as std's does.
impl<T: ?Sized> UnwindSafe for Mutex<T> {}
impl<T: ?Sized> RefUnwindSafe for Mutex<T> {}

impl<T> Mutex<T> {
    crate::loom::const_fn! {
        /// A new, unlocked mutex holding `value`. `const`, so a mutex can be a `static`.
        ///
        /// ```
        /// let m = fibra::sync::Mutex::new(5);
        /// assert_eq!(m.into_inner(), 5);
        ///
        /// static HITS: fibra::sync::Mutex<u32> = fibra::sync::Mutex::new(0);
        /// *HITS.lock() += 1;
        /// assert_eq!(*HITS.lock(), 1);
        /// ```
        pub fn new(value: T) -> Mutex<T> {
            Mutex {
                raw: RawMutex::new(),
                data: UnsafeCell::new(value),
            }
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

    /// Locks the mutex if it is free, even if others are queued for it (a barge, counted
    /// towards the [fairness](Mutex#fairness) bound). Fails while the lock is being handed to
    /// a waiter that was overtaken too often.
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
        mutex.raw.note_holder();
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
