//! `Chan<T>`: the state every flavour shares, and its non-blocking steps.
//!
//! One algorithm serves `bounded(n)`, `bounded(0)` and `unbounded()` (Go's `hchan`): a short
//! critical section under one lock (`crate::loom::lock`) over a ring buffer (`VecDeque`,
//! preallocated when bounded, up to 64 KiB) and two entry queues (`waiters.rs`). Only the capacity
//! differs: `usize::MAX` is unbounded, 0 is a rendezvous, whose buffer stays empty and whose
//! values go straight from a waiting sender's packet to a receiver (or from a sender into a
//! waiting receiver's packet).
//!
//! # Invariants (under the lock)
//! - A claimable *receiver* node exists only while the buffer is empty: a sender that finds
//!   one hands its value over instead of buffering it.
//! - A claimable *sender* node exists only while the buffer is full: a receiver that takes an
//!   item moves the oldest claimable sender's value into the freed slot (FIFO is kept).
//! - A claim and the packet change that goes with it happen in one critical section, and the
//!   claim's token store publishes both (`waiters.rs`).
//!
//! # Memory ordering
//! Every value crosses under the lock, or through a packet filled under it and published by
//! the claim's Release token store, which the woken owner loads with Acquire. So a `send`
//! happens-before the `recv` that returns its value.
//!
//! # No lost wake-up
//! Wait:   lock; try the operation; push (node, signal); unlock; park until a token arrives.
//! Notify: lock; change the buffer/flags; claim a node (CAS on its signal), unlink it, fill or
//! empty its packet, store the token; unlock; wake. The check and the push share one critical
//! section with every notifier, and a wake that lands before the owner parks leaves the
//! park's token set (`park.rs`).
//! Rejected: wake while holding the lock (the woken fiber would run into the held lock);
//! leaving the node for its owner to remove (every woken waiter re-took the lock: ~1/3 of a
//! ping-pong round trip, measured with callgrind).
//!
//! # Readiness
//! A readiness watcher (`Select::ready`) waits in the queue of the side it watches, takes
//! nothing, and registers only while its operation would block (checked under the same lock).
//! So a *waiting* receive watcher exists only while a receive would block, and a send watcher
//! only while a send would; every step that ends that wakes them (`claim_watchers`):
//!
//! | a receive becomes possible              | a send becomes possible                    |
//! |-----------------------------------------|--------------------------------------------|
//! | an item is buffered (`try_send_locked`, `reinject_locked`) | a slot is freed with no sender queued to refill it (`try_recv_locked`) |
//! | a sender queues on a rendezvous (`queued_locked`) | a receiver queues on a rendezvous (`queued_locked`) |
//! | every sender is gone (`claim_all`)      | every receiver is gone (`claim_all`)       |
//! | a timer's item falls due (the watcher's deadline) | |
//!
//! A partner search passes over watchers, and an item or slot taken by a partner changes
//! nothing a watcher waits for, so a watcher never takes a wake-up meant for a real party.
//! Each of these steps runs only where a queue was already found non-empty: with no watcher
//! the `send`/`recv` paths run the instructions they ran before watchers existed.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::task::Waker;
use std::time::Instant;

use super::error::{TryRecvError, TrySendError};
use super::timer::Timer;
use super::wait::Side;
use super::waiters::{Signal, Waiters};
use crate::loom::lock::{Mutex, MutexGuard};
use crate::loom::{AtomicUsize, Ordering::*};

/// Capacity of an unbounded channel.
pub(crate) const UNBOUNDED: usize = usize::MAX;

/// The most a bounded channel's buffer allocates before its first item: 64 KiB (a
/// `bounded(128)` of values up to 512 bytes is whole from the start).
const PREALLOCATE_BYTES: usize = 64 * 1024;

/// A buffer that grew past its starting size gives memory back while draining, down to this
/// many bytes (or the bounded channel's preallocation, if larger): one 4 KiB page, which is not
/// worth a reallocation to return. See `shrink_locked`.
const KEEP_BYTES: usize = 4 * 1024;

pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
    /// `UNBOUNDED`, or the bound (0: rendezvous). Immutable.
    pub(crate) cap: usize,
    /// The buffer capacity a drain shrinks back to, never below (`shrink_locked`). Immutable.
    keep: usize,
    /// Live `Sender`s / `Receiver`s; the drop that takes one to 0 disconnects that side.
    pub(crate) senders: AtomicUsize,
    pub(crate) receivers: AtomicUsize,
}

