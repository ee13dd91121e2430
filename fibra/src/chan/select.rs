//! `select!`: wait on several channel operations, complete exactly one.
//!
//! # Protocol
//! ```text
//! 1. Try every arm without waiting, in a fresh random order (fairness; `select_biased!`: in
//!    the written order); done if one succeeds, which counts once against the coop budget.
//! 2. One Signal; register a node per arm in its channel, with token = arm number (a send
//!    arm's node carries its value). A registration that finds its arm ready stops and aborts.
//! 3. Wait (unless aborted). The first channel whose claim wins picks the arm.
//! 4. Take every node back, each under its channel's lock (which also waits out a claim in
//!    progress); the won arm's packet is its outcome (waiters.rs); the others' send values
//!    come back to their arms. An abort goes back to 1.
//! ```
//! Registering and checking share each channel's critical section, and a claim on an
//! earlier-registered channel just makes a later registration's readiness moot, so no
//! wake-up is lost and exactly one arm completes. A select never pairs with itself: its send
//! arm skips its own receive entries on the same channel.
//! A timer channel's arm (`after`, `tick`) adds its due time to the wait's deadline; waking
//! at it (not at the select's own deadline) goes back to 1 like an abort.
//! Rejected: starting at a random arm and taking the first ready one after it (a ready arm
//! that follows k arms that are not ready wins (k+1)/n of the time, not 1/ready).
//! Rejected: completing a ready arm during registration (a partner seen as claimable may time
//! out before our claim of it; the abort-and-retry of crossbeam-channel is simpler).

use std::cell::Cell;
use std::ops::Deref;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::channel::wake;
use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::oneshot::OneshotReceiver;
use super::receiver::{earliest, Receiver};
use super::sender::Sender;
use super::wait::{wait, Side};
use super::waiters::{Node, Signal, Waiters, ABORTED, CANCELLED, TIMED_OUT, WAITING};
use crate::coop;
use crate::park::{self, ParkReason};

/// How a `select!` without a ready arm behaves.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// No `default`: wait for an arm.
    Block,
    /// `default => ...` or `default() => ...`: do not wait.
    NonBlocking,
    /// `default(timeout) => ...` or `default(deadline) => ...`; `None`: beyond `Instant`'s
    /// range, so never.
    Deadline(Option<Instant>),
}

/// What `default(..)` accepts: a timeout (`Duration`) or a deadline (`Instant`).
#[doc(hidden)]
pub trait IntoDeadline {
    fn into_deadline(self) -> Option<Instant>;
}
impl IntoDeadline for Duration {
    fn into_deadline(self) -> Option<Instant> {
        Instant::now().checked_add(self)
    }
}
impl IntoDeadline for Instant {
    fn into_deadline(self) -> Option<Instant> {
        Some(self)
    }
}

/// `default(x)`: the mode for a timeout or a deadline `x`.
#[doc(hidden)]
pub fn deadline<D: IntoDeadline>(d: D) -> Mode {
    Mode::Deadline(d.into_deadline())
}

/// The signal a `select!` registers in its arms' channels (arm tokens are `1..=arms`).
#[doc(hidden)]
pub struct Ctx {
    signal: Signal,
}

impl Ctx {
    /// A signal that wakes the calling fiber (or thread).
    pub(crate) fn new() -> Ctx {
        Ctx {
            signal: Signal::new(park::current_waker()),
        }
    }

    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }
}

/// An arm's registered node, from `Box::leak`; freed by `take` once unlinked.
struct ArmNode<T>(NonNull<Node<T>>);

impl<T> ArmNode<T> {
    /// Under the lock: registers a node with `token` and `packet` in `list`, for `ctx`.
    fn register(list: &mut Waiters<T>, ctx: &Ctx, token: usize, packet: Option<T>) -> Self {
        let node = NonNull::from(Box::leak(Box::new(Node::new(token, packet))));
        // SAFETY: the node is on the heap until `take` frees it, after unlinking it under the
        // lock; `ctx` outlives every registration (`run` takes them all back before it
        // returns, or `Registrations::drop` does when unwinding); `list` is its only list.
        unsafe { list.push(node.as_ref(), &ctx.signal) };
        ArmNode(node)
    }

    /// Under the lock: queues a readiness watcher with `token` in `list`, for `ctx`.
    fn watch(list: &mut Waiters<T>, ctx: &Ctx, token: usize) -> Self {
        let node = NonNull::from(Box::leak(Box::new(Node::new(token, None))));
        // SAFETY: as in `register` (`ready::run` takes every watcher back before it returns,
        // or `Watches::drop` does when unwinding); the packet is empty.
        unsafe { list.push_watcher(node.as_ref(), &ctx.signal) };
        ArmNode(node)
    }

