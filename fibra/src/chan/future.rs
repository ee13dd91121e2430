//! `send_async` / `recv_async`: the same channel from `async` code.
//!
//! A pending future holds one entry in the channel, registered with a [`Waiter`] built from
//! the task's `Waker`. A poll takes the lock and reads its entry; a claimed entry is the
//! outcome (exactly as for a blocked fiber, `waiters.rs`). A re-poll with the same waker and
//! an unclaimed entry changes nothing; a new waker replaces the entry.
//!
//! # Cancel safety
//! Dropping a future removes its entry under the lock. A `RecvFuture` whose entry was already
//! handed a value gives it back to the channel (to another waiting receiver, else to the front
//! of the buffer), so no value is lost. A dropped `SendFuture` either delivered its value (its
//! entry was emptied by a receiver) or drops it unsent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::channel::wake;
use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::receiver::Receiver;
use super::sender::Sender;
use super::wait::TOKEN;
use super::waiters::Entry;
use crate::sync::waiter::{Waiter, WAITING};

impl<T> Sender<T> {
    /// Sends `value` from `async` code: the future completes once the value is in the
    /// channel (or taken by a receiver, for `bounded(0)`).
    ///
    /// # Errors
    /// [`SendError`] with the value if every receiver is gone.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes either leaves the value sent or drops it
    /// unsent; it is never sent twice.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// fibra::block_on(async { tx.send_async(3).await.unwrap() });
    /// assert_eq!(rx.recv(), Ok(3));
    /// # });
    /// ```
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            tx: self,
            value: Some(value),
            waiter: None,
        }
    }
}

impl<T> Receiver<T> {
    /// Receives from `async` code.
    ///
    /// # Errors
    /// [`RecvError`] once the channel is empty and every sender is gone.
    ///
    /// # Cancel safety
    /// Dropping the future loses nothing: a value already handed to it goes back to the
    /// channel.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(0);
    /// fibra::spawn(move || tx.send(9).unwrap());
    /// assert_eq!(fibra::block_on(rx.recv_async()), Ok(9));
    /// # });
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            rx: self,
            waiter: None,
        }
    }
}

/// The future of [`Sender::send_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// let fut: fibra::chan::SendFuture<'_, u8> = tx.send_async(1);
/// fibra::block_on(fut).unwrap();
/// assert_eq!(rx.try_recv(), Ok(1));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    tx: &'a Sender<T>,
    value: Option<T>,
    waiter: Option<Arc<Waiter>>,
}

/// The future of [`Receiver::recv_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// tx.send('z').unwrap();
/// let fut: fibra::chan::RecvFuture<'_, char> = rx.recv_async();
/// assert_eq!(fibra::block_on(fut), Ok('z'));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    rx: &'a Receiver<T>,
    waiter: Option<Arc<Waiter>>,
}

// Neither future pins anything: the value is moved in and out, never borrowed across polls.
impl<T> Unpin for SendFuture<'_, T> {}
impl<T> Unpin for RecvFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = &*this.tx.chan;
        let mut st = chan.lock();
        if let Some(w) = this.waiter.take() {
            if w.selected() == WAITING && w.will_wake(cx.waker()) {
                this.waiter = Some(w);
                return Poll::Pending; // spurious poll: still registered
            }
            match take_entry(&mut st.senders, &w).packet {
                None => return Poll::Ready(Ok(())), // a receiver took it
                Some(v) => this.value = Some(v),    // disconnected, or a new waker: retry
            }
        }
        let Some(value) = this.value.take() else {
            panic!("SendFuture polled after completion");
        };
        match chan.try_send_locked(&mut st, value, None) {
            Ok(woken) => {
                drop(st);
                wake(woken);
                Poll::Ready(Ok(()))
            }
            Err(TrySendError::Disconnected(v)) => Poll::Ready(Err(SendError(v))),
            Err(TrySendError::Full(v)) => {
                let w = Waiter::from_waker(cx.waker().clone());
                st.senders.push(w.clone(), TOKEN, Some(v));
                this.waiter = Some(w);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let entry = take_entry(&mut self.tx.chan.lock().senders, &w);
            drop(entry); // after unlocking: an unsent value is dropped, a taken one was sent
        }
    }
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = &*this.rx.chan;
        let mut st = chan.lock();
        if let Some(w) = this.waiter.take() {
            if w.selected() == WAITING && w.will_wake(cx.waker()) {
                this.waiter = Some(w);
                return Poll::Pending;
            }
            if let Some(v) = take_entry(&mut st.receivers, &w).packet {
                return Poll::Ready(Ok(v)); // a sender handed it over
            }
        }
        match chan.try_recv_locked(&mut st, None) {
            Ok((v, woken)) => {
                drop(st);
                wake(woken);
                Poll::Ready(Ok(v))
            }
            Err(TryRecvError::Disconnected) => Poll::Ready(Err(RecvError)),
            Err(TryRecvError::Empty) => {
                let w = Waiter::from_waker(cx.waker().clone());
                st.receivers.push(w.clone(), TOKEN, None);
                this.waiter = Some(w);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let chan = &*self.rx.chan;
            let mut st = chan.lock();
            if let Some(v) = take_entry(&mut st.receivers, &w).packet {
                // Handed to us, never returned: give it back so it is not lost.
                match chan.reinject_locked(&mut st, v) {
                    Ok(woken) => {
                        drop(st);
                        wake(woken);
                    }
                    Err(v) => {
                        drop(st);
                        drop(v);
                    }
                }
            }
        }
    }
}

fn take_entry<T>(list: &mut super::waiters::Waiters<T>, w: &Waiter) -> Entry<T> {
    super::channel::Chan::unregister(list, w, TOKEN, "future")
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("registered", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("registered", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}
