//! A watch channel: one latest value that receivers read and wait to change (tokio's
//! `watch`), between fibers, plain threads and `async` code.
//!
//! ```
//! use fibra::chan::watch;
//! # fibra::run(|| {
//! let (tx, mut rx) = watch::channel("starting");
//! let observer = fibra::spawn(move || {
//!     let mut seen = vec![*rx.borrow_and_update()];
//!     while rx.changed().is_ok() {
//!         seen.push(*rx.borrow_and_update());
//!     }
//!     seen // ends when the sender is gone
//! });
//! tx.send_replace("running");
//! drop(tx);
//! let seen = observer.join().unwrap();
//! assert_eq!(seen.last(), Some(&"running")); // intermediate values may be skipped
//! # });
//! ```
//!
//! # Versions
//! Every change (`send`, `send_modify`, ...) bumps a version; each receiver remembers the
//! version it last marked seen ([`Receiver::borrow_and_update`], [`Receiver::changed`]). A
//! receiver never sees values it was too slow for, only the latest, so a watch channel never
//! lags and never grows. When the last sender goes, [`Receiver::changed`] still reports a
//! change not yet seen, then [`RecvError`]; the last value stays readable.
//!
//! # Design
//! The value sits in a fibra [`RwLock`]: `borrow` takes a read lock, a change takes the write
//! lock, so a fiber waiting for either parks instead of blocking its worker. A second, short
//! lock guards the version, the counts of senders and receivers, and the receivers waiting in
//! `changed` (`sync/change.rs`):
//! ```text
//! change:            write lock; modify; lock: version += 1; unlock; write unlock;
//!                    lock: notify_all; unlock
//! borrow_and_update: read lock; lock: seen = version; unlock   (the value and the version
//!                    match: the version moves only under the write lock)
//! changed:           lock: version != seen -> seen = version, done; no senders -> error;
//!                    else wait for the next notify_all
//! ```
//! Waiters are woken after the write unlock, so they do not queue behind it on the `RwLock`.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use super::error::{RecvError, RecvTimeoutError, SendError};
use crate::coop;
use crate::loom::lock::Mutex as Lock;
use crate::park::ParkReason;
use crate::sync::change::{self, AsyncWait, GaveUp};
use crate::sync::waiter::WaitList;
use crate::sync::{RwLock, RwLockReadGuard};

/// Creates a watch channel holding `init`. Receivers start with `init` marked seen; more come
/// from [`Sender::subscribe`] or by cloning a [`Receiver`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::watch::channel(0);
/// assert_eq!(*rx.borrow(), 0);
/// tx.send(1).unwrap();
/// assert_eq!(*rx.borrow(), 1);
/// # });
/// ```
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(init),
        state: Lock::new(State {
            version: 0,
            senders: 1,
            receivers: 1,
            waiters: WaitList::new(),
        }),
    });
    let rx = Receiver {
        shared: shared.clone(),
        seen: 0,
    };
    (Sender { shared }, rx)
}

struct State {
    /// Bumped by every change, under the value's write lock.
    version: u64,
    senders: usize,
    receivers: usize,
    /// Receivers waiting in `changed` (or for the last sender to go).
    waiters: WaitList,
}

struct Shared<T> {
    value: RwLock<T>,
    state: Lock<State>,
}

impl<T> Shared<T> {
    /// The value, read-locked, with the version it is at.
    fn read(&self) -> (RwLockReadGuard<'_, T>, u64) {
        let guard = self.value.read();
        let version = self.state.lock().version;
        (guard, version)
    }

    /// Under the value's write lock: a new version.
    fn bump(&self) {
        self.state.lock().version += 1;
    }

    /// After the write unlock: wakes every receiver waiting in `changed`.
    fn notify(&self) {
        self.state.lock().waiters.notify_all();
    }
}

impl State {
    /// The next step for a receiver that has seen `*seen`: `Ok` if there is a newer version
    /// (now marked seen), the error once there never will be, or `None`: wait.
    fn changed(&mut self, seen: &mut u64) -> Option<Result<(), RecvError>> {
        if *seen != self.version {
            *seen = self.version;
            Some(Ok(()))
        } else if self.senders == 0 {
            Some(Err(RecvError))
        } else {
            None
        }
    }
}

