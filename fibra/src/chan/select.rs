//! `select!`: wait on several channel operations, complete exactly one.
//!
//! # Protocol
//! ```text
//! 1. Try every arm without waiting, starting at a random arm (fairness); done if one succeeds.
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
//! Rejected: completing a ready arm during registration (a partner seen as claimable may time
//! out before our claim of it; the abort-and-retry of crossbeam-channel is simpler).

use std::cell::Cell;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::channel::wake;
use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::oneshot::OneshotReceiver;
use super::receiver::Receiver;
use super::sender::Sender;
use super::wait::{wait, Side};
use super::waiters::{Node, Signal, Waiters, ABORTED, CANCELLED, TIMED_OUT, WAITING};
use crate::park::{self, ParkReason};

/// How a `select!` without a ready arm behaves.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// No `default`: wait for an arm.
    Block,
    /// `default => ...`: do not wait.
    NonBlocking,
    /// `default(timeout) => ...`.
    Timeout(Duration),
}

/// The signal a `select!` registers in its arms' channels (arm tokens are `1..=arms`).
#[doc(hidden)]
pub struct Ctx {
    signal: Signal,
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
    /// Registers `ctx` with `token` unless the operation could complete now.
    fn register(&mut self, ctx: &Ctx, token: usize) -> Reg;
    /// Takes the registration back; `won`: this arm's token claimed the signal.
    fn unregister(&mut self, ctx: &Ctx, won: bool);
    /// The select ended by cancellation (shutdown): this arm reports a disconnection.
    fn cancel(&mut self);
}

/// Anything a `recv(...)` arm accepts.
#[doc(hidden)]
pub trait SelectReceiver<T> {
    fn receiver(&self) -> &Receiver<T>;
}
impl<T> SelectReceiver<T> for Receiver<T> {
    fn receiver(&self) -> &Receiver<T> {
        self
    }
}
impl<T> SelectReceiver<T> for OneshotReceiver<T> {
    fn receiver(&self) -> &Receiver<T> {
        &self.rx
    }
}
impl<T, R: SelectReceiver<T> + ?Sized> SelectReceiver<T> for &R {
    fn receiver(&self) -> &Receiver<T> {
        (**self).receiver()
    }
}

/// Anything a `send(...)` arm accepts.
#[doc(hidden)]
pub trait SelectSender<T> {
    fn sender(&self) -> &Sender<T>;
}
impl<T> SelectSender<T> for Sender<T> {
    fn sender(&self) -> &Sender<T> {
        self
    }
}
impl<T, S: SelectSender<T> + ?Sized> SelectSender<T> for &S {
    fn sender(&self) -> &Sender<T> {
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
    pub fn new<R: SelectReceiver<T> + ?Sized>(rx: &'a R) -> Self {
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
        match self.rx.try_recv() {
            Ok(v) => self.result = Some(Ok(v)),
            Err(TryRecvError::Disconnected) => self.result = Some(Err(RecvError)),
            Err(TryRecvError::Empty) => return false,
        }
        true
    }

    fn register(&mut self, ctx: &Ctx, token: usize) -> Reg {
        let chan = &*self.rx.chan;
        let mut st = chan.lock();
        if chan.recv_ready(&st, Some(&ctx.signal)) {
            return Reg::Ready;
        }
        self.node = Some(ArmNode::register(&mut st.receivers, ctx, token, None));
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
}

/// A `send(tx, value) -> res` arm. Its value is evaluated when the `select!` starts and
/// dropped if another arm is chosen (as in Go).
#[doc(hidden)]
pub struct SendArm<'a, T> {
    tx: &'a Sender<T>,
    value: Option<T>,
    result: Option<Result<(), SendError<T>>>,
    node: Option<ArmNode<T>>,
}

impl<'a, T> SendArm<'a, T> {
    pub fn new<S: SelectSender<T> + ?Sized>(tx: &'a S, value: T) -> Self {
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

    fn value(&mut self) -> T {
        match self.value.take() {
            Some(v) => v,
            None => fatal!("chan::select: a send arm lost its value"),
        }
    }
}

impl<T> Arm for SendArm<'_, T> {
    fn try_now(&mut self) -> bool {
        let v = self.value();
        match self.tx.try_send(v) {
            Ok(()) => self.result = Some(Ok(())),
            Err(TrySendError::Disconnected(v)) => self.result = Some(Err(SendError(v))),
            Err(TrySendError::Full(v)) => {
                self.value = Some(v);
                return false;
            }
        }
        true
    }

