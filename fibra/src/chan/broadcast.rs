//! A broadcast channel: every receiver gets every item (tokio's `broadcast`), between fibers,
//! plain threads and `async` code.
//!
//! ```
//! use fibra::chan::broadcast;
//! # fibra::run(|| {
//! let (tx, mut rx1) = broadcast::channel(16);
//! let mut rx2 = tx.subscribe();
//! let a = fibra::spawn(move || rx1.iter().sum::<i32>());
//! let b = fibra::spawn(move || rx2.iter().count());
//! for i in 1..=4 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // receivers get what was sent, then `Closed`
//! assert_eq!(a.join().unwrap(), 10);
//! assert_eq!(b.join().unwrap(), 4);
//! # });
//! ```
//!
//! # Lagging
//! A `send` never waits: the channel keeps the last `capacity` items, and one more drops the
//! oldest. A receiver that had not read it *lags*: its next receive returns
//! [`RecvError::Lagged(n)`](RecvError::Lagged), the number of items it missed, and it goes on
//! from the oldest item still kept. A slow receiver costs memory up to `capacity` items and
//! never slows the sender or the other receivers down.
//!
//! # Design
//! One lock guards the state: a ring of up to `capacity` slots, each an `Arc<T>` with the
//! number of receivers still to read it, the position of the oldest slot, and the counts of
//! senders and receivers. A receiver is the position of its next item.
//! ```text
//! send:  lock; no receivers -> hand the value back; full -> pop the oldest slot (laggards);
//!        push (value, unread = receivers); notify_all (sync/change.rs); unlock
//! recv:  lock; behind the oldest slot -> Lagged(n), move to it; a slot -> unread - 1 and
//!        take its Arc (the last reader pops the slot); none and no senders -> Closed;
//!        else wait for the next change (sync/change.rs); unlock, clone the value
//! ```
//! Items are cloned and dropped outside the lock (`T::clone` and `T::drop` are user code).
//! Slots nobody has left to read are popped at once, so the values are dropped as early as
//! possible, and the last reader of an item moves it out of its `Arc` instead of cloning it
//! (with one receiver, nothing is ever cloned). Unread counts never decrease from the back of
//! the ring to the front (whoever still has to read a slot still has to read every later
//! one), so the slots nobody needs are always at the front.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use super::error::SendError;
use crate::coop;
use crate::loom::lock::Mutex as Lock;
use crate::park::ParkReason;
use crate::sync::change::{self, AsyncWait, GaveUp};
use crate::sync::waiter::WaitList;

/// Creates a broadcast channel that keeps the last `capacity` items for receivers that have
/// not read them yet. More receivers come from [`Sender::subscribe`].
///
/// # Panics
/// If `capacity` is 0 (a channel that keeps nothing would lose every item).
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::broadcast::channel(2);
/// tx.send("hello").unwrap();
/// assert_eq!(rx.recv(), Ok("hello"));
/// # });
/// ```
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "fibra::chan::broadcast::channel: capacity must be at least 1"
    );
    let shared = Arc::new(Shared {
        state: Lock::new(State {
            ring: VecDeque::new(),
            head: 0,
            senders: 1,
            receivers: 1,
            waiters: WaitList::new(),
        }),
        capacity,
    });
    let rx = Receiver {
        shared: shared.clone(),
        next: 0,
    };
    (Sender { shared }, rx)
}

struct Slot<T> {
    value: Arc<T>,
    /// Receivers that still have to read this slot.
    unread: usize,
}

struct State<T> {
    ring: VecDeque<Slot<T>>,
    /// The position (count of items sent before it) of `ring[0]`.
    head: u64,
    senders: usize,
    receivers: usize,
    /// Receivers waiting for the next item (or for the last sender to go).
    waiters: WaitList,
}

struct Shared<T> {
    state: Lock<State<T>>,
    capacity: usize,
}

impl<T> State<T> {
    /// The position the next item will get.
    fn tail(&self) -> u64 {
        self.head + self.ring.len() as u64
    }

    /// The next step for a receiver whose next item is `*next`: an item (its position moves
    /// on), a lag report (it moves to the oldest slot), `Closed`, or `None`: wait.
    fn recv(&mut self, next: &mut u64) -> Option<Result<Arc<T>, RecvError>> {
        if *next < self.head {
            let missed = self.head - *next;
            *next = self.head;
            return Some(Err(RecvError::Lagged(missed)));
        }
        let index = usize::try_from(*next - self.head).expect("within the ring");
        let Some(slot) = self.ring.get_mut(index) else {
            return (self.senders == 0).then_some(Err(RecvError::Closed));
        };
        *next += 1;
        slot.unread -= 1;
        if slot.unread > 0 {
            return Some(Ok(slot.value.clone()));
        }
        // Unread counts never decrease towards the back, so a slot read by all is the front.
        debug_assert_eq!(index, 0, "a slot past the front was read by all");
        let slot = self.ring.pop_front().expect("the slot just read");
        self.head += 1;
        Some(Ok(slot.value))
    }