/// The sending half of a [`watch` channel](self); clone it for more senders. It can read the
/// value too ([`borrow`](Sender::borrow)).
///
/// The value type must be `Send + Sync` for the channel to cross threads: receivers on
/// several threads read it at the same time.
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let (tx, _rx) = fibra::chan::watch::channel(std::cell::Cell::new(0));
/// assert_send(tx);
/// ```
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::watch::channel(vec![1]);
/// tx.send_modify(|v| v.push(2));
/// assert_eq!(*rx.borrow(), [1, 2]);
/// # });
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Replaces the value and notifies every receiver, if there is one.
    ///
    /// # Errors
    /// [`SendError`] with the value if every receiver is gone (the channel keeps its old
    /// value; [`send_replace`](Sender::send_replace) stores it anyway).
    ///
    /// # Memory ordering
    /// A change happens-before every `borrow` that sees it, and before the `changed` it
    /// completes returns.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(1);
    /// tx.send(2).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(3).unwrap_err().into_inner(), 3);
    /// assert_eq!(*tx.borrow(), 2);
    /// # });
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.receiver_count() == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value, whether or not anyone receives, notifies every receiver, and
    /// returns the old value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::watch::channel(1);
    /// assert_eq!(tx.send_replace(2), 1);
    /// assert_eq!(*tx.borrow(), 2);
    /// # });
    /// ```
    pub fn send_replace(&self, value: T) -> T {
        let mut old = Some(value);
        self.send_modify(|v| old = Some(std::mem::replace(v, old.take().expect("once"))));
        old.expect("swapped in")
    }

    /// Modifies the value in place under the write lock and notifies every receiver.
    ///
    /// # Panics
    /// If `modify` panics; the receivers are notified anyway, since the value may have
    /// changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(String::from("a"));
    /// tx.send_modify(|s| s.push('b'));
    /// assert_eq!(*rx.borrow(), "ab");
    /// # });
    /// ```
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|v| {
            modify(v);
            true
        });
    }

    /// Runs `modify` on the value under the write lock; if it returns true, that is a change
    /// and every receiver is notified, else receivers see nothing. Returns what `modify`
    /// returned.
    ///
    /// # Panics
    /// If `modify` panics; the receivers are then notified, since the value may have changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(5);
    /// assert!(!tx.send_if_modified(|v| { if *v > 10 { *v = 0; true } else { false } }));
    /// assert!(!rx.has_changed().unwrap());
    /// assert!(tx.send_if_modified(|v| { *v += 1; true }));
    /// assert!(rx.has_changed().unwrap());
    /// # });
    /// ```
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        /// If `modify` unwinds, the value may be half-changed: publish it as a change, so
        /// nobody keeps an old view of a value that moved.
        struct OnUnwind<'a, T>(&'a Shared<T>);
        impl<T> Drop for OnUnwind<'_, T> {
            fn drop(&mut self) {
                self.0.bump(); // the write guard drops after us: still under the write lock
                self.0.notify();
            }
        }
        let shared = &*self.shared;
        let mut value = shared.value.write();
        let on_unwind = OnUnwind(shared);
        let modified = modify(&mut value);
        std::mem::forget(on_unwind);
        if modified {
            shared.bump();
        }
        drop(value);
        if modified {
            shared.notify();
        }
        modified
    }

    /// Reads the value (a read lock: sends wait until the [`Ref`] is dropped).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::watch::channel(3);
    /// assert_eq!(*tx.borrow(), 3);
    /// # });
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.value.read(),
            changed: false,
        }
    }

    /// A new receiver, with the current value marked seen.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(0);
    /// drop(rx);
    /// let mut rx = tx.subscribe();
    /// assert!(!rx.has_changed().unwrap());
    /// tx.send(1).unwrap();
    /// assert!(rx.has_changed().unwrap());
    /// # });
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        let mut st = self.shared.state.lock();
        st.receivers += 1;
        let seen = st.version;
        drop(st);
        Receiver {
            shared: self.shared.clone(),
            seen,
        }
    }

    /// The number of receivers now.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(());
    /// let rx2 = rx.clone();
    /// assert_eq!(tx.receiver_count(), 2);
    /// # drop(rx2);
    /// # });
    /// ```
    pub fn receiver_count(&self) -> usize {
        self.shared.state.lock().receivers
    }

    /// True if every receiver is gone.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(());
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// # });
    /// ```
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }
}

impl<T> Clone for Sender<T> {
    /// Another sender of the same channel.
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.senders -= 1;
        if st.senders == 0 {
            st.waiters.notify_all(); // waiting receivers now see the error
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Sender")
            .field("value", &self.shared.value)
            .finish_non_exhaustive()
    }
}

