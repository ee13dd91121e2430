//! `send_async` / `recv_async`: the same channel from `async` code.
//!
//! A pending future holds one node in the channel (boxed, with a signal holding the task's
//! `Waker`). A poll takes the lock and reads its signal; a claimed node's packet is the
//! outcome (exactly as for a blocked fiber, `waiters.rs`). A re-poll of an unclaimed node
//! keeps its place in the queue and, if the waker changed, swaps it in.
//!
//! # Cancel safety
//! Dropping a future removes its node under the lock. A `RecvFuture` whose node was already
//! handed a value gives it back to the channel (to another waiting receiver, else to the front
//! of the buffer), so no value is lost. A dropped `SendFuture` either delivered its value (its
//! node was emptied by a receiver) or drops it unsent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};
use std::time::Instant;

use super::channel::wake;
use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::receiver::Receiver;
use super::sender::Sender;
use super::wait::{Side, TOKEN};
use super::waiters::{Node, Signal, Waiters, WAITING};

/// A pending future's registration: its node and signal, on the heap (a future may move
/// between polls, so they cannot live in it).
struct Slot<T> {
    signal: Signal,
    node: Node<T>,
}

/// Owns a `Slot` from `Box::into_raw`; the owning future frees it (`take`) once the node is
/// unlinked, under the channel lock.
struct SlotPtr<T>(NonNull<Slot<T>>);

// SAFETY: the slot is only touched by its future (through `&mut self`) under the channel's
// lock, or by notifiers under that same lock; its packet holds a `T`, hence `T: Send`.
unsafe impl<T: Send> Send for SlotPtr<T> {}
// SAFETY: `&SlotPtr` gives no access to the slot (every use takes `&mut` of the future).
unsafe impl<T: Send> Sync for SlotPtr<T> {}

impl<T> SlotPtr<T> {
    /// Under the lock: registers a new slot with `packet` in `list`.
    fn register(list: &mut Waiters<T>, waker: &std::task::Waker, packet: Option<T>) -> Self {
        let slot = NonNull::from(Box::leak(Box::new(Slot {
            signal: Signal::new(waker.clone()),
            node: Node::new(TOKEN, packet),
        })));
        // SAFETY: the slot is on the heap until `take` frees it, which first unlinks the node
        // under the lock (a claim in progress holds that lock); `list` is the only list the
        // node ever joins.
        unsafe { list.push(&slot.as_ref().node, &slot.as_ref().signal) };
        SlotPtr(slot)
    }

    fn get(&self) -> &Slot<T> {
        // SAFETY: the slot lives until `take` consumes this pointer.
        unsafe { self.0.as_ref() }
    }

    /// Under the lock: unlinks the node if a claim has not, frees the slot and returns the
    /// packet (the claim's outcome, or the value still offered).
    fn take(self, list: &mut Waiters<T>) -> Option<T> {
        // SAFETY: the node was only ever pushed into `list`.
        unsafe { list.remove(&self.get().node) };
        // Unlinked, under the lock: the packet is ours.
        let packet = self.get().node.take_packet();
        // SAFETY: from `Box::leak` in `register`; unlinked, so no notifier can reach it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        packet
    }
}

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
    /// fibra::await_future(async { tx.send_async(3).await.unwrap() });
    /// assert_eq!(rx.recv(), Ok(3));
    /// # });
    /// ```
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            tx: self,
            value: Some(value),
            slot: None,
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
    /// assert_eq!(fibra::await_future(rx.recv_async()), Ok(9));
    /// # });
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            rx: self,
            slot: None,
            woken_at: None,
        }
    }
}

/// The future of [`Sender::send_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// let fut: fibra::chan::SendFuture<'_, u8> = tx.send_async(1);
/// fibra::await_future(fut).unwrap();
/// assert_eq!(rx.try_recv(), Ok(1));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    tx: &'a Sender<T>,
    value: Option<T>,
    slot: Option<SlotPtr<T>>,
}

/// The future of [`Receiver::recv_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// tx.send('z').unwrap();
/// let fut: fibra::chan::RecvFuture<'_, char> = rx.recv_async();
/// assert_eq!(fibra::await_future(fut), Ok('z'));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    rx: &'a Receiver<T>,
    slot: Option<SlotPtr<T>>,
    /// A timer channel's due time for which a wake-up is arranged (`timer::wake_at`).
    woken_at: Option<Instant>,
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
        if let Some(slot) = this.slot.take() {
            if slot.get().signal.state() == WAITING {
                slot.get().signal.set_waker(cx.waker());
                this.slot = Some(slot);
                return Poll::Pending; // still registered
            }
            // Claimed (under this lock, so the claim is complete): the packet is the outcome.
            return Poll::Ready(match slot.take(&mut st.senders) {
                None => Ok(()),               // a receiver took it
                Some(v) => Err(SendError(v)), // every receiver is gone
            });
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
                this.slot = Some(SlotPtr::register(&mut st.senders, cx.waker(), Some(v)));
                let watchers = chan.queued_locked(&mut st, Side::Send);
                drop(st);
                wake(watchers);
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let packet = slot.take(&mut self.tx.chan.lock().senders);
            drop(packet); // after unlocking: an unsent value is dropped, a taken one was sent
        }
    }
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = &*this.rx.chan;
        let mut st = chan.lock();
        if let Some(slot) = this.slot.take() {
            let due = chan.timer_due(&st);
            if slot.get().signal.state() == WAITING && due.is_none_or(|d| Instant::now() < d) {
                slot.get().signal.set_waker(cx.waker());
                this.slot = Some(slot);
                drop(st);
                this.wake_when_due(due, cx);
                return Poll::Pending;
            }
            if let Some(v) = slot.take(&mut st.receivers) {
                return Poll::Ready(Ok(v)); // a sender handed it over
            }
            // Claimed empty-handed: every sender is gone; drain what is left below.
        }
        match chan.try_recv_locked(&mut st, None) {
            Ok((v, woken)) => {
                drop(st);
                wake(woken);
                Poll::Ready(Ok(v))
            }
            Err(TryRecvError::Disconnected) => Poll::Ready(Err(RecvError)),
            Err(TryRecvError::Empty) => {
                this.slot = Some(SlotPtr::register(&mut st.receivers, cx.waker(), None));
                let watchers = chan.queued_locked(&mut st, Side::Recv);
                let due = chan.timer_due(&st);
                drop(st);
                wake(watchers);
                this.wake_when_due(due, cx);
                Poll::Pending
            }
        }
    }
}

impl<T> RecvFuture<'_, T> {
    /// A timer channel has no sender to wake a pending receive: arranges one wake-up for
    /// each due time it waits for.
    fn wake_when_due(&mut self, due: Option<Instant>, cx: &Context<'_>) {
        if let Some(d) = due {
            if self.woken_at != due {
                self.woken_at = due;
                super::timer::wake_at(d, cx.waker().clone());
            }
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let chan = &*self.rx.chan;
            let mut st = chan.lock();
            if let Some(v) = slot.take(&mut st.receivers) {
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

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("registered", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("registered", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}
