//! `Sender<T>`: the sending half, blocking and non-blocking.

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{self, wake, Chan};
use super::error::{SendError, SendTimeoutError, TrySendError};
use super::wait::{block, Outcome, Side};
use super::waiters::TIMED_OUT;
use crate::coop;

/// The sending half of a channel; clone it for more producers.
///
/// The channel is disconnected for receivers once every `Sender` is dropped: they drain what
/// is buffered, then get [`RecvError`](super::RecvError).
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// let tx2 = tx.clone();
/// fibra::spawn(move || tx2.send(1).unwrap());
/// tx.send(2).unwrap();
/// drop(tx);
/// let mut got: Vec<i32> = rx.iter().collect();
/// got.sort();
/// assert_eq!(got, [1, 2]);
/// # });
/// ```
pub struct Sender<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (for `bounded(0)`: until a receiver
    /// takes it). The calling fiber parks (its worker runs others); a plain thread blocks.
    ///
    /// # Errors
    /// [`SendError`] with the value if every receiver is gone (also when the runtime is
    /// shutting down and unwinding this fiber).
    ///
    /// # Memory ordering
    /// A `send` happens-before the `recv` that returns its value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(0); // rendezvous
    /// let h = fibra::spawn(move || rx.recv().unwrap());
    /// tx.send("hello").unwrap(); // returns once the receiver has it
    /// assert_eq!(h.join().unwrap(), "hello");
    /// # });
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_until(value, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Sends `value` if that is possible without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] (no room; for `bounded(0)`: no receiver waiting) or
    /// [`TrySendError::Disconnected`], each with the value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::bounded(1);
    /// assert!(tx.try_send(1).is_ok());
    /// assert_eq!(tx.try_send(2).unwrap_err().into_inner(), 2);
    /// # });
    /// ```
    ///
    /// Each call, whether it sends or not, counts against the calling fiber's
    /// [cooperative budget](crate::coop), so a fiber polling in a loop lets the others on its
    /// worker run (among them, perhaps, the receiver it polls for).
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let res = self.try_send_uncounted(value);
        coop::consume();
        res
    }

    /// `try_send` without the budget: `select!` counts once for all its arms.
    pub(crate) fn try_send_uncounted(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut st = self.chan.lock();
        let woken = self.chan.try_send_locked(&mut st, value, None)?;
        drop(st);
        wake(woken);
        Ok(())
    }

    /// Like [`send`](Self::send), but gives up after `timeout` and hands the value back.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`], with the value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// tx.send(1).unwrap();
    /// let back = tx.send_timeout(2, Duration::from_millis(5)).unwrap_err().into_inner();
    /// assert_eq!((back, rx.recv().unwrap()), (2, 1));
    /// # });
    /// ```
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Instant::now().checked_add(timeout))
    }

    /// Like [`send_timeout`](Self::send_timeout) with an absolute deadline.
    ///
    /// # Errors
    /// As [`send_timeout`](Self::send_timeout).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::{Duration, Instant};
    /// let (tx, _rx) = fibra::chan::bounded(0);
    /// let deadline = Instant::now() + Duration::from_millis(3);
    /// assert!(tx.send_deadline('x', deadline).is_err());
    /// assert!(Instant::now() >= deadline);
    /// # });
    /// ```
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Some(deadline))
    }

    fn send_until(&self, value: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let chan = &*self.chan;
        let mut st = chan.lock();
        let value = match chan.try_send_locked(&mut st, value, None) {
            Ok(woken) => {
                drop(st);
                wake(woken);
                coop::consume(); // done without parking: counts against the fiber's budget
                return Ok(());
            }
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Full(v)) => v,
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(SendTimeoutError::Timeout(value));
        }
        // The packet tells the outcome: emptied by a receiver's claim, else still ours.
        match block(chan, st, Side::Send, Some(value), deadline) {
            Outcome::Claimed(None) => Ok(()),
            Outcome::Claimed(Some(v)) => Err(SendTimeoutError::Disconnected(v)), // receivers gone
            Outcome::GaveUp(token, packet, st) => {
                drop(st);
                match packet {
                    // Our own claim won the signal, so no receiver took the value.
                    None => fatal!("chan::send: a timed-out sender's node had no value"),
                    Some(v) if token == TIMED_OUT => Err(SendTimeoutError::Timeout(v)),
                    Some(v) => Err(SendTimeoutError::Disconnected(v)), // cancelled
                }
            }
        }
    }

    /// Items buffered now (a snapshot; 0 for `bounded(0)`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::unbounded();
    /// tx.send(()).unwrap();
    /// assert_eq!(tx.len(), 1);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.chan.lock().buf.len()
    }

    /// True if nothing is buffered.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::bounded::<u8>(4);
    /// assert!(tx.is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the buffer is at capacity (always for `bounded(0)`; never for `unbounded()`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::bounded(1);
    /// tx.send(1).unwrap();
    /// assert!(tx.is_full());
    /// # });
    /// ```
    pub fn is_full(&self) -> bool {
        self.len() >= self.chan.cap
    }

    /// The bound, or `None` for an unbounded channel.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert_eq!(fibra::chan::bounded::<u8>(3).0.capacity(), Some(3));
    /// assert_eq!(fibra::chan::unbounded::<u8>().0.capacity(), None);
    /// # });
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        (self.chan.cap != channel::UNBOUNDED).then_some(self.chan.cap)
    }
}

impl<T> Sender<T> {
    /// True if `self` and `other` send to the same channel.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::bounded::<u8>(1);
    /// let (other, _rx2) = fibra::chan::bounded::<u8>(1);
    /// assert!(tx.same_channel(&tx.clone()));
    /// assert!(!tx.same_channel(&other));
    /// # });
    /// ```
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

// As crossbeam-channel's: a panic in the middle of an operation leaves the channel usable (its
// critical sections run no user code, `channel.rs`), so a caught panic observes no broken
// state through a `Sender`.
impl<T> UnwindSafe for Sender<T> {}
impl<T> RefUnwindSafe for Sender<T> {}

impl<T> Clone for Sender<T> {
    /// Another sender of the same channel.
    fn clone(&self) -> Self {
        channel::add_sender(&self.chan);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        channel::drop_sender(&self.chan);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}