    /// Under the lock: unlinks the node if a claim has not, frees it, returns its packet.
    fn take(self, list: &mut Waiters<T>) -> Option<T> {
        // SAFETY: alive until freed below; only ever pushed into `list`.
        let node = unsafe { self.0.as_ref() };
        // SAFETY: as above.
        unsafe { list.remove(node) };
        // Unlinked, under the lock: the packet is ours.
        let packet = node.take_packet();
        // SAFETY: from `Box::leak` in `register`; unlinked, so no notifier can reach it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        packet
    }
}

/// What a registration found.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum Reg {
    Registered,
    /// The arm could complete now: do not wait, try again.
    Ready,
}

/// One arm of a `select!` (a `recv` or a `send`). Implemented by [`RecvArm`] and [`SendArm`].
#[doc(hidden)]
pub trait Arm {
    /// Attempts the operation without waiting; true if the arm completed (outcome stored).
    fn try_now(&mut self) -> bool;
    /// Registers `ctx` with `token` unless the operation could complete now. A timer
    /// channel's arm lowers `wake_at` to its due time.
    fn register(&mut self, ctx: &Ctx, token: usize, wake_at: &mut Option<Instant>) -> Reg;
    /// Takes the registration back; `won`: this arm's token claimed the signal.
    fn unregister(&mut self, ctx: &Ctx, won: bool);
    /// The select ended by cancellation (shutdown): this arm reports a disconnection.
    fn cancel(&mut self);
    /// True if this arm holds an outcome (it was the one selected).
    fn completed(&self) -> bool;
    /// `Select::ready`: true if the operation would not block now (it is not performed).
    fn ready_now(&self) -> bool;
    /// `Select::ready`: queues a watcher for `ctx` with `token` unless the operation would
    /// not block now. A timer channel's arm lowers `wake_at` to its due time.
    fn watch(&mut self, ctx: &Ctx, token: usize, wake_at: &mut Option<Instant>) -> Reg;
    /// Takes the watcher back, if one is queued.
    fn unwatch(&mut self);
}

/// Anything a `recv(...)` arm accepts: a receiver, or anything that derefs to one (`&rx`,
/// `Box`, `Arc`, ...).
#[doc(hidden)]
pub trait SelectReceiver {
    type Item;
    fn receiver(&self) -> &Receiver<Self::Item>;
}
impl<T> SelectReceiver for Receiver<T> {
    type Item = T;
    fn receiver(&self) -> &Receiver<T> {
        self
    }
}
impl<T> SelectReceiver for OneshotReceiver<T> {
    type Item = T;
    fn receiver(&self) -> &Receiver<T> {
        &self.rx
    }
}
impl<D: Deref> SelectReceiver for D
where
    D::Target: SelectReceiver,
{
    type Item = <D::Target as SelectReceiver>::Item;
    fn receiver(&self) -> &Receiver<Self::Item> {
        (**self).receiver()
    }
}

/// Anything a `send(...)` arm accepts: a sender, or anything that derefs to one.
#[doc(hidden)]
pub trait SelectSender {
    type Item;
    fn sender(&self) -> &Sender<Self::Item>;
}
impl<T> SelectSender for Sender<T> {
    type Item = T;
    fn sender(&self) -> &Sender<T> {
        self
    }
}
impl<D: Deref> SelectSender for D
where
    D::Target: SelectSender,
{
    type Item = <D::Target as SelectSender>::Item;
    fn sender(&self) -> &Sender<Self::Item> {
        (**self).sender()
    }
}

/// A `recv(rx) -> msg` arm.
#[doc(hidden)]
pub struct RecvArm<'a, T> {
    rx: &'a Receiver<T>,
    result: Option<Result<T, RecvError>>,
    node: Option<ArmNode<T>>,
}

impl<'a, T> RecvArm<'a, T> {
    pub fn new<R: SelectReceiver<Item = T> + ?Sized>(rx: &'a R) -> Self {
        RecvArm {
            rx: rx.receiver(),
            result: None,
            node: None,
        }
    }

    /// The outcome, if this arm was the one selected.
    pub fn take(&mut self) -> Option<Result<T, RecvError>> {
        self.result.take()
    }
}