/// The receiving half of a [`watch` channel](self): reads the latest value and waits for it
/// to change. Clone it for more receivers (a clone starts with the same version seen).
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::watch::channel(0);
/// let waiter = fibra::spawn(move || { rx.changed().unwrap(); *rx.borrow() });
/// tx.send(42).unwrap();
/// assert_eq!(waiter.join().unwrap(), 42);
/// # });
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver last marked seen.
    seen: u64,
}

impl<T> Receiver<T> {
    /// Reads the latest value without marking it seen (a read lock: sends wait until the
    /// [`Ref`] is dropped, so do not hold it across a wait for the sender).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::watch::channel(1);
    /// tx.send(2).unwrap();
    /// let value = rx.borrow();
    /// assert_eq!(*value, 2);
    /// assert!(value.has_changed()); // not marked seen
    /// # });
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        let (guard, version) = self.shared.read();
        Ref {
            guard,
            changed: version != self.seen,
        }
    }

    /// Reads the latest value and marks it seen: [`changed`](Receiver::changed) then waits
    /// for the next change.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(1);
    /// tx.send(2).unwrap();
    /// assert!(rx.borrow_and_update().has_changed());
    /// assert!(!rx.has_changed().unwrap());
    /// # });
    /// ```
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let (guard, version) = self.shared.read();
        let changed = version != self.seen;
        self.seen = version;
        Ref { guard, changed }
    }

    /// True if there is a value this receiver has not marked seen.
    ///
    /// # Errors
    /// [`RecvError`] if every sender is gone and the latest value was seen: nothing will
    /// change any more.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(1);
    /// assert_eq!(rx.has_changed(), Ok(false));
    /// tx.send(2).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.has_changed(), Ok(true)); // the last change is still news
    /// rx.borrow_and_update();
    /// assert!(rx.has_changed().is_err());
    /// # });
    /// ```
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let mut seen = self.seen;
        match self.shared.state.lock().changed(&mut seen) {
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(e),
            None => Ok(false),
        }
    }

    /// Waits for a value this receiver has not seen, and marks it seen (read it with
    /// [`borrow`](Receiver::borrow)). Returns at once if there already is one.
    ///
    /// # Errors
    /// [`RecvError`] once every sender is gone and the latest value was seen, or when the
    /// runtime is unwinding this fiber.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(0);
    /// fibra::spawn(move || tx.send(1).unwrap());
    /// rx.changed().unwrap();
    /// assert_eq!(*rx.borrow(), 1);
    /// assert!(rx.changed().is_err()); // the sender is gone
    /// # });
    /// ```
    pub fn changed(&mut self) -> Result<(), RecvError> {
        self.changed_until(None).map_err(|_| RecvError)
    }

    /// Like [`changed`](Receiver::changed), but gives up after `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`], or [`RecvTimeoutError::Disconnected`] as
    /// [`changed`](Receiver::changed)'s error.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::chan::watch::{channel, RecvTimeoutError};
    /// use std::time::Duration;
    /// let (_tx, mut rx) = channel(0);
    /// assert_eq!(rx.changed_timeout(Duration::from_millis(2)), Err(RecvTimeoutError::Timeout));
    /// # });
    /// ```
    pub fn changed_timeout(&mut self, timeout: Duration) -> Result<(), RecvTimeoutError> {
        self.changed_until(Instant::now().checked_add(timeout))
    }

    /// Like [`changed_timeout`](Receiver::changed_timeout) with an absolute deadline.
    ///
    /// # Errors
    /// As [`changed_timeout`](Receiver::changed_timeout).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::{Duration, Instant};
    /// let (tx, mut rx) = fibra::chan::watch::channel(0);
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.changed_deadline(Instant::now() + Duration::from_secs(1)), Ok(()));
    /// # });
    /// ```
    pub fn changed_deadline(&mut self, deadline: Instant) -> Result<(), RecvTimeoutError> {
        self.changed_until(Some(deadline))
    }

    /// Waits for a change from `async` code (as [`changed`](Receiver::changed)).
    ///
    /// # Errors
    /// As [`changed`](Receiver::changed).
    ///
    /// # Cancel safety
    /// Dropping the future loses nothing: a change is marked seen only by the poll that
    /// returns it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(0);
    /// fibra::spawn(move || tx.send(5).unwrap());
    /// fibra::block_on(rx.changed_async()).unwrap();
    /// assert_eq!(*rx.borrow(), 5);
    /// # });
    /// ```
    pub fn changed_async(&mut self) -> ChangedFuture<'_, T> {
        ChangedFuture {
            rx: self,
            wait: AsyncWait::new(),
        }
    }

    /// Waits until the value satisfies `accept` (checking the current value first), marks it
    /// seen and returns it, still read-locked, so it is the value `accept` saw.
    ///
    /// # Errors
    /// [`RecvError`] if every sender goes before a value is accepted.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(0);
    /// fibra::spawn(move || for i in 1..=10 { tx.send(i).unwrap(); fibra::yield_now(); });
    /// let big = rx.wait_for(|v| *v >= 5).unwrap();
    /// assert!(*big >= 5);
    /// # });
    /// ```
    pub fn wait_for(
        &mut self,
        mut accept: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            let (guard, version) = self.shared.read();
            let changed = version != self.seen;
            self.seen = version;
            if accept(&guard) {
                return Ok(Ref { guard, changed });
            }
            drop(guard);
            // Returns at once if a change landed since the read; fails once closed and seen.
            changed_until(&self.shared, &mut self.seen, None).map_err(|_| RecvError)?;
        }
    }

    fn changed_until(&mut self, deadline: Option<Instant>) -> Result<(), RecvTimeoutError> {
        changed_until(&self.shared, &mut self.seen, deadline)
    }
}

