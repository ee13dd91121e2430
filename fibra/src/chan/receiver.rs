//! `Receiver<T>`: the receiving half, blocking and non-blocking, and its iterators.

use std::fmt;
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{self, wake, Chan};
use super::error::{RecvError, RecvTimeoutError, TryRecvError};
use super::wait::{block, Outcome, Side, TOKEN};
use super::waiters::TIMED_OUT;
use crate::coop;

/// The receiving half of a channel; clone it for more consumers (each item goes to one).
///
/// Dropping the last `Receiver` drops every buffered item (once) and makes sends fail,
/// handing their values back.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded(8);
/// let rx2 = rx.clone();
/// for i in 0..4 { tx.send(i).unwrap(); }
/// assert_eq!(rx.recv().unwrap() + rx2.recv().unwrap(), 1);
/// # });
/// ```
pub struct Receiver<T> {
    pub(crate) chan: Arc<Chan<T>>,
}

impl<T> Receiver<T> {
    /// Receives an item, waiting while the channel is empty. The calling fiber parks (its
    /// worker runs others); a plain thread blocks.
    ///
    /// # Errors
    /// [`RecvError`] once the channel is empty and every sender is gone (items sent before
    /// that are still received first), or when the runtime is unwinding this fiber.
    ///
    /// # Memory ordering
    /// The `send` of the returned value happens-before this returns.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// fibra::spawn(move || tx.send(42).unwrap());
    /// assert_eq!(rx.recv(), Ok(42));
    /// assert!(rx.recv().is_err()); // the sender is gone
    /// # });
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Receives an item if one is available without waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], or [`TryRecvError::Disconnected`] when empty for good.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded();
    /// tx.send(5).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(5));
    /// assert!(rx.try_recv().is_err());
    /// # });
    /// ```
    ///
    /// Each call, whether it receives or not, counts against the calling fiber's
    /// [cooperative budget](crate::coop), so a fiber polling in a loop lets the others on its
    /// worker run (among them, perhaps, the sender it polls for).
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let res = self.try_recv_uncounted();
        coop::consume();
        res
    }

    /// `try_recv` without the budget: `select!` counts once for all its arms.
    pub(crate) fn try_recv_uncounted(&self) -> Result<T, TryRecvError> {
        let mut st = self.chan.lock();
        let (v, woken) = self.chan.try_recv_locked(&mut st, None)?;
        drop(st);
        wake(woken);
        Ok(v)
    }

    /// True if `self` and `other` receive from the same channel.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// let (_tx2, other) = fibra::chan::unbounded::<u8>();
    /// assert!(rx.same_channel(&rx.clone()));
    /// assert!(!rx.same_channel(&other));
    /// # });
    /// ```
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// Like [`recv`](Self::recv), but gives up after `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let (tx, rx) = fibra::chan::bounded::<u8>(1);
    /// assert!(rx.recv_timeout(Duration::from_millis(2)).is_err());
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.recv_timeout(Duration::from_millis(2)), Ok(1));
    /// # });
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Like [`recv_timeout`](Self::recv_timeout) with an absolute deadline.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::{Duration, Instant};
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// let deadline = Instant::now() + Duration::from_millis(3);
    /// assert_eq!(rx.recv_deadline(deadline), Err(fibra::chan::RecvTimeoutError::Timeout));
    /// assert!(Instant::now() >= deadline);
    /// # });
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let chan = &*self.chan;
        loop {
            let mut st = chan.lock();
            match chan.try_recv_locked(&mut st, None) {
                Ok((v, woken)) => {
                    drop(st);
                    wake(woken);
                    coop::consume(); // done without parking: counts against the fiber's budget
                    return Ok(v);
                }
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            // A timer channel's next item is due then: wake to take it.
            let wake_at = earliest(deadline, chan.timer_due(&st));
            let (token, mut st) = match block(chan, st, Side::Recv, None, wake_at) {
                Outcome::Claimed(Some(v)) => return Ok(v), // a sender's claim handed it over
                // Claimed empty-handed: every sender is gone; drain what is left first.
                Outcome::Claimed(None) => (TOKEN, chan.lock()),
                Outcome::GaveUp(token, packet, st) => {
                    debug_assert!(
                        packet.is_none(),
                        "our own claim won: nobody handed us a value"
                    );
                    (token, st)
                }
            };
            // Disconnected, timed out or cancelled: take what is there, if anything.
            match chan.try_recv_locked(&mut st, None) {
                Ok((v, woken)) => {
                    drop(st);
                    wake(woken);
                    return Ok(v);
                }
                Err(TryRecvError::Empty) if token == TIMED_OUT => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    // Woken for a timer's item that another receiver took: wait again.
                }
                // Disconnection (only it claims a receiver empty-handed) or cancellation.
                Err(_) => return Err(RecvTimeoutError::Disconnected),
            }
        }
    }

    /// A blocking iterator: yields items until the channel is empty and every sender is
    /// gone.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(2);
    /// fibra::spawn(move || for i in 0..5 { tx.send(i).unwrap() });
    /// assert_eq!(rx.iter().sum::<i32>(), 10);
    /// # });
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator: yields what can be received without waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
    /// # });
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Items buffered now (a snapshot).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(4);
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.chan.lock().buf.len()
    }

    /// True if nothing is buffered.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// assert!(rx.is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the buffer is at capacity (always for `bounded(0)`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::bounded::<u8>(0);
    /// assert!(rx.is_full());
    /// # });
    /// ```
    pub fn is_full(&self) -> bool {
        self.len() >= self.chan.cap
    }

    /// The bound, or `None` for an unbounded channel.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert_eq!(fibra::chan::bounded::<u8>(0).1.capacity(), Some(0));
    /// # });
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        (self.chan.cap != channel::UNBOUNDED).then_some(self.chan.cap)
    }
}

/// The earlier of two optional deadlines (`None`: never).
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

// As crossbeam-channel's: a panic in the middle of an operation leaves the channel usable (its
// critical sections run no user code, `channel.rs`), so a caught panic observes no broken
// state through a `Receiver`.
impl<T> UnwindSafe for Receiver<T> {}
impl<T> RefUnwindSafe for Receiver<T> {}

impl<T> Clone for Receiver<T> {
    /// Another receiver of the same channel (items are shared out, not duplicated).
    fn clone(&self) -> Self {
        channel::add_receiver(&self.chan);
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        channel::drop_receiver(&self.chan);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// The iterator of [`Receiver::iter`]: `recv` until disconnected.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// tx.send('a').unwrap();
/// drop(tx);
/// let it: fibra::chan::Iter<'_, char> = rx.iter();
/// assert_eq!(it.collect::<String>(), "a");
/// # });
/// ```
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// The iterator of [`Receiver::try_iter`]: `try_recv` until it fails.
///
/// ```
/// # fibra::run(|| {
/// let (_tx, rx) = fibra::chan::unbounded::<u8>();
/// let mut it: fibra::chan::TryIter<'_, u8> = rx.try_iter();
/// assert_eq!(it.next(), None);
/// # });
/// ```
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// The iterator of `Receiver::into_iter`: an owning [`Iter`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded(1);
/// fibra::spawn(move || { tx.send(1).unwrap(); tx.send(2).unwrap(); });
/// let it: fibra::chan::IntoIter<i32> = rx.into_iter();
/// assert_eq!(it.collect::<Vec<_>>(), [1, 2]);
/// # });
/// ```
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
