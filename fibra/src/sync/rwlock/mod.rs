//! `RwLock<T>`: many readers or one writer. Writers barge within a bound, as the mutex does;
//! readers queue behind anyone waiting, so writers never starve.
//!
//! # Why writers barge
//! Strict FIFO hand-off (grant the lock to the oldest waiter at unlock) leaves the lock idle
//! while that waiter is woken and scheduled, and serialises every contended acquisition behind
//! a wake-up (see [`Mutex`'s protocol](super::Mutex) for the same story). 8 writer fibers on 2
//! workers (`fibra-lab child chan fibra 100000 --workers 2 --case rwlock`, 10 runs interleaved
//! with `--case mutex` on a loaded 2-core machine, medians): 1,243 ns a lock/unlock with
//! hand-off, 104 with barging; the mutex took 98-119 in the same runs. CPU time per
//! lock/unlock (`perf stat -e task-clock`): 729 ns, then 74; the mutex's 69-73. Under
//! callgrind (20,000 × 8): 2,136 instructions a lock/unlock, then 154; the mutex's 191-240. So a write unlock frees
//! the lock and wakes the front writer to *race* for it; a running writer may take it first,
//! counted, and after [`MAX_BARGES`](raw::MAX_BARGES) barges (or 1 ms of losing) the front
//! writer is handed the lock.
//!
//! # Why readers do not
//! A reader that joined past a queued writer would make that writer wait for the reader's
//! whole critical section, and readers overlap, so a stream of them could keep the lock busy
//! until the bound ran out every time. Readers gain little from barging anyway: readers queue
//! only behind a writer (holding or waiting), and the readers at the front are admitted
//! together, one hand-off for the whole run. So a reader joins only while no writer holds the
//! lock and nobody waits, and waiting readers are *granted* (hand-off), never woken to race.
//!
//! # State word (`u64`)
//! ```text
//! bit 0 WRITER     a writer holds it
//! bit 1 QUEUED     the wait list may hold waiters (set and cleared under the queue lock)
//! bit 2 WOKEN      a writer was claimed with TRY_AGAIN and races for the lock; no unlock wakes
//!                  another meanwhile, and readers queue behind it
//! bit 3 HANDOFF    barging is off: only the woken writer may take the free lock
//! bit 4 UNCOUNTED  the oldest waiter is an OS thread: barges are not counted (as the mutex)
//! bits 8..16  B      barges: write locks taken by CAS while someone waited (wraps, u8)
//! bits 16..24 LIMIT  the value of B at which barging stops: oldest writer's stamp + MAX_BARGES
//! bits 32..64 readers holding it
//! ```
//! Whenever QUEUED and WOKEN are both clear, only WRITER and the reader count may be nonzero,
//! so the fast paths (`CAS 0 -> WRITER`, `CAS WRITER -> 0`, `+/- READER`) work after contention.
//! Invariants: free and QUEUED => WOKEN (a free lock with waiters has a writer on its way);
//! free and HANDOFF => WOKEN.
//!
//! # Protocol
//! ```text
//! read:          nothing but readers (no WRITER, QUEUED, WOKEN, HANDOFF): CAS s -> s + READER
//!                else under the queue lock re-check, or CAS s -> s|QUEUED, push_back; park
//!                until granted (readers are never woken to race)
//! write:         CAS 0 -> WRITER; else barge if free and not HANDOFF: CAS s -> s|WRITER,
//!                B+1 if anyone waits, HANDOFF if B+1 == LIMIT (a thread spins 64x first)
//!                else under the queue lock barge or CAS s -> s|QUEUED, push_back(stamp = B);
//!                park. GRANTED: ours. TRY_AGAIN: spin for it (free -> take, clear WOKEN).
//!                Lost: under the queue lock take it if free, else CAS (s|QUEUED) & !WOKEN
//!                (|HANDOFF if starving) seeing it held, push_front, park again
//! read unlock:   CAS s -> s - READER; but the last reader out with QUEUED and WOKEN clear
//!                keeps its hold and runs `release` under the queue lock
//! write unlock:  CAS WRITER -> 0; WOKEN set -> clear WRITER (the woken one races); QUEUED ->
//!                under the queue lock turn WRITER into one READER and run `release`
//! release:       (the caller holds one READER; while it is the last holder with QUEUED and
//!                WOKEN clear, the state is frozen: nothing else passes QUEUED or a hold)
//!                front readers -> count each (+READER) before its GRANTED claim, all the run
//!                front writer due (starving, or B - stamp >= MAX_BARGES) -> +WRITER, GRANTED
//!                front writer not due -> claim TRY_AGAIN; free it: WOKEN on, HANDOFF off,
//!                  LIMIT = stamp + MAX_BARGES; wake it after the queue lock
//!                then leave: -READER, QUEUED iff the list is non-empty (if the readers just
//!                admitted are gone already, the caller is the last out again: repeat)
//! downgrade:     fetch_add READER - WRITER (flags kept); if QUEUED and not WOKEN, admit the
//!                readers at the front (a woken writer is older than them: they wait)
//! give up:       queued: claim itself (timeout, cancel), remove its entry; if readers hold,
//!                admit the readers now at the front. Woken: take the lock if free and unlock
//!                it, else clear WOKEN by a CAS that sees it held. Granted: unlock.
//! ```
//! A hold is counted *before* the claim that grants it: a claimed waiter may run at once
//! (a spurious park return) and must find its hold counted. Flags a waiter sets (QUEUED, or
//! WOKEN cleared) are set by a CAS that sees the lock held, so the holder's unlock sees them.
//!
//! # Fairness
//! Readers never overtake a waiting writer, and consecutive readers at the front are admitted
//! together. A queued writer is overtaken by at most MAX_BARGES barges plus the waiters ahead
//! of it, as with the mutex: MAX_BARGES + N - 1 acquisitions for N contenders
//! (`tests/sync_fairness.rs`); a thread at the front gets the 1 ms bound only.