    /// A receiver at `next` leaves: it no longer counts as a reader of the slots it had not
    /// read. Returns the slots nobody has left to read (to be dropped outside the lock).
    fn unsubscribe(&mut self, next: u64) -> Vec<Slot<T>> {
        self.receivers -= 1;
        let from = usize::try_from(next.saturating_sub(self.head)).expect("within the ring");
        for slot in self.ring.iter_mut().skip(from) {
            slot.unread -= 1;
        }
        let done = self.ring.iter().take_while(|s| s.unread == 0).count();
        self.head += done as u64;
        self.ring.drain(..done).collect()
    }
}

/// Takes the value out of an item's `Arc` if this was the last reference (the last reader of
/// a popped slot), else clones it. Outside the lock: `T::clone` is user code.
fn into_value<T: Clone>(value: Arc<T>) -> T {
    Arc::try_unwrap(value).unwrap_or_else(|shared| T::clone(&shared))
}

/// The sending half of a [`broadcast` channel](self); clone it for more senders.
///
/// Sending never waits (see [lagging](self#lagging)). When the last sender is dropped,
/// receivers get the items still kept for them, then [`RecvError::Closed`].
///
/// The item type must be `Send + Sync` for the channel to cross threads: receivers on
/// several threads clone the same item at the same time.
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// let (tx, _rx) = fibra::chan::broadcast::channel::<std::cell::Cell<u8>>(1);
/// assert_send(tx);
/// ```
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::broadcast::channel(4);
/// let tx2 = tx.clone();
/// tx.send(1).unwrap();
/// tx2.send(2).unwrap();
/// assert_eq!((rx.recv(), rx.recv()), (Ok(1), Ok(2)));
/// # });
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Sends `value` to every current receiver without waiting. If the channel already keeps
    /// `capacity` items, the oldest is dropped and receivers that had not read it lag.
    /// Returns the number of receivers the value was sent to.
    ///
    /// # Errors
    /// [`SendError`] with the value if there are no receivers (it is not kept for later
    /// ones).
    ///
    /// # Memory ordering
    /// A `send` happens-before every receive that returns its value.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::broadcast::channel(4);
    /// let _rx2 = tx.subscribe();
    /// assert_eq!(tx.send('a'), Ok(2));
    /// drop((rx, _rx2));
    /// assert_eq!(tx.send('b').unwrap_err().into_inner(), 'b');
    /// # });
    /// ```
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let mut st = self.shared.state.lock();
        if st.receivers == 0 {
            drop(st);
            return Err(SendError(value));
        }
        let evicted = if st.ring.len() == self.shared.capacity {
            st.head += 1;
            st.ring.pop_front()
        } else {
            None
        };
        let receivers = st.receivers;
        st.ring.push_back(Slot {
            value: Arc::new(value),
            unread: receivers,
        });
        st.waiters.notify_all(); // the claims' Release publishes the slot to each receiver
        drop(st);
        drop(evicted); // outside the lock: `T::drop` is user code
        Ok(receivers)
    }

    /// A new receiver, which gets every item sent from now on.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// let mut late = tx.subscribe();
    /// tx.send(2).unwrap();
    /// assert_eq!(late.recv(), Ok(2)); // 1 was sent before it subscribed
    /// # });
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        subscribe(&self.shared)
    }

    /// The number of receivers now.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::broadcast::channel::<u8>(1);
    /// let rx2 = tx.subscribe();
    /// assert_eq!(tx.receiver_count(), 2);
    /// drop((rx, rx2));
    /// assert_eq!(tx.receiver_count(), 0);
    /// # });
    /// ```
    pub fn receiver_count(&self) -> usize {
        self.shared.state.lock().receivers
    }

    /// The number of items kept for receivers that have not read them all yet (at most the
    /// capacity).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(8);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(tx.len(), 2);
    /// rx.recv().unwrap();
    /// assert_eq!(tx.len(), 1); // the only receiver has read the first
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.shared.state.lock().ring.len()
    }

    /// True if no item is kept (every receiver has read everything).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::broadcast::channel::<u8>(8);
    /// assert!(tx.is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn subscribe<T>(shared: &Arc<Shared<T>>) -> Receiver<T> {
    let mut st = shared.state.lock();
    st.receivers += 1;
    let next = st.tail();
    drop(st);
    Receiver {
        shared: shared.clone(),
        next,
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
            st.waiters.notify_all(); // waiting receivers now see `Closed`
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// The receiving half of a [`broadcast` channel](self): gets every item sent after it was
/// created, in order, unless it [lags](self#lagging).
///
/// More receivers come from [`Sender::subscribe`] or [`Receiver::resubscribe`]. Receiving
/// takes `&mut self`: a receiver is one reader's position in the channel.
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::broadcast::channel(4);
/// let reader = fibra::spawn(move || rx.recv());
/// tx.send(String::from("to all")).unwrap();
/// assert_eq!(reader.join().unwrap().unwrap(), "to all");
/// # });
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The position of the next item to read.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// Receives the next item, waiting for one. The calling fiber parks (its worker runs
    /// others); a plain thread blocks.
    ///
    /// # Errors
    /// [`RecvError::Lagged(n)`](RecvError::Lagged) if `n` items were dropped before this
    /// receiver read them (the next call returns the oldest item kept);
    /// [`RecvError::Closed`] once every sender is gone and every item kept was received, or
    /// when the runtime is unwinding this fiber.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::chan::broadcast::{channel, RecvError};
    /// let (tx, mut rx) = channel(2);
    /// for i in 0..5 { tx.send(i).unwrap(); }
    /// assert_eq!(rx.recv(), Err(RecvError::Lagged(3))); // 0, 1, 2 were dropped
    /// assert_eq!(rx.recv(), Ok(3));
    /// assert_eq!(rx.recv(), Ok(4));
    /// drop(tx);
    /// assert_eq!(rx.recv(), Err(RecvError::Closed));
    /// # });
    /// ```
    pub fn recv(&mut self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|e| match e {
            RecvTimeoutError::Lagged(n) => RecvError::Lagged(n),
            RecvTimeoutError::Closed | RecvTimeoutError::Timeout => RecvError::Closed,
        })
    }

    /// Receives the next item if there is one, without waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if there is nothing new yet; `Lagged` and `Closed` as for
    /// [`recv`](Receiver::recv).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::chan::broadcast::{channel, TryRecvError};
    /// let (tx, mut rx) = channel(2);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// # });
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let step = self.shared.state.lock().recv(&mut self.next);
        match step {
            Some(Ok(value)) => Ok(into_value(value)),
            Some(Err(RecvError::Lagged(n))) => Err(TryRecvError::Lagged(n)),
            Some(Err(RecvError::Closed)) => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Like [`recv`](Receiver::recv), but gives up after `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if nothing came; `Lagged` and `Closed` as for
    /// [`recv`](Receiver::recv).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::chan::broadcast::{channel, RecvTimeoutError};
    /// use std::time::Duration;
    /// let (_tx, mut rx) = channel::<u8>(2);
    /// assert_eq!(rx.recv_timeout(Duration::from_millis(2)), Err(RecvTimeoutError::Timeout));
    /// # });
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Like [`recv_timeout`](Receiver::recv_timeout) with an absolute deadline.
    ///
    /// # Errors
    /// As [`recv_timeout`](Receiver::recv_timeout).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::{Duration, Instant};
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(2);
    /// tx.send(7).unwrap();
    /// assert_eq!(rx.recv_deadline(Instant::now() + Duration::from_secs(1)), Ok(7));
    /// # });
    /// ```
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    /// Receives from `async` code.
    ///
    /// # Errors
    /// As [`recv`](Receiver::recv).
    ///
    /// # Cancel safety
    /// Dropping the future loses nothing: an item is taken only by the poll that returns it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(2);
    /// fibra::spawn(move || tx.send(9).unwrap());
    /// assert_eq!(fibra::block_on(rx.recv_async()), Ok(9));
    /// # });
    /// ```
    pub fn recv_async(&mut self) -> RecvFuture<'_, T> {
        RecvFuture {
            rx: self,
            wait: AsyncWait::new(),
        }
    }

    /// A blocking iterator: yields every item until the channel is closed, skipping over
    /// lags (use [`recv`](Receiver::recv) to see them).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(8);
    /// fibra::spawn(move || for i in 0..3 { tx.send(i).unwrap(); });
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
    /// # });
    /// ```
    pub fn iter(&mut self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let shared = &*self.shared;
        let next = &mut self.next;
        // Bound first: in an `if let` scrutinee the guard would live through the block, and
        // `coop::consume` may yield, leaving the lock held while other fibers of this worker
        // run (one that locks it would block the worker thread for good).
        let step = shared.state.lock().recv(next);
        if let Some(step) = step {
            coop::consume(); // done without parking: counts against the fiber's budget
            return step.map(into_value).map_err(RecvTimeoutError::from);
        }
        let waited = change::block_until(
            &shared.state,
            |st| &mut st.waiters,
            |st| st.recv(next),
            ParkReason::ChanRecv,
            deadline,
            std::ptr::from_ref(shared) as usize,
        );
        match waited {
            Ok(step) => step.map(into_value).map_err(RecvTimeoutError::from),
            Err(GaveUp::TimedOut) => Err(RecvTimeoutError::Timeout),
            Err(GaveUp::Cancelled) => Err(RecvTimeoutError::Closed),
        }
    }
}

