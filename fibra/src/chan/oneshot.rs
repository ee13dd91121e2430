//! `oneshot()`: one value, once. Single-use halves over a one-slot channel (so the one send
//! never waits, and the receiver works with `select!` and `async` like any other).

use std::fmt;
use std::time::{Duration, Instant};

use super::error::{RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use super::future::RecvFuture;

/// Creates a one-shot channel: [`OneshotSender::send`] consumes the sender, so exactly one
/// value can travel. The receiver gets [`RecvError`] if the sender is dropped unused.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::oneshot();
/// fibra::spawn(move || tx.send(6 * 7).unwrap());
/// assert_eq!(rx.recv(), Ok(42));
/// # });
/// ```
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let (tx, rx) = super::bounded(1);
    (OneshotSender { tx }, OneshotReceiver { rx })
}

/// The sending half of [`oneshot`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::oneshot::<u8>();
/// drop(tx); // never sent
/// assert!(rx.recv().is_err());
/// # });
/// ```
pub struct OneshotSender<T> {
    tx: super::Sender<T>,
}

impl<T> OneshotSender<T> {
    /// Sends the value without waiting.
    ///
    /// # Errors
    /// [`SendError`] with the value if the receiver is gone.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::oneshot();
    /// drop(rx);
    /// assert_eq!(tx.send(1).unwrap_err().into_inner(), 1);
    /// # });
    /// ```
    pub fn send(self, value: T) -> Result<(), SendError<T>> {
        match self.tx.try_send(value) {
            Ok(()) => Ok(()),
            // The slot is free: this is the only send there will ever be.
            Err(TrySendError::Disconnected(v) | TrySendError::Full(v)) => Err(SendError(v)),
        }
    }
}

/// The receiving half of [`oneshot`]; usable in `select!` as `recv(rx)`.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::oneshot();
/// tx.send("done").unwrap();
/// fibra::select! { recv(rx) -> msg => assert_eq!(msg, Ok("done")) }
/// # });
/// ```
pub struct OneshotReceiver<T> {
    pub(crate) rx: super::Receiver<T>,
}

impl<T> OneshotReceiver<T> {
    /// Waits for the value.
    ///
    /// # Errors
    /// [`RecvError`] if the sender was dropped without sending.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::oneshot();
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.recv(), Ok(1));
    /// # });
    /// ```
    pub fn recv(self) -> Result<T, RecvError> {
        self.rx.recv()
    }

    /// Takes the value if it has arrived.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if not yet, [`TryRecvError::Disconnected`] if never.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::oneshot();
    /// assert!(rx.try_recv().is_err());
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// # });
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// Waits for the value at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] or [`RecvTimeoutError::Disconnected`].
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::oneshot::<u8>();
    /// assert!(rx.recv_timeout(std::time::Duration::from_millis(1)).is_err());
    /// # });
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Waits for the value until `deadline`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::oneshot();
    /// tx.send(2).unwrap();
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    /// assert_eq!(rx.recv_deadline(deadline), Ok(2));
    /// # });
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.rx.recv_deadline(deadline)
    }

    /// Waits for the value from `async` code (cancel-safe, as
    /// [`Receiver::recv_async`](super::Receiver::recv_async)).
    ///
    /// # Errors
    /// [`RecvError`] if the sender was dropped without sending.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::oneshot();
    /// fibra::spawn(move || tx.send(5).unwrap());
    /// assert_eq!(fibra::await_future(rx.recv_async()), Ok(5));
    /// # });
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        self.rx.recv_async()
    }
}

impl<T> fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneshotSender { .. }")
    }
}

impl<T> fmt::Debug for OneshotReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneshotReceiver { .. }")
    }
}