mod raw;

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::ptr::NonNull;
use std::time::Duration;

use super::wait;
use raw::{Kind, RawRwLock};

// The read guard holds `&RawRwLock`. Its state changes only inside `raw.rs`'s code, which
// never unwinds midway (no user code runs under the queue lock).
impl RefUnwindSafe for RawRwLock {}

/// A reader-writer lock that parks waiting fibers (or blocks waiting threads).
///
/// Waiters queue in FIFO order; a waiting writer stops new readers, so writers do not starve,
/// and consecutive readers at the front are admitted together. A write unlock frees the lock
/// and wakes the oldest waiting writer to race for it, so a running writer may take it first
/// ("barging", as [`Mutex`](super::Mutex#fairness) does); once that writer has been overtaken
/// 128 times (or kept losing for 1 ms) it is handed the lock. Readers never barge. Not poisoned by panics, and
/// `UnwindSafe`/`RefUnwindSafe` like std's for the same reasons as
/// [`Mutex`](super::Mutex#unwind-safety).
///
/// # Memory ordering
/// A write unlock happens-before every later lock; a read unlock happens-before the next write
/// lock.
///
/// ```
/// # fibra::run(|| {
/// let lock = fibra::sync::RwLock::new(5);
/// {
///     let (a, b) = (lock.read(), lock.read()); // many readers at once
///     assert_eq!(*a + *b, 10);
/// }
/// *lock.write() += 1;
/// assert_eq!(*lock.read(), 6);
/// # });
/// ```
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: the state word admits either one writer (`&mut T`, needs `T: Send` to move access
// between threads) or readers (`&T` shared across threads, needs `T: Sync`), never both.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

// As `Mutex`'s: a panic releases the holder's guard and never leaves the lock itself broken.
impl<T: ?Sized> UnwindSafe for RwLock<T> {}
impl<T: ?Sized> RefUnwindSafe for RwLock<T> {}

impl<T> RwLock<T> {
    crate::loom::const_fn! {
        /// A new, unlocked lock holding `value`. `const`, so a lock can be a `static`.
        ///
        /// ```
        /// let lock = fibra::sync::RwLock::new(1);
        /// assert_eq!(lock.into_inner(), 1);
        ///
        /// static CONFIG: fibra::sync::RwLock<&str> = fibra::sync::RwLock::new("default");
        /// *CONFIG.write() = "tuned";
        /// assert_eq!(*CONFIG.read(), "tuned");
        /// ```
        pub fn new(value: T) -> RwLock<T> {
            RwLock {
                raw: RawRwLock::new(),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// Consumes the lock and returns its value.
    ///
    /// ```
    /// let lock = fibra::sync::RwLock::new(vec![1]);
    /// assert_eq!(lock.into_inner(), [1]);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for shared reading, parking while a writer holds the lock or waits for it.
    ///
    /// # Panics
    /// Only from a fiber being unwound by shutdown, if the lock stays unavailable for over a
    /// second (see the [module docs](super)).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let lock = fibra::sync::RwLock::new(3);
    /// assert_eq!(*lock.read(), 3);
    /// # });
    /// ```
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        if !self.raw.lock(Kind::Read, None) {
            wait::while_cancelled("RwLock::read", || self.raw.try_read().then_some(()));
        }
        self.read_guard()
    }

    /// Locks for exclusive writing, parking while anyone holds the lock. A writer that finds
    /// it free may take it ahead of queued waiters, within the bound of the
    /// [type-level docs](RwLock).
    ///
    /// # Panics
    /// As [`read`](RwLock::read).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let lock = fibra::sync::RwLock::new(3);
    /// *lock.write() = 4;
    /// assert_eq!(*lock.read(), 4);
    /// # });
    /// ```
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        if !self.raw.lock(Kind::Write, None) {
            wait::while_cancelled("RwLock::write", || self.raw.try_write().then_some(()));
        }
        RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Locks for reading if that needs no waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let lock = fibra::sync::RwLock::new(0);
    /// let w = lock.write();
    /// assert!(lock.try_read().is_none());
    /// drop(w);
    /// assert!(lock.try_read().is_some());
    /// # });
    /// ```
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.raw.try_read().then(|| self.read_guard())
    }

    /// Locks for writing if that needs no waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let lock = fibra::sync::RwLock::new(0);
    /// let r = lock.read();
    /// assert!(lock.try_write().is_none());
    /// drop(r);
    /// assert!(lock.try_write().is_some());
    /// # });
    /// ```
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw.try_write().then(|| RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Like [`read`](RwLock::read), but gives up after `timeout` (or when the calling fiber is
    /// being unwound by shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let lock = fibra::sync::RwLock::new(0);
    /// let w = lock.write();
    /// assert!(lock.read_timeout(Duration::from_millis(5)).is_none());
    /// drop(w);
    /// assert!(lock.read_timeout(Duration::from_millis(5)).is_some());
    /// # });
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Option<RwLockReadGuard<'_, T>> {
        self.raw
            .lock(Kind::Read, wait::deadline(timeout))
            .then(|| self.read_guard())
    }

    /// Like [`write`](RwLock::write), but gives up after `timeout` (or when the calling fiber
    /// is being unwound by shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let lock = fibra::sync::RwLock::new(0);
    /// let r = lock.read();
    /// assert!(lock.write_timeout(Duration::from_millis(5)).is_none());
    /// drop(r);
    /// assert!(lock.write_timeout(Duration::from_millis(5)).is_some());
    /// # });
    /// ```
    pub fn write_timeout(&self, timeout: Duration) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw
            .lock(Kind::Write, wait::deadline(timeout))
            .then(|| RwLockWriteGuard {
                lock: self,
                _not_send: PhantomData,
            })
    }

    /// The guard of a read hold the caller has just taken.
    fn read_guard(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard {
            // SAFETY: `UnsafeCell::get` returns a pointer into `self`, never null.
            data: unsafe { NonNull::new_unchecked(self.data.get()) },
            raw: &self.raw,
        }
    }

    /// A mutable reference to the value; no locking needed since `&mut self` is exclusive.
    ///
    /// ```
    /// let mut lock = fibra::sync::RwLock::new(1);
    /// *lock.get_mut() = 2;
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    /// The same as [`RwLock::new`].
    ///
    /// ```
    /// let lock: fibra::sync::RwLock<u8> = 3.into();
    /// assert_eq!(*lock.try_read().unwrap(), 3);
    /// ```
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]'s data; unlocks when dropped. `!Send`, like std's.
///
/// Covariant in `T`, like std's: a guard of `RwLock<&'static str>` may be used as a guard of
/// `&'a str`, since it only ever hands out shared references.
///
/// ```
/// # fibra::run(|| {
/// use fibra::sync::{RwLock, RwLockReadGuard};
/// fn shorten<'a>(g: RwLockReadGuard<'a, &'static str>) -> RwLockReadGuard<'a, &'a str> {
///     g
/// }
/// let lock = RwLock::new("x");
/// let guard: RwLockReadGuard<'_, &str> = shorten(lock.read());
/// assert_eq!(guard.len(), 1);
/// # });
/// ```
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let lock = fibra::sync::RwLock::new(0);
/// assert_send(lock.try_read().unwrap());
/// ```
#[must_use = "dropping the guard unlocks the lock at once"]
pub struct RwLockReadGuard<'a, T: ?Sized + 'a> {
    /// A pointer rather than `&'a RwLock<T>`, whose `UnsafeCell<T>` would make the guard
    /// invariant in `T`. Also what makes the guard `!Send`.
    data: NonNull<T>,
    raw: &'a RawRwLock,
}

/// Exclusive access to an [`RwLock`]'s data; unlocks when dropped. `!Send`, like std's.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let lock = fibra::sync::RwLock::new(0);
/// assert_send(lock.try_write().unwrap());
/// ```
/// ```
/// # fibra::run(|| {
/// let lock = fibra::sync::RwLock::new(String::from("x"));
/// let mut guard: fibra::sync::RwLockWriteGuard<'_, String> = lock.write();
/// guard.push('y');
/// drop(guard);
/// assert_eq!(*lock.read(), "xy");
/// # });
/// ```
#[must_use = "dropping the guard unlocks the lock at once"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: `&RwLockReadGuard` gives out only `&T`, shareable across threads when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: `&RwLockWriteGuard` gives out only `&T`, shareable across threads when `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `data` points into the lock, which outlives `'a`; this guard counts as a
        // reader in the state word, so no writer (no `&mut T`) exists until it drops.
        unsafe { self.data.as_ref() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.raw.read_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Turns the write hold into a read hold, atomically: no writer can take the lock in
    /// between, so the reader sees exactly what it wrote. Readers waiting at the front of the
    /// queue are let in at once; a waiting writer keeps waiting, now for this reader too.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::sync::{RwLock, RwLockWriteGuard};
    /// let lock = RwLock::new(1);
    /// let mut w = lock.write();
    /// *w += 1;
    /// let r = RwLockWriteGuard::downgrade(w);
    /// assert_eq!(*r, 2);
    /// assert!(lock.try_read().is_some()); // other readers share it now
    /// assert!(lock.try_write().is_none());
    /// # });
    /// ```
    pub fn downgrade(s: Self) -> RwLockReadGuard<'a, T> {
        let lock = s.lock;
        std::mem::forget(s); // its hold becomes the read guard's: no write unlock
        lock.raw.downgrade();
        lock.read_guard()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds WRITER: no other reader or writer exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds WRITER and `&mut self` is the only path to it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.write_unlock();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// Waits (plain thread) until `n` waiters are queued on `lock`.
    fn queued(lock: &RwLock<()>, n: usize) {
        while lock.raw.queue.lock().len() < n {
            std::thread::yield_now();
        }
    }

    /// A queued writer stops new readers (writer preference), and the readers queued behind
    /// it are admitted together once it is done.
    #[test]
    fn queued_writer_blocks_new_readers() {
        let lock = Arc::new(RwLock::new(()));
        let order = Arc::new(AtomicUsize::new(0));
        let r = lock.read();
        let (l, o) = (lock.clone(), order.clone());
        let writer = std::thread::spawn(move || {
            let _w = l.write();
            o.fetch_add(1, SeqCst)
        });
        queued(&lock, 1);
        assert!(
            lock.try_read().is_none(),
            "a reader barged past a queued writer"
        );
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (l, o) = (lock.clone(), order.clone());
                std::thread::spawn(move || {
                    let _r = l.read();
                    o.fetch_add(1, SeqCst)
                })
            })
            .collect();
        queued(&lock, 3);
        drop(r);
        assert_eq!(writer.join().unwrap(), 0, "the writer goes first");
        let mut later: Vec<usize> = readers.into_iter().map(|t| t.join().unwrap()).collect();
        later.sort();
        assert_eq!(later, [1, 2]);
        assert!(lock.try_write().is_some());
    }
}