/// `changed` for a receiver that has seen `*seen`.
fn changed_until<T>(
    shared: &Shared<T>,
    seen: &mut u64,
    deadline: Option<Instant>,
) -> Result<(), RecvTimeoutError> {
    // Bound first, so the guard is gone before `coop::consume` may yield (broadcast.rs).
    let step = shared.state.lock().changed(seen);
    if let Some(step) = step {
        coop::consume(); // done without parking: counts against the fiber's budget
        return step.map_err(RecvTimeoutError::from);
    }
    let waited = change::block_until(
        &shared.state,
        |st| &mut st.waiters,
        |st| st.changed(seen),
        ParkReason::ChanRecv,
        deadline,
        std::ptr::from_ref(shared) as usize,
    );
    match waited {
        Ok(step) => step.map_err(RecvTimeoutError::from),
        Err(GaveUp::TimedOut) => Err(RecvTimeoutError::Timeout),
        Err(GaveUp::Cancelled) => Err(RecvTimeoutError::Disconnected),
    }
}

impl<T> Clone for Receiver<T> {
    /// Another receiver of the same channel, with the same version seen.
    fn clone(&self) -> Self {
        self.shared.state.lock().receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.state.lock().receivers -= 1;
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Receiver")
            .field("value", &self.shared.value)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

/// The value of a [`watch` channel](self), read-locked: sends wait until it is dropped.
///
/// `!Send`, as the read guard it holds.
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let (_tx, rx) = fibra::chan::watch::channel(0);
/// assert_send(rx.borrow());
/// ```
/// ```
/// # fibra::run(|| {
/// let (_tx, rx) = fibra::chan::watch::channel(String::from("v"));
/// let value: fibra::chan::watch::Ref<'_, String> = rx.borrow();
/// assert_eq!(value.len(), 1);
/// # });
/// ```
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    changed: bool,
}

impl<T> Ref<'_, T> {
    /// True if the receiver had not marked this value seen when it borrowed it (always false
    /// for [`Sender::borrow`]).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::watch::channel(0);
    /// tx.send(1).unwrap();
    /// assert!(rx.borrow_and_update().has_changed());
    /// assert!(!rx.borrow_and_update().has_changed());
    /// # });
    /// ```
    pub fn has_changed(&self) -> bool {
        self.changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The future of [`Receiver::changed_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::watch::channel(0);
/// tx.send(1).unwrap();
/// let fut: fibra::chan::watch::ChangedFuture<'_, i32> = rx.changed_async();
/// assert_eq!(fibra::block_on(fut), Ok(()));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct ChangedFuture<'a, T> {
    rx: &'a mut Receiver<T>,
    wait: AsyncWait,
}

impl<T> Future for ChangedFuture<'_, T> {
    type Output = Result<(), RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut st = this.rx.shared.state.lock();
        match st.changed(&mut this.rx.seen) {
            Some(step) => {
                this.wait.cancel(&mut st.waiters);
                Poll::Ready(step)
            }
            None => {
                this.wait.register(&mut st.waiters, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for ChangedFuture<'_, T> {
    fn drop(&mut self) {
        if self.wait.is_queued() {
            self.wait.cancel(&mut self.rx.shared.state.lock().waiters);
        }
    }
}

impl<T> fmt::Debug for ChangedFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::ChangedFuture")
            .field("registered", &self.wait.is_queued())
            .finish_non_exhaustive()
    }
}
