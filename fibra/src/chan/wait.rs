//! Blocking a fiber (or thread) on one channel operation, and getting its entry back however
//! the wait ends: claimed, timed out, cancelled, or unwound by shutdown.

use std::sync::Arc;
use std::time::Instant;

use super::channel::{Chan, State};
use super::waiters::{Entry, Waiters};
use crate::loom::sync::MutexGuard;
use crate::park::ParkReason;
use crate::sync::waiter::Waiter;

/// The token of a plain `send`/`recv` entry (a `select!` uses its arm numbers instead).
pub(crate) const TOKEN: usize = 1;

/// Which of the channel's queues an entry sits in.
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

    fn name(self) -> &'static str {
        match self {
            Side::Send => "send",
            Side::Recv => "recv",
        }
    }
}

/// Takes `waiter`'s entry back if the wait is left by unwinding (shutdown unwinds a parked
/// fiber from inside `park`): whatever its packet holds is dropped here, exactly once. A value
/// a sender offered and nobody took is dropped; one a receiver was handed is dropped; a value
/// already taken from a sender's packet was delivered. Removing the entry under the lock also
/// ends every notifier's access to it, so no claim is needed.
pub(crate) struct Registration<'a, T> {
    chan: &'a Chan<T>,
    waiter: &'a Waiter,
    side: Side,
    token: usize,
    armed: bool,
}

impl<'a, T> Registration<'a, T> {
    /// Owner, right after pushing `(waiter, token)` into `side`'s queue and unlocking.
    pub(crate) fn new(chan: &'a Chan<T>, waiter: &'a Waiter, side: Side, token: usize) -> Self {
        Registration {
            chan,
            waiter,
            side,
            token,
            armed: true,
        }
    }

    /// Takes the entry back (the normal way out); the caller keeps the lock.
    pub(crate) fn finish(mut self) -> (Entry<T>, MutexGuard<'a, State<T>>) {
        self.armed = false;
        let mut st = self.chan.lock();
        let e = Chan::unregister(
            self.side.list(&mut st),
            self.waiter,
            self.token,
            self.side.name(),
        );
        (e, st)
    }
}

impl<T> Drop for Registration<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            let (entry, st) = Registration {
                armed: false,
                ..*self
            }
            .finish();
            drop(st);
            drop(entry); // outside the lock: `T::drop` is user code
        }
    }
}

/// Pushes `(waiter, TOKEN, packet)` into `side`'s queue (the caller checked, under this same
/// lock, that the operation cannot complete now), unlocks, waits, and takes the entry back.
/// Returns the claiming token and the entry, with the lock held.
pub(crate) fn block<'a, T>(
    chan: &'a Chan<T>,
    mut st: MutexGuard<'a, State<T>>,
    waiter: &'a Arc<Waiter>,
    side: Side,
    packet: Option<T>,
    deadline: Option<Instant>,
) -> (usize, Entry<T>, MutexGuard<'a, State<T>>) {
    side.list(&mut st).push(waiter.clone(), TOKEN, packet);
    drop(st);
    let reg = Registration::new(chan, waiter, side, TOKEN);
    let reason = match side {
        Side::Send => ParkReason::ChanSend,
        Side::Recv => ParkReason::ChanRecv,
    };
    let token = waiter.wait(reason, deadline);
    let (entry, st) = reg.finish();
    (token, entry, st)
}