    fn register(&mut self, ctx: &Ctx, token: usize) -> Reg {
        let chan = &*self.tx.chan;
        let mut st = chan.lock();
        if chan.send_ready(&st, Some(&ctx.signal)) {
            return Reg::Ready;
        }
        let v = self.value();
        self.node = Some(ArmNode::register(&mut st.senders, ctx, token, Some(v)));
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
        let v = self.value();
        self.result = Some(Err(SendError(v)));
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
/// the `default` arm is due.
#[doc(hidden)]
pub fn run(arms: &mut [&mut dyn Arm], mode: Mode) -> bool {
    let n = arms.len();
    let start = random_below(n);
    let deadline = match mode {
        Mode::Timeout(d) => Instant::now().checked_add(d),
        _ => None,
    };
    loop {
        for i in 0..n {
            if arms[(start + i) % n].try_now() {
                return true;
            }
        }
        match (mode, deadline) {
            (Mode::NonBlocking, _) => return false,
            (Mode::Timeout(_), Some(d)) if Instant::now() >= d => return false,
            _ => {}
        }
        let ctx = Ctx {
            signal: Signal::new(park::current_waker()),
        };
        let regs = Registrations {
            arms: &mut *arms,
            ctx: &ctx,
        };
        let mut ready = false;
        for i in 0..n {
            let k = (start + i) % n;
            if ctx.signal.state() != WAITING {
                break; // claimed through an earlier arm: no need to register more
            }
            if regs.arms[k].register(&ctx, k + 1) == Reg::Ready {
                ready = true;
                break;
            }
        }
        let token = if !ready {
            wait(&ctx.signal, ParkReason::Select, deadline)
        } else if ctx.signal.claim_self(ABORTED) {
            ABORTED
        } else {
            wait(&ctx.signal, ParkReason::Select, None) // an arm's claim beat our abort: it wins
        };
        regs.finish(token);
        match token {
            ABORTED => continue,
            TIMED_OUT => return false,
            CANCELLED => {
                arms[start].cancel();
                return true;
            }
            _ => return true,
        }
    }
}

/// A pseudo-random number below `n` (> 0): per-thread xorshift, seeded from std's hasher
/// keys. Only fairness depends on it.
fn random_below(n: usize) -> usize {
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

/// Waits on several channel operations and runs the arm of the one that completes.
///
/// ```text
/// select! {
///     recv(rx) -> msg => expr,            // msg: Result<T, RecvError>
///     send(tx, value) -> res => expr,     // res: Result<(), SendError<T>>
///     default => expr,                    // optional: nothing ready now
///     default(Duration) => expr,          // or: nothing ready within the timeout
/// }
/// ```
/// A closed channel's arm is ready (its result is the error). Among ready arms one is
/// chosen at random, so none starves. Without `default` the calling fiber parks (a plain
/// thread blocks) until an arm completes. A send arm's value is evaluated when the `select!`
/// starts and dropped if another arm is chosen; arm bodies may `break`, `continue` or
/// `return`. The receive side may be a [`Receiver`](crate::chan::Receiver) or a
/// [`OneshotReceiver`](crate::chan::OneshotReceiver), by value or reference.
///
/// # Memory ordering
/// As for `send`/`recv`: a send happens-before the receive that returns its value.
///
/// ```
/// use fibra::chan;
/// use std::time::Duration;
/// # fibra::run(|| {
/// let (tx, rx) = chan::bounded::<i32>(1);
/// let (_quit_tx, quit_rx) = chan::unbounded::<()>();
/// tx.send(7).unwrap();
/// let got = fibra::select! {
///     recv(rx) -> msg => msg.unwrap(),
///     recv(quit_rx) -> _ => -1,
///     default(Duration::from_millis(10)) => 0,
/// };
/// assert_eq!(got, 7);
/// # });
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!(() () $($tokens)*)
    };
}

/// `select!` step 1: collect the arms as `[recv (rx) pat body]` / `[send (tx) (v) pat body]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    (($($arms:tt)*) $default:tt) => {
        $crate::__select_emit!($default () $($arms)*)
    };
    (($($arms:tt)*) $default:tt $(,)? recv($rx:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* [recv ($rx) $p $body]) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt $(,)? recv($rx:expr) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!(($($arms)* [recv ($rx) $p $body]) $default $($($rest)*)?)
    };
    (($($arms:tt)*) $default:tt $(,)? send($tx:expr, $v:expr) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)* [send ($tx) ($v) $p $body]) $default $($rest)*)
    };
    (($($arms:tt)*) $default:tt $(,)? send($tx:expr, $v:expr) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!(($($arms)* [send ($tx) ($v) $p $body]) $default $($($rest)*)?)
    };
    (($($arms:tt)*) () $(,)? default => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)*) (($crate::chan::__private::Mode::NonBlocking) $body) $($rest)*)
    };
    (($($arms:tt)*) () $(,)? default => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!(($($arms)*) (($crate::chan::__private::Mode::NonBlocking) $body) $($($rest)*)?)
    };
    (($($arms:tt)*) () $(,)? default($d:expr) => $body:block $($rest:tt)*) => {
        $crate::__select_parse!(($($arms)*) (($crate::chan::__private::Mode::Timeout($d)) $body) $($rest)*)
    };
    (($($arms:tt)*) () $(,)? default($d:expr) => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!(($($arms)*) (($crate::chan::__private::Mode::Timeout($d)) $body) $($($rest)*)?)
    };
    (($($arms:tt)*) $default:tt , ) => {
        $crate::__select_emit!($default () $($arms)*)
    };
    ($arms:tt $default:tt $($rest:tt)+) => {
        ::core::compile_error!(concat!(
            "fibra::select!: expected `recv(rx) -> msg => expr`, `send(tx, value) -> res => expr`, ",
            "`default => expr` or `default(timeout) => expr` (one default at most), found: ",
            stringify!($($rest)+)
        ))
    };
}