impl<T> Arm for RecvArm<'_, T> {
    fn try_now(&mut self) -> bool {
        match self.rx.try_recv_uncounted() {
            Ok(v) => self.result = Some(Ok(v)),
            Err(TryRecvError::Disconnected) => self.result = Some(Err(RecvError)),
            Err(TryRecvError::Empty) => return false,
        }
        true
    }

    fn register(&mut self, ctx: &Ctx, token: usize, wake_at: &mut Option<Instant>) -> Reg {
        let chan = &*self.rx.chan;
        let mut st = chan.lock();
        if chan.recv_ready(&st, Some(&ctx.signal)) {
            return Reg::Ready;
        }
        *wake_at = earliest(*wake_at, chan.timer_due(&st));
        self.node = Some(ArmNode::register(&mut st.receivers, ctx, token, None));
        let watchers = chan.queued_locked(&mut st, Side::Recv);
        drop(st);
        wake(watchers);
        Reg::Registered
    }

    fn unregister(&mut self, ctx: &Ctx, won: bool) {
        let Some(node) = self.node.take() else { return };
        let chan = &*self.rx.chan;
        let mut st = chan.lock();
        let packet = node.take(Side::Recv.list(&mut st));
        if !won {
            drop(st);
            drop(packet); // `Some` only when unwinding after a win: dropped exactly once
            return;
        }
        self.result = Some(match packet {
            Some(v) => Ok(v),
            // Claimed empty-handed: every sender is gone; drain what is left first.
            None => match chan.try_recv_locked(&mut st, Some(&ctx.signal)) {
                Ok((v, woken)) => {
                    drop(st);
                    wake(woken);
                    Ok(v)
                }
                Err(_) => Err(RecvError),
            },
        });
    }

    fn cancel(&mut self) {
        self.result = Some(Err(RecvError));
    }

    fn completed(&self) -> bool {
        self.result.is_some()
    }

    fn ready_now(&self) -> bool {
        let chan = &*self.rx.chan;
        chan.recv_ready(&chan.lock(), None)
    }

    fn watch(&mut self, ctx: &Ctx, token: usize, wake_at: &mut Option<Instant>) -> Reg {
        let chan = &*self.rx.chan;
        let mut st = chan.lock();
        if chan.recv_ready(&st, Some(&ctx.signal)) {
            return Reg::Ready;
        }
        *wake_at = earliest(*wake_at, chan.timer_due(&st));
        self.node = Some(ArmNode::watch(&mut st.receivers, ctx, token));
        Reg::Registered
    }

    fn unwatch(&mut self) {
        if let Some(node) = self.node.take() {
            let packet = node.take(&mut self.rx.chan.lock().receivers);
            debug_assert!(packet.is_none(), "a watcher is never handed a value");
        }
    }
}

/// A `send(tx, value) -> res` arm. Its value is evaluated when the `select!` starts and
/// dropped if another arm is chosen (as in Go). In a `Select`, an arm whose value was sent
/// is spent: never ready again.
#[doc(hidden)]
pub struct SendArm<'a, T> {
    tx: &'a Sender<T>,
    value: Option<T>,
    result: Option<Result<(), SendError<T>>>,
    node: Option<ArmNode<T>>,
}

impl<'a, T> SendArm<'a, T> {
    pub fn new<S: SelectSender<Item = T> + ?Sized>(tx: &'a S, value: T) -> Self {
        SendArm {
            tx: tx.sender(),
            value: Some(value),
            result: None,
            node: None,
        }
    }

    /// The outcome, if this arm was the one selected.
    pub fn take(&mut self) -> Option<Result<(), SendError<T>>> {
        self.result.take()
    }
}

impl<T> Arm for SendArm<'_, T> {
    fn try_now(&mut self) -> bool {
        let Some(v) = self.value.take() else {
            return false; // a `Select` operation whose value was sent: never again
        };
        match self.tx.try_send_uncounted(v) {
            Ok(()) => self.result = Some(Ok(())),
            Err(TrySendError::Disconnected(v)) => self.result = Some(Err(SendError(v))),
            Err(TrySendError::Full(v)) => {
                self.value = Some(v);
                return false;
            }
        }
        true
    }

    fn register(&mut self, ctx: &Ctx, token: usize, _wake_at: &mut Option<Instant>) -> Reg {
        let chan = &*self.tx.chan;
        let mut st = chan.lock();
        let Some(v) = self.value.take() else {
            return Reg::Registered; // spent (`try_now`): waits for nothing
        };
        if chan.send_ready(&st, Some(&ctx.signal)) {
            self.value = Some(v);
            return Reg::Ready;
        }
        self.node = Some(ArmNode::register(&mut st.senders, ctx, token, Some(v)));
        let watchers = chan.queued_locked(&mut st, Side::Send);
        drop(st);
        wake(watchers);
        Reg::Registered
    }

    fn unregister(&mut self, _ctx: &Ctx, won: bool) {
        let Some(node) = self.node.take() else { return };
        let packet = node.take(Side::Send.list(&mut self.tx.chan.lock()));
        match (won, packet) {
            (true, None) => self.result = Some(Ok(())), // a receiver took it
            (true, Some(v)) => self.result = Some(Err(SendError(v))), // receivers gone
            (false, packet) => self.value = packet,     // not chosen: the value is ours again
        }
    }

    fn cancel(&mut self) {
        if let Some(v) = self.value.take() {
            self.result = Some(Err(SendError(v)));
        }
    }

    fn completed(&self) -> bool {
        self.result.is_some()
    }

    // Readiness is the channel's: a spent operation (its value sent) still watches it.
    fn ready_now(&self) -> bool {
        let chan = &*self.tx.chan;
        chan.send_ready(&chan.lock(), None)
    }

    fn watch(&mut self, ctx: &Ctx, token: usize, _wake_at: &mut Option<Instant>) -> Reg {
        let chan = &*self.tx.chan;
        let mut st = chan.lock();
        if chan.send_ready(&st, Some(&ctx.signal)) {
            return Reg::Ready;
        }
        self.node = Some(ArmNode::watch(&mut st.senders, ctx, token));
        Reg::Registered
    }

    fn unwatch(&mut self) {
        if let Some(node) = self.node.take() {
            let packet = node.take(&mut self.tx.chan.lock().senders);
            debug_assert!(packet.is_none(), "a watcher never offers a value");
        }
    }
}

