//! The channel errors. Every error of a send hands the unsent value back.

use std::error::Error;
use std::fmt;

/// [`Sender::send`](super::Sender::send) failed: every receiver is gone. Holds the value.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded::<String>(1);
/// drop(rx);
/// let err = tx.send("lost?".to_string()).unwrap_err();
/// assert_eq!(err.into_inner(), "lost?"); // no: handed back
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// let err = fibra::chan::SendError(7);
    /// assert_eq!(err.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// [`Sender::try_send`](super::Sender::try_send) failed. Holds the value.
///
/// ```
/// # fibra::run(|| {
/// use fibra::chan::{bounded, TrySendError};
/// let (tx, rx) = bounded(1);
/// tx.try_send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// drop(rx);
/// assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is full (a rendezvous channel: no receiver is waiting).
    Full(T),
    /// Every receiver is gone.
    Disconnected(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// let err = fibra::chan::TrySendError::Full("x");
    /// assert_eq!(err.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Disconnected(v) => v,
        }
    }
}

/// [`Sender::send_timeout`](super::Sender::send_timeout) failed. Holds the value.
///
/// ```
/// # fibra::run(|| {
/// use fibra::chan::{bounded, SendTimeoutError};
/// use std::time::Duration;
/// let (tx, _rx) = bounded(0); // nobody receives
/// let err = tx.send_timeout(5, Duration::from_millis(2)).unwrap_err();
/// assert_eq!(err, SendTimeoutError::Timeout(5));
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The deadline passed before the value could be sent.
    Timeout(T),
    /// Every receiver is gone.
    Disconnected(T),
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    ///
    /// ```
    /// let err = fibra::chan::SendTimeoutError::Timeout(1u8);
    /// assert_eq!(err.into_inner(), 1);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Disconnected(v) => v,
        }
    }
}

/// [`Receiver::recv`](super::Receiver::recv) failed: the channel is empty and every sender
/// is gone.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded::<u8>();
/// drop(tx);
/// assert_eq!(rx.recv(), Err(fibra::chan::RecvError));
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct RecvError;

/// [`Receiver::try_recv`](super::Receiver::try_recv) failed.
///
/// ```
/// # fibra::run(|| {
/// use fibra::chan::{unbounded, TryRecvError};
/// let (tx, rx) = unbounded::<u8>();
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing to receive right now.
    Empty,
    /// Empty, and every sender is gone.
    Disconnected,
}

/// [`Receiver::recv_timeout`](super::Receiver::recv_timeout) failed.
///
/// ```
/// # fibra::run(|| {
/// use fibra::chan::{unbounded, RecvTimeoutError};
/// use std::time::Duration;
/// let (_tx, rx) = unbounded::<u8>();
/// assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum RecvTimeoutError {
    /// The deadline passed with nothing received.
    Timeout,
    /// Empty, and every sender is gone.
    Disconnected,
}

/// [`Select::try_select`](super::Select::try_select) found no operation ready.
///
/// ```
/// # fibra::run(|| {
/// let (_tx, rx) = fibra::chan::bounded::<u8>(1);
/// let mut sel = fibra::chan::Select::new();
/// sel.recv(&rx);
/// assert_eq!(sel.try_select().unwrap_err(), fibra::chan::TrySelectError);
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct TrySelectError;

/// [`Select::select_timeout`](super::Select::select_timeout) completed no operation in time.
///
/// ```
/// # fibra::run(|| {
/// let never = fibra::chan::never::<u8>();
/// let mut sel = fibra::chan::Select::new();
/// sel.recv(&never);
/// let err = sel.select_timeout(std::time::Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err.to_string(), "no operation completed before the deadline");
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct SelectTimeoutError;

/// [`Select::try_ready`](super::Select::try_ready) found no operation ready.
///
/// ```
/// # fibra::run(|| {
/// let (_tx, rx) = fibra::chan::bounded::<u8>(1);
/// let mut sel = fibra::chan::Select::new();
/// sel.recv(&rx);
/// let err = sel.try_ready().unwrap_err();
/// assert_eq!(err, fibra::chan::TryReadyError);
/// assert_eq!(err.to_string(), "no operation was ready");
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct TryReadyError;

/// [`Select::ready_timeout`](super::Select::ready_timeout) saw no operation ready in time.
///
/// ```
/// # fibra::run(|| {
/// let never = fibra::chan::never::<u8>();
/// let mut sel = fibra::chan::Select::new();
/// sel.recv(&never);
/// let err = sel.ready_timeout(std::time::Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err.to_string(), "no operation became ready before the deadline");
/// # });
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub struct ReadyTimeoutError;

impl fmt::Display for TryReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation was ready")
    }
}

impl fmt::Display for ReadyTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation became ready before the deadline")
    }
}

impl Error for TryReadyError {}
impl Error for ReadyTimeoutError {}

impl fmt::Display for TrySelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation was ready")
    }
}

impl fmt::Display for SelectTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no operation completed before the deadline")
    }
}

impl Error for TrySelectError {}
impl Error for SelectTimeoutError {}

// `Debug` without `T: Debug`, like std's channel errors: the value is not shown.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a channel whose receivers are all gone")
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Disconnected(_) => SendError(()).fmt(f),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out sending on a full channel"),
            SendTimeoutError::Disconnected(_) => SendError(()).fmt(f),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty channel whose senders are all gone")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => RecvError.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out receiving on an empty channel"),
            RecvTimeoutError::Disconnected => RecvError.fmt(f),
        }
    }
}

impl<T> Error for SendError<T> {}
impl<T> Error for TrySendError<T> {}
impl<T> Error for SendTimeoutError<T> {}
impl Error for RecvError {}
impl Error for TryRecvError {}
impl Error for RecvTimeoutError {}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(SendError(v): SendError<T>) -> Self {
        TrySendError::Disconnected(v)
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(SendError(v): SendError<T>) -> Self {
        SendTimeoutError::Disconnected(v)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        TryRecvError::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        RecvTimeoutError::Disconnected
    }
}