pub(crate) struct State<T> {
    pub(crate) buf: VecDeque<T>,
    /// Every `Sender` is gone: receivers drain `buf`, then get `Disconnected`.
    pub(crate) senders_gone: bool,
    /// Every `Receiver` is gone: `buf` was dropped, sends fail and hand their value back.
    pub(crate) receivers_gone: bool,
    /// Blocked senders; each packet holds the value offered.
    pub(crate) senders: Waiters<T>,
    /// Blocked receivers; each packet receives the value handed over.
    pub(crate) receivers: Waiters<T>,
    /// `after`/`tick` channels: the clock is their sender (`timer.rs`). `None` otherwise;
    /// boxed so that the state of every other channel stays one pointer larger, not five.
    pub(crate) timer: Option<Box<Timer<T>>>,
}

/// A waiter to wake once the lock is released.
pub(crate) type Wake = Option<Waker>;

/// Hands `w` to the running fiber's worker to wake at its next switch-out, or returns it
/// when no fiber runs on this thread (a plain thread, or a loom model).
fn defer_wake(w: Waker) -> Wake {
    crate::sched::context::with_worker(|worker| match worker {
        Some(worker) => worker.defer_wake(w),
        None => Some(w),
    })
}

/// After unlocking: wakes the claimed waiter, if any.
#[inline]
pub(crate) fn wake(w: Wake) {
    if let Some(w) = w {
        w.wake();
    }
}

impl<T> Chan<T> {
    pub(crate) fn new(cap: usize) -> Chan<T> {
        Chan::with_timer(cap, None)
    }

