//! Channels that park fibers, not threads: MPMC [`bounded`] (including `bounded(0)`, a
//! rendezvous), [`unbounded`], [`oneshot`], timer channels ([`after`], [`at`], [`tick`],
//! [`never()`]), and [`select!`](crate::select) / [`select_biased!`](crate::select_biased) /
//! [`Select`] over any of them ([`Select::ready`] waits for readiness without performing); and [`broadcast`] (every receiver gets every item) and
//! [`watch`] (the latest value).
//!
//! ```
//! use fibra::chan;
//! # fibra::run(|| {
//! let (tx, rx) = chan::bounded::<u64>(128);
//! let producers: Vec<_> = (0..4u64)
//!     .map(|p| { let tx = tx.clone(); fibra::spawn(move || for i in 0..100 { tx.send(p * 100 + i).unwrap() }) })
//!     .collect();
//! drop(tx);
//! let sum: u64 = rx.iter().sum(); // ends when every sender is gone
//! for p in producers { p.join().unwrap(); }
//! assert_eq!(sum, (0..400).sum());
//! # });
//! ```
//!
//! One channel serves every kind of caller at once: a fiber parks (its worker runs other
//! fibers), a plain OS thread blocks, and `async` code awaits [`Sender::send_async`] /
//! [`Receiver::recv_async`].
//!
//! # Disconnection
//! When every [`Sender`] is gone, receivers still get what is buffered, then [`RecvError`].
//! When every [`Receiver`] is gone, buffered items are dropped (once) and sends fail with the
//! value handed back. Every failed or timed-out send hands its value back.
//!
//! # Shutdown
//! A fiber unwound by runtime shutdown while parked in `send`, `recv` or `select!` takes its
//! registration back on the way out: an item it was sending is either delivered (if a
//! receiver took it first) or dropped, exactly once; an item handed to it is dropped once.
//! Waits started *during* that unwinding (in a destructor) return a disconnection error.
//!
//! # Memory ordering
//! A `send` happens-before the `recv` (or `select!` arm) that returns its value.
//!
//! # When a blocked sender resumes
//! A receive that frees a slot of a full channel moves the oldest blocked sender's value into
//! it, so that `send` has completed; the sender itself resumes when the receiving fiber next
//! parks, yields (every 128 operations at the latest, see [`coop`](crate::coop)) or finishes.
//! Resumed at once, a sender on another worker would mostly find the buffer refilled by the
//! other blocked senders and block again, once per item; resumed then, it finds room for a
//! run of items. A receiver that computes for long without calling fibra keeps it waiting
//! that long.
//!
//! # Design
//! `bounded(n)`, `bounded(0)` and `unbounded()` are one algorithm with different capacities
//! (`channel.rs`); a blocked party waits on a node in the channel's queue that carries its
//! value (`waiters.rs`), as in Go's `hchan`/`sudog`: on its own stack for `send`/`recv`, and
//! the notifier that pairs with it unlinks it, so neither side allocates or re-locks.

pub mod broadcast;
mod channel;
mod error;
mod future;
mod oneshot;
mod ready;
mod receiver;
mod select;
mod select_dyn;
mod select_macro;
mod sender;
mod timer;
mod wait;
mod waiters;
pub mod watch;

#[cfg(all(test, loom))]
mod loom_tests;

use std::sync::Arc;

pub use error::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SelectTimeoutError, SendError,
    SendTimeoutError, TryReadyError, TryRecvError, TrySelectError, TrySendError,
};
pub use future::{RecvFuture, SendFuture};
pub use oneshot::{oneshot, OneshotReceiver, OneshotSender};
pub use receiver::{IntoIter, Iter, Receiver, TryIter};
pub use select_dyn::{Select, SelectedOperation};
pub use sender::Sender;
pub use timer::{after, at, never, tick};

/// What `select!` expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use super::select::{
        deadline, run, Arm, Ctx, IntoDeadline, Mode, RecvArm, Reg, SelectReceiver, SelectSender,
        SendArm,
    };
}

/// Creates a channel holding at most `cap` items; `send` waits while it is full.
///
/// `bounded(0)` is a rendezvous: a `send` completes only when a receiver takes the value.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded(2);
/// tx.send(1).unwrap();
/// tx.send(2).unwrap();
/// assert!(tx.try_send(3).is_err()); // full
/// assert_eq!(rx.recv(), Ok(1));
/// # });
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    // `usize::MAX` means unbounded inside; no real bound gets near it.
    let chan = Arc::new(channel::Chan::new(cap.min(channel::UNBOUNDED - 1)));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// Creates a channel without a bound; `send` never waits.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// for i in 0..1000 { tx.send(i).unwrap(); }
/// assert_eq!(rx.len(), 1000);
/// # });
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(channel::Chan::new(channel::UNBOUNDED));
    (Sender { chan: chan.clone() }, Receiver { chan })
}