/// `select!` step 2: one local per arm (each step's `__fibra_arm` is a distinct binding by
/// hygiene), then run and dispatch.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_emit {
    ($default:tt ($($done:tt)*) [recv $rx:tt $p:tt $body:tt] $($rest:tt)*) => {{
        let __fibra_rx = &$rx; // a `let`, so a temporary `&rx` lives as long as the arm
        let mut __fibra_arm = $crate::chan::__private::RecvArm::new(__fibra_rx);
        $crate::__select_emit!($default ($($done)* [__fibra_arm $p $body]) $($rest)*)
    }};
    ($default:tt ($($done:tt)*) [send $tx:tt $v:tt $p:tt $body:tt] $($rest:tt)*) => {{
        let __fibra_tx = &$tx;
        let mut __fibra_arm = $crate::chan::__private::SendArm::new(__fibra_tx, $v);
        $crate::__select_emit!($default ($($done)* [__fibra_arm $p $body]) $($rest)*)
    }};
    (() ($([$arm:ident $p:tt $body:tt])+)) => {{
        $crate::chan::__private::run(
            &mut [$(&mut $arm as &mut dyn $crate::chan::__private::Arm),+],
            $crate::chan::__private::Mode::Block,
        );
        $( if let ::core::option::Option::Some(__fibra_res) = $arm.take() {
            let $p = __fibra_res;
            $body
        } else )+ {
            ::core::unreachable!("fibra::select!: no arm completed")
        }
    }};
    (($mode:tt $default:tt) ($([$arm:ident $p:tt $body:tt])*)) => {{
        let __fibra_done = $crate::chan::__private::run(
            &mut [$(&mut $arm as &mut dyn $crate::chan::__private::Arm),*],
            $mode,
        );
        $( if let ::core::option::Option::Some(__fibra_res) = $arm.take() {
            let $p = __fibra_res;
            $body
        } else )* {
            let _ = __fibra_done;
            $default
        }
    }};
}