/// Takes every registration back if the wait is left by unwinding (shutdown).
struct Registrations<'s, 'a> {
    arms: &'s mut [&'a mut dyn Arm],
    ctx: &'s Ctx,
}

impl Registrations<'_, '_> {
    fn finish(self, token: usize) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let ctx = this.ctx;
        for (k, arm) in this.arms.iter_mut().enumerate() {
            arm.unregister(ctx, token == k + 1);
        }
    }
}

impl Drop for Registrations<'_, '_> {
    fn drop(&mut self) {
        for arm in self.arms.iter_mut() {
            arm.unregister(self.ctx, false);
        }
    }
}

/// Runs a `select!`: true if an arm completed (its `take` returns the outcome), false if
/// the `default` arm is due. `biased`: try the arms in the order given, not a random one.
#[doc(hidden)]
pub fn run(arms: &mut [&mut dyn Arm], mode: Mode, biased: bool) -> bool {
    let n = arms.len();
    let mut small = [0usize; 16];
    let mut large = Vec::new();
    let order: &mut [usize] = if n <= small.len() {
        &mut small[..n]
    } else {
        large.resize(n, 0);
        &mut large
    };
    for (i, k) in order.iter_mut().enumerate() {
        *k = i;
    }
    let deadline = match mode {
        Mode::Deadline(d) => d,
        _ => None,
    };
    loop {
        // 1. Fisher-Yates, one step per arm tried: arm `order[i]` is uniform among those not
        // tried yet, so each ready arm is equally likely to be the first ready one found.
        for i in 0..n {
            if !biased {
                order.swap(i, i + random_below(n - i));
            }
            if arms[order[i]].try_now() {
                coop::consume(); // done without parking: counts against the fiber's budget
                return true;
            }
        }
        match mode {
            Mode::NonBlocking => {
                coop::consume(); // a polling loop of selects must let the others run too
                return false;
            }
            Mode::Deadline(d) if d.is_some_and(|d| Instant::now() >= d) => return false,
            _ => {}
        }
        let ctx = Ctx::new();
        let regs = Registrations {
            arms: &mut *arms,
            ctx: &ctx,
        };
        let mut ready = false;
        let mut wake_at = deadline;
        for &k in order.iter() {
            if ctx.signal.state() != WAITING {
                break; // claimed through an earlier arm: no need to register more
            }
            if regs.arms[k].register(&ctx, k + 1, &mut wake_at) == Reg::Ready {
                ready = true;
                break;
            }
        }
        let token = if !ready {
            wait(&ctx.signal, ParkReason::Select, wake_at)
        } else if ctx.signal.claim_self(ABORTED) {
            ABORTED
        } else {
            wait(&ctx.signal, ParkReason::Select, None) // an arm's claim beat our abort: it wins
        };
        regs.finish(token);
        match token {
            ABORTED => continue,
            // A timer arm's due time, not ours: try the arms again.
            TIMED_OUT if deadline.is_none_or(|d| Instant::now() < d) => continue,
            TIMED_OUT => return false,
            CANCELLED => {
                arms[order[0]].cancel();
                return true;
            }
            _ => return true,
        }
    }
}

/// A pseudo-random number below `n` (> 0): per-thread xorshift, seeded from std's hasher
/// keys. Only fairness depends on it.
pub(crate) fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (((x >> 32) * n as u64) >> 32) as usize
    })
}