impl<T> Receiver<T> {
    /// A new receiver of the same channel, which gets every item sent from now on (not those
    /// this one has yet to read).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// let mut rx2 = rx.resubscribe();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.recv(), Ok(1));
    /// assert_eq!(rx2.recv(), Ok(2));
    /// # });
    /// ```
    pub fn resubscribe(&self) -> Receiver<T> {
        subscribe(&self.shared)
    }

    /// The number of items kept that this receiver has not read yet.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.len(), 2);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        let st = self.shared.state.lock();
        let unread = st.tail() - self.next.max(st.head);
        usize::try_from(unread).expect("at most the capacity")
    }

    /// True if this receiver has read every item kept.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::broadcast::channel::<u8>(4);
    /// assert!(rx.is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once every sender is gone (items kept may still be waiting to be received).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, mut rx) = fibra::chan::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// assert_eq!(rx.recv(), Ok(1));
    /// # });
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().senders == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let done = self.shared.state.lock().unsubscribe(self.next);
        drop(done); // outside the lock: `T::drop` is user code
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// The iterator of [`Receiver::iter`]: `recv` until closed, skipping over lags.
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::broadcast::channel(1);
/// tx.send('a').unwrap();
/// drop(tx);
/// let it: fibra::chan::broadcast::Iter<'_, char> = rx.iter();
/// assert_eq!(it.collect::<String>(), "a");
/// # });
/// ```
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a mut Receiver<T>,
}