    /// A channel whose items come from `timer` (or from nowhere, for `never()`): it is
    /// created without a `Sender`, so its sender count never drops to 0.
    pub(crate) fn with_timer(cap: usize, timer: Option<Box<Timer<T>>>) -> Chan<T> {
        // A bounded buffer is allocated up front (a ring that never reallocates), up to
        // `PREALLOCATE_BYTES`; beyond that it grows as items arrive, so `bounded(1 << 40)` is
        // a channel with a large bound, not an allocation failure. An unbounded one grows.
        let size = std::mem::size_of::<T>().max(1);
        let buf = if cap == UNBOUNDED || timer.is_some() {
            VecDeque::new()
        } else {
            let most = (PREALLOCATE_BYTES / size).max(1);
            VecDeque::with_capacity(cap.min(most))
        };
        Chan {
            keep: buf.capacity().max(KEEP_BYTES / size),
            state: Mutex::new(State {
                buf,
                senders_gone: false,
                receivers_gone: false,
                senders: Waiters::new(),
                receivers: Waiters::new(),
                timer,
            }),
            cap,
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    /// Any thread. Critical sections never block, park or run user code (values are dropped
    /// after unlocking), so the lock is held for a few dozen instructions.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }

    /// Under the lock: sends `v` now if it can (to a waiting receiver, else into the buffer).
    /// `own`: the caller's `select!` waiter, whose own entries are not partners.
    #[inline] // as before watchers: the watcher steps are outlined (`claim_watchers`)
    pub(crate) fn try_send_locked(
        &self,
        st: &mut State<T>,
        v: T,
        own: Option<&Signal>,
    ) -> Result<Wake, TrySendError<T>> {
        if st.receivers_gone {
            return Err(TrySendError::Disconnected(v));
        }
        if !st.receivers.is_empty() {
            if let Some(mut c) = st.receivers.claim(own) {
                c.give(v);
                return Ok(c.finish());
            }
            if st.buf.len() < self.cap {
                st.buf.push_back(v);
                // No receiver waits: what is queued now are watchers (or `own`'s nodes).
                return Ok(st.receivers.claim_watchers());
            }
            return Err(TrySendError::Full(v));
        }
        if st.buf.len() < self.cap {
            st.buf.push_back(v);
            return Ok(None);
        }
        Err(TrySendError::Full(v))
    }

    /// Under the lock: receives now if it can (from the buffer, else from a waiting sender).
    pub(crate) fn try_recv_locked(
        &self,
        st: &mut State<T>,
        own: Option<&Signal>,
    ) -> Result<(T, Wake), TryRecvError> {
        if let Some(v) = st.buf.pop_front() {
            // A slot is free: the oldest waiting sender's value takes it. That sender's send
            // is done; it is woken when this fiber switches out (`Worker::defer_wake`).
            let mut woken = None;
            if !st.senders.is_empty() && st.buf.len() < self.cap {
                if let Some(mut c) = st.senders.claim(own) {
                    st.buf.push_back(c.take_offer());
                    woken = c.finish().and_then(defer_wake);
                } else {
                    // No sender waits to refill the slot: send watchers may go.
                    woken = st.senders.claim_watchers();
                }
            }
            if st.buf.capacity() > self.keep && st.buf.len() <= st.buf.capacity() / 4 {
                self.shrink_locked(st);
            }
            return Ok((v, woken));
        }
        // The emptiness test keeps the common miss inline (the search is not inlined).
        if !st.senders.is_empty() {
            if let Some(mut c) = st.senders.claim(own) {
                // Rendezvous (or a just-drained buffer): take the value from the sender itself.
                let v = c.take_offer();
                return Ok((v, c.finish()));
            }
        }
        if let Some(timer) = &mut st.timer {
            return timer.fire(Instant::now()).map(|v| (v, None));
        }
        if st.senders_gone {
            return Err(TryRecvError::Disconnected);
        }
        Err(TryRecvError::Empty)
    }

    /// Under the lock, after a receive left a buffer that grew past `keep` at most a quarter
    /// full: gives half of it back. The gap between the two (it must fill
    /// to the new capacity before growing again, and drain to a quarter of it before
    /// shrinking again) is the hysteresis: a length that hovers never reallocates twice in a
    /// row, and the copying is amortised O(1) per item, as for growth.
    #[cold]
    fn shrink_locked(&self, st: &mut State<T>) {
        let half = st.buf.capacity() / 2;
        st.buf.shrink_to(half.max(self.keep));
    }

    /// Under the lock: when an `after`/`tick` channel's next item is due (`None`: never, or
    /// not a timer channel). A waiting receiver wakes then to take it.
    pub(crate) fn timer_due(&self, st: &State<T>) -> Option<Instant> {
        st.timer.as_ref().and_then(|t| t.due())
    }

    /// Under the lock: would `try_send_locked` succeed or fail for good (not `Full`)?
    pub(crate) fn send_ready(&self, st: &State<T>, own: Option<&Signal>) -> bool {
        st.receivers_gone || st.buf.len() < self.cap || st.receivers.has_claimable(own)
    }

    /// Under the lock: would `try_recv_locked` return something other than `Empty`?
    pub(crate) fn recv_ready(&self, st: &State<T>, own: Option<&Signal>) -> bool {
        !st.buf.is_empty()
            || st.senders_gone
            || st.senders.has_claimable(own)
            || self.timer_due(st).is_some_and(|d| Instant::now() >= d)
    }

    /// Under the lock: a value that was handed to a receiver which then gave up on it (a
    /// dropped future) goes to another waiting receiver, else back to the front of the buffer
    /// (briefly exceeding the bound), so it is never lost.
    pub(crate) fn reinject_locked(&self, st: &mut State<T>, v: T) -> Result<Wake, T> {
        if st.receivers_gone {
            return Err(v); // nobody can ever receive it: the caller drops it
        }
        if let Some(mut c) = st.receivers.claim(None) {
            c.give(v);
            return Ok(c.finish());
        }
        st.buf.push_front(v);
        Ok(st.receivers.claim_watchers())
    }

    /// Under the lock, after a partner node was queued on `side` (a blocked `send`/`recv`, a
    /// `select!` arm, a future): on a rendezvous that makes the other side's operation
    /// possible, so its watchers go. Elsewhere the other queue holds no waiting watcher (a
    /// sender queues only on a full buffer, where a receive never blocks; a receiver only on an
    /// empty one), and the test is one load.
    #[inline]
    pub(crate) fn queued_locked(&self, st: &mut State<T>, side: Side) -> Wake {
        let other = match side {
            Side::Send => &mut st.receivers,
            Side::Recv => &mut st.senders,
        };
        if other.is_empty() {
            return None;
        }
        other.claim_watchers()
    }

    /// The last `Sender` is gone: wake every receiver (they drain the buffer, then see
    /// `Disconnected`).
    pub(crate) fn disconnect_senders(&self) {
        let woken = {
            let mut st = self.lock();
            st.senders_gone = true;
            st.receivers.claim_all()
        };
        woken.into_iter().for_each(Waker::wake);
    }

    /// The last `Receiver` is gone: drop what is buffered (exactly once, here, after
    /// unlocking) and wake every sender (their packets still hold their values).
    ///
    /// # Panics
    /// If an item's `Drop` panics: the first such panic, after every item was dropped.
    pub(crate) fn disconnect_receivers(&self) {
        let (woken, items) = {
            let mut st = self.lock();
            st.receivers_gone = true;
            (st.senders.claim_all(), std::mem::take(&mut st.buf))
        };
        woken.into_iter().for_each(Waker::wake);
        drop_items(items);
    }
}

/// Drops `items` front to back, each exactly once, even if some `Drop`s panic; then resumes
/// the first panic, so the caller (a `Receiver`'s drop) can catch it as with any value. Later
/// panics are swallowed, and so is the first if this thread is already unwinding (a second
/// panic leaving a destructor during unwinding aborts the process).
/// Rejected: dropping the `VecDeque` whole. Its drop glue keeps dropping the rest while the
/// first panic unwinds, and a second panicking item aborts the process ("panic in a
/// destructor during cleanup").
fn drop_items<T>(mut items: VecDeque<T>) {
    let mut first = None;
    while let Some(item) = items.pop_front() {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| drop(item))) {
            match first {
                None => first = Some(payload),
                Some(_) => discard(payload),
            }
        }
    }
    if let Some(payload) = first {
        if std::thread::panicking() {
            discard(payload);
        } else {
            panic::resume_unwind(payload);
        }
    }
}

