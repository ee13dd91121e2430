//! `RwLock<T>`: many readers or one writer, with one FIFO queue so writers never starve.
//!
//! # State word
//! `WRITER` (bit 0): a writer holds it. `QUEUED` (bit 1): the wait list may hold waiters (set
//! and cleared only under the queue lock). Bits 2..: the number of readers holding it.
//! ```text
//! read:          no WRITER, no QUEUED -> CAS s -> s + READER      (a waiting writer stops readers)
//! write:         CAS 0 -> WRITER
//! slow path:     under the queue lock re-check; else CAS s -> s|QUEUED, push (waiter, READ/WRITE)
//! read unlock:   fetch_sub READER; the last reader out with QUEUED set runs `grant`
//! write unlock:  CAS WRITER -> 0; if QUEUED, clear WRITER and run `grant` under the queue lock
//! downgrade:     fetch_add READER - WRITER (WRITER -> one READER, QUEUED kept); if QUEUED,
//!                `grant` under the queue lock (admits the readers at the front)
//! grant:         front is a writer and nobody holds -> add WRITER, claim it;
//!                front is a reader and no writer holds -> add READER, claim it; repeat
//! ```
//! `grant` adds to the state *before* claiming the waiter (and undoes it if the claim finds the
//! waiter gone): a claimed waiter may run at once, even before it is woken (a spurious park
//! return), and must find its hold already counted. While `QUEUED` is set every fast path
//! fails, so under the queue lock only readers' `fetch_sub`s race with `grant`.
//!
//! Fairness: task-fair (FIFO). A writer waits for the readers ahead of it; readers behind a
//! waiting writer wait for it. Consecutive readers at the front are admitted together.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wait;
use super::waiter::{WaitList, Waiter};
use crate::loom::lock::Mutex as QueueLock;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::park::ParkReason;

const WRITER: usize = 1;
const QUEUED: usize = 2;
const READER: usize = 4;
/// Wait-list tokens.
const READ: usize = 1;
const WRITE: usize = 2;

struct RawRwLock {
    state: AtomicUsize,
    queue: QueueLock<WaitList>,
}

// The read guard holds `&RawRwLock`. Its state changes only inside this file's code, which
// never unwinds midway (no user code runs under the queue lock).
impl RefUnwindSafe for RawRwLock {}

