//! Blocking a fiber (or thread) on one channel operation, and getting its node back however
//! the wait ends: claimed, timed out, cancelled, or unwound by shutdown.
//!
//! The node and the signal live in `block`'s frame: a blocking `send`/`recv` allocates
//! nothing, and one woken by a claim returns without re-taking the channel lock (the claim's
//! token store was the notifier's last access to them; `waiters.rs`).

use std::time::Instant;

use super::channel::{wake, Chan, State};
use super::waiters::{Node, Signal, Waiters, CANCELLED, CLAIMING, TIMED_OUT, WAITING};
use crate::loom::lock::MutexGuard;
use crate::park::{self, ParkReason};

/// The token of a plain `send`/`recv` node (a `select!` uses its arm numbers instead).
pub(crate) const TOKEN: usize = 1;

/// Which of the channel's queues a node sits in.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Send,
    Recv,
}

impl Side {
    pub(crate) fn list<T>(self, st: &mut State<T>) -> &mut Waiters<T> {
        match self {
            Side::Send => &mut st.senders,
            Side::Recv => &mut st.receivers,
        }
    }
}

/// How a `block` ended.
pub(crate) enum Outcome<'a, T> {
    /// A notifier claimed the node; the packet tells the rest (`waiters.rs`).
    Claimed(Option<T>),
    /// The wait claimed itself (`TIMED_OUT` or `CANCELLED`): the node is back with its
    /// packet, and the lock is held.
    GaveUp(usize, Option<T>, MutexGuard<'a, State<T>>),
}

/// Takes the node back under the lock if the wait is left by unwinding (shutdown unwinds a
/// parked fiber from inside `park`): whatever its packet holds is dropped here, exactly once.
/// A value a sender offered and nobody took is dropped; one a receiver was handed is dropped;
/// a value already taken from a sender's packet was delivered. Declared after the node, so it
/// runs before the node is freed.
struct Registration<'c, 'n, T> {
    chan: &'c Chan<T>,
    node: &'n Node<T>,
    side: Side,
}

impl<'c, T> Registration<'c, '_, T> {
    /// Unlinks the node if a notifier has not, and takes its packet; the caller keeps the lock.
    fn finish(self) -> (Option<T>, MutexGuard<'c, State<T>>) {
        let this = std::mem::ManuallyDrop::new(self);
        let mut st = this.chan.lock();
        // SAFETY: the node was pushed into this side's list of this channel only.
        unsafe { this.side.list(&mut st).remove(this.node) };
        // Unlinked, under the lock: the packet is ours.
        (this.node.take_packet(), st)
    }
}

impl<T> Drop for Registration<'_, '_, T> {
    fn drop(&mut self) {
        let (packet, st) = Registration { ..*self }.finish();
        drop(st);
        drop(packet); // outside the lock: `T::drop` is user code
    }
}

/// Pushes a node with `packet` into `side`'s queue (the caller checked, under this same lock,
/// that the operation cannot complete now), unlocks, and waits.
///
/// Inlined into `send`/`recv`, where `side` is a constant: the call overhead this saves
/// more than pays for the readiness step (`queued_locked`). Callgrind, ping-pong over
/// `bounded(1)`: 1,323 instructions per round trip before watchers, 1,371 with them and
/// `block` called, 1,255 with it inlined.
#[inline]
pub(crate) fn block<'a, T>(
    chan: &'a Chan<T>,
    mut st: MutexGuard<'a, State<T>>,
    side: Side,
    packet: Option<T>,
    deadline: Option<Instant>,
) -> Outcome<'a, T> {
    let me = park::Caller::current();
    let signal = Signal::new(me.waker());
    let node = Node::new(TOKEN, packet);
    // SAFETY: `node` and `signal` live in this frame and are not moved. The node leaves the
    // list before the frame does: a claim unlinks it before the token we wait for, and every
    // other way out (own claim, unwinding) goes through `Registration::finish`, which unlinks
    // it under the lock (waiting out any claim in progress, which holds that lock).
    unsafe { side.list(&mut st).push(&node, &signal) };
    match chan.queued_locked(&mut st, side) {
        None => drop(st),
        watchers => {
            drop(st);
            wake(watchers);
        }
    }
    let reg = Registration {
        chan,
        node: &node,
        side,
    };
    let reason = match side {
        Side::Send => ParkReason::ChanSend,
        Side::Recv => ParkReason::ChanRecv,
    };
    me.note_waiting(std::ptr::from_ref(chan) as usize, 0); // for `fibra::debug`
    match wait_as(me, &signal, reason, deadline) {
        token @ (TIMED_OUT | CANCELLED) => {
            let (packet, st) = reg.finish();
            Outcome::GaveUp(token, packet, st)
        }
        _ => {
            // The notifier unlinked the node and its token store was its last access.
            std::mem::forget(reg);
            Outcome::Claimed(node.take_packet())
        }
    }
}

/// The owner: parks until a notifier's token is in `signal`, or claims the signal itself when
/// `deadline` passes (`TIMED_OUT`) or the runtime unwinds this fiber (`CANCELLED`). Returns
/// the final token (never `WAITING` or `CLAIMING`).
pub(crate) fn wait(signal: &Signal, reason: ParkReason, deadline: Option<Instant>) -> usize {
    wait_as(park::Caller::current(), signal, reason, deadline)
}

/// `wait`, for a caller already looked up.
fn wait_as(
    me: park::Caller,
    signal: &Signal,
    reason: ParkReason,
    deadline: Option<Instant>,
) -> usize {
    loop {
        match signal.state() {
            WAITING => {}
            // A claim is being published under a lock, which takes a few instructions; its
            // waker is woken after that, so park (yield the thread if parking returns at once).
            CLAIMING => {
                if me.cancelling() {
                    std::thread::yield_now();
                } else {
                    me.park(reason);
                }
                continue;
            }
            token => return token,
        }
        if me.cancelling() {
            if signal.claim_self(CANCELLED) {
                return CANCELLED;
            }
            continue;
        }
        match deadline {
            Some(d) if Instant::now() >= d => {
                if signal.claim_self(TIMED_OUT) {
                    return TIMED_OUT;
                }
            }
            Some(d) => crate::time::park_until(reason, d),
            None => me.park(reason),
        }
    }
}