impl<T: Clone> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            match self.rx.recv() {
                Ok(value) => return Some(value),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// The future of [`Receiver::recv_async`].
///
/// ```
/// # fibra::run(|| {
/// let (tx, mut rx) = fibra::chan::broadcast::channel(1);
/// tx.send(1u8).unwrap();
/// let fut: fibra::chan::broadcast::RecvFuture<'_, u8> = rx.recv_async();
/// assert_eq!(fibra::block_on(fut), Ok(1));
/// # });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    rx: &'a mut Receiver<T>,
    wait: AsyncWait,
}

impl<T: Clone> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut st = this.rx.shared.state.lock();
        match st.recv(&mut this.rx.next) {
            Some(step) => {
                this.wait.cancel(&mut st.waiters);
                drop(st);
                Poll::Ready(step.map(into_value))
            }
            None => {
                this.wait.register(&mut st.waiters, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if self.wait.is_queued() {
            self.wait.cancel(&mut self.rx.shared.state.lock().waiters);
        }
    }
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::RecvFuture")
            .field("registered", &self.wait.is_queued())
            .finish_non_exhaustive()
    }
}

/// Why [`Receiver::recv`] (or its future) returned no item.
///
/// ```
/// use fibra::chan::broadcast::RecvError;
/// assert_eq!(RecvError::Lagged(2).to_string(), "the receiver lagged behind and missed 2 items");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// This many items were dropped before this receiver read them; the next receive returns
    /// the oldest item still kept.
    Lagged(u64),
    /// Every sender is gone and this receiver has read every item kept.
    Closed,
}

/// Why [`Receiver::try_recv`] returned no item.
///
/// ```
/// use fibra::chan::broadcast::TryRecvError;
/// assert_eq!(TryRecvError::Empty.to_string(), "no new item in the broadcast channel");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// No new item yet.
    Empty,
    /// As [`RecvError::Lagged`].
    Lagged(u64),
    /// As [`RecvError::Closed`].
    Closed,
}

/// Why [`Receiver::recv_timeout`] returned no item.
///
/// ```
/// use fibra::chan::broadcast::RecvTimeoutError;
/// assert_eq!(RecvTimeoutError::Timeout.to_string(), "timed out waiting on a broadcast channel");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed with no new item.
    Timeout,
    /// As [`RecvError::Lagged`].
    Lagged(u64),
    /// As [`RecvError::Closed`].
    Closed,
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Lagged(n) => RecvTimeoutError::Lagged(n),
            RecvError::Closed => RecvTimeoutError::Closed,
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged(n) => write!(f, "the receiver lagged behind and missed {n} items"),
            RecvError::Closed => {
                f.write_str("the broadcast channel is closed: every sender is gone")
            }
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no new item in the broadcast channel"),
            TryRecvError::Lagged(n) => RecvError::Lagged(*n).fmt(f),
            TryRecvError::Closed => RecvError::Closed.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on a broadcast channel"),
            RecvTimeoutError::Lagged(n) => RecvError::Lagged(*n).fmt(f),
            RecvTimeoutError::Closed => RecvError::Closed.fmt(f),
        }
    }
}

impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}