/// Drops a panic payload that is not propagated; one whose own `Drop` panics is leaked.
fn discard(payload: Box<dyn std::any::Any + Send>) {
    if let Err(nested) = panic::catch_unwind(AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(nested);
    }
}

/// `Sender::clone`: one more live sender. Relaxed, as for `Arc`: the clone proves one is alive.
pub(crate) fn add_sender<T>(chan: &Chan<T>) {
    chan.senders.fetch_add(1, Relaxed);
}

/// `Receiver::clone`.
pub(crate) fn add_receiver<T>(chan: &Chan<T>) {
    chan.receivers.fetch_add(1, Relaxed);
}

/// `Sender::drop`. AcqRel: exactly one dropper sees 1; the disconnect itself synchronises
/// through the lock, so the ordering only pairs the counts with each other (as `Arc`'s drop).
pub(crate) fn drop_sender<T>(chan: &Chan<T>) {
    if chan.senders.fetch_sub(1, AcqRel) == 1 {
        chan.disconnect_senders();
    }
}

/// `Receiver::drop`. AcqRel as in `drop_sender`.
pub(crate) fn drop_receiver<T>(chan: &Chan<T>) {
    if chan.receivers.fetch_sub(1, AcqRel) == 1 {
        chan.disconnect_receivers();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Chan, KEEP_BYTES, UNBOUNDED};

    /// An unbounded channel drained after a burst gives the burst's memory back, and a length
    /// hovering around a capacity boundary does not reallocate back and forth.
    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let chan = Chan::<u64>::new(UNBOUNDED);
        let keep = KEEP_BYTES / 8;
        let mut st = chan.lock();
        for i in 0..100_000 {
            chan.try_send_locked(&mut st, i, None).unwrap();
        }
        assert!(st.buf.capacity() >= 100_000);
        for i in 0..100_000 {
            assert_eq!(chan.try_recv_locked(&mut st, None).unwrap().0, i);
        }
        assert_eq!(st.buf.capacity(), keep, "drained: back to the floor");

        // Hysteresis: fill to a capacity boundary, then hover one item around it.
        for i in 0..4 * keep {
            chan.try_send_locked(&mut st, i as u64, None).unwrap();
        }
        let grown = st.buf.capacity();
        for _ in 0..1_000 {
            chan.try_recv_locked(&mut st, None).unwrap();
            chan.try_send_locked(&mut st, 0, None).unwrap();
            assert_eq!(st.buf.capacity(), grown);
        }
    }

    /// A bounded channel whose buffer grew past its preallocated ring (a bound above 64 KiB)
    /// shrinks back to that ring when drained, never below it.
    #[test]
    fn a_bounded_buffer_shrinks_back_to_its_preallocation() {
        let chan = Chan::<u64>::new(100_000);
        let mut st = chan.lock();
        let ring = st.buf.capacity();
        for i in 0..100_000 {
            chan.try_send_locked(&mut st, i, None).unwrap();
        }
        while chan.try_recv_locked(&mut st, None).is_ok() {}
        assert_eq!(st.buf.capacity(), ring);
    }
}