impl RawRwLock {
    fn try_read(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while s & (WRITER | QUEUED) == 0 {
            // Acquire pairs with the last writer's Release unlock.
            match self
                .state
                .compare_exchange_weak(s, s + READER, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }

    fn try_write(&self) -> bool {
        // Acquire pairs with the Release of every earlier unlock (readers' `fetch_sub`s form a
        // release sequence ending in the 0 we read).
        self.state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_ok()
    }

    /// Locks for `token` (READ/WRITE); false on timeout or cancellation.
    fn lock(&self, token: usize, deadline: Option<Instant>) -> bool {
        let fast = if token == READ {
            self.try_read()
        } else {
            self.try_write()
        };
        fast || self.lock_slow(token, deadline)
    }

    #[cold]
    fn lock_slow(&self, token: usize, deadline: Option<Instant>) -> bool {
        let reason = if token == READ {
            ParkReason::RwLockRead
        } else {
            ParkReason::RwLockWrite
        };
        let park = |waiter: &Arc<Waiter>| {
            let abandon = || {
                wait::abandon(waiter, || self.withdraw(waiter), |t| self.unlock(t));
            };
            wait::wait(waiter, reason, deadline, abandon)
        };
        self.lock_queued(token, Waiter::current(), park)
    }

    /// Queues `waiter` for `token` unless the lock is free now, then waits with `park` (which
    /// returns the claiming token; the loom models spin instead of parking).
    fn lock_queued(
        &self,
        token: usize,
        waiter: Arc<Waiter>,
        park: impl FnOnce(&Arc<Waiter>) -> usize,
    ) -> bool {
        if self.enqueue(&waiter, token) {
            return true;
        }
        if park(&waiter) == token {
            return true; // granted: `grant` counted us before its claim (Release)
        }
        self.withdraw(&waiter);
        false
    }

    fn enqueue(&self, waiter: &Arc<Waiter>, token: usize) -> bool {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let free = if token == READ {
                s & (WRITER | QUEUED) == 0
            } else {
                s == 0
            };
            let (new, order) = match (free, token) {
                (true, READ) => (s + READER, Acquire), // pairs as in `try_read`/`try_write`
                (true, _) => (s | WRITER, Acquire),
                (false, _) => (s | QUEUED, Relaxed), // a flag; the queue lock orders the push
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if free => return true,
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        queue.push(waiter.clone(), token);
        false
    }

    fn unlock(&self, token: usize) {
        if token == READ {
            self.read_unlock()
        } else {
            self.write_unlock()
        }
    }

    fn read_unlock(&self) {
        // AcqRel: Release publishes our reads-done to the next writer; Acquire lets the last
        // reader, who may run `grant`, carry the other readers' Releases to that writer.
        let prev = self.state.fetch_sub(READER, AcqRel);
        if prev == READER | QUEUED {
            self.grant(&mut self.queue.lock());
        }
    }

    fn write_unlock(&self) {
        // Release pairs with the Acquire of the next `try_read`/`try_write`.
        if self
            .state
            .compare_exchange(WRITER, 0, Release, Relaxed)
            .is_err()
        {
            let mut queue = self.queue.lock();
            self.state.fetch_and(!WRITER, Release); // QUEUED is set: no fast path races us
            self.grant(&mut queue);
        }
    }

    /// The writer only: turns its WRITER into one READER without letting a writer in between,
    /// then admits the readers waiting at the front (a writer there keeps waiting for us).
    fn downgrade(&self) {
        // Release pairs with the Acquire of the readers admitted next (`try_read`'s CAS or
        // `grant`'s load): our writes happen-before their reads. WRITER is bit 0 and held, so
        // adding READER - WRITER clears it without a borrow and keeps QUEUED; the only other
        // writers of the word meanwhile set or clear QUEUED, and this one add races none of them.
        let prev = self.state.fetch_add(READER - WRITER, Release);
        if prev & QUEUED != 0 {
            self.grant(&mut self.queue.lock());
        }
    }

    /// Under the queue lock: admits waiters from the front while they fit, then clears QUEUED
    /// if the list emptied.
    fn grant(&self, queue: &mut WaitList) {
        loop {
            // Acquire: our view includes every holder's Release before we hand the lock on.
            let s = self.state.load(Acquire);
            if s & QUEUED == 0 || s & WRITER != 0 {
                break;
            }
            let (add, want) = match queue.front() {
                None => break,
                Some(WRITE) if s >= READER => break, // the last reader out grants it
                Some(WRITE) => (WRITER, WRITE),
                Some(_) => (READER, READ),
            };
            self.state.fetch_add(add, Relaxed);
            // The claim's Release publishes the data to the waiter (its `selected` Acquires).
            if queue.notify_front_if(|t| t == want).is_none() {
                self.state.fetch_sub(add, Relaxed); // it timed out just now; look again
            }
        }
        if queue.is_empty() {
            self.state.fetch_and(!QUEUED, Relaxed);
        }
    }

    /// After the waiter claimed itself: removes its entry; the waiters behind may now fit.
    fn withdraw(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.queue.lock();
        queue.remove(waiter);
        self.grant(&mut queue);
    }
}

/// A reader-writer lock that parks waiting fibers (or blocks waiting threads).
///
/// Waiters queue in FIFO order; a waiting writer stops new readers, so writers do not starve,
/// and consecutive readers at the front are admitted together. Not poisoned by panics, and
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
                raw: RawRwLock {
                    state: AtomicUsize::new(0),
                    queue: QueueLock::new(WaitList::new()),
                },
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
        if !self.raw.lock(READ, None) {
            wait::while_cancelled("RwLock::read", || self.raw.try_read().then_some(()));
        }
        self.read_guard()
    }

    /// Locks for exclusive writing, parking until every earlier holder and waiter is done.
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
        if !self.raw.lock(WRITE, None) {
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
            .lock(READ, wait::deadline(timeout))
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
            .lock(WRITE, wait::deadline(timeout))
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

#[cfg(all(test, loom))]
mod loom_tests;
