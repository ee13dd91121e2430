//! Waiting for a managed fd: the retry loop every hooked I/O call runs once libc said
//! `EAGAIN`, and the two ways to wait (a fiber parks on the reactor; anything else blocks
//! in the real `poll`). The readiness protocol is `io/reactor/scheduled.rs`'s, step for step.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::table::Slot;
use super::{errno, hooked_fiber, must_stop, park_guarded, set_errno};
use crate::fiber::FiberRef;
use crate::io::reactor::{Direction, ScheduledIo};
use crate::io::source::current_reactor;
use crate::park::ParkReason;

/// How a wait ended.
pub(super) enum Woke {
    /// Ready, or maybe (spurious): retry the call.
    Retry,
    /// The deadline passed.
    TimedOut,
}

/// Runs `op` (one real, non-blocking libc call on the managed `fd`) until it does not fail
/// with `EAGAIN`, waiting for `dir` in between unless the caller sees the fd non-blocking
/// (`nonblocking_call`: `MSG_DONTWAIT`, or the fd's own mode). Past `timeout` (the fd's
/// `SO_RCVTIMEO`/`SO_SNDTIMEO`) it fails with `EAGAIN`. Returns `op`'s result, with errno set
/// on failure and the caller's errno kept on success.
pub(super) fn do_io(
    fd: RawFd,
    slot: &Slot,
    dir: Direction,
    reason: ParkReason,
    nonblocking_call: bool,
    timeout: Option<Duration>,
    mut op: impl FnMut() -> isize,
) -> isize {
    let saved = errno();
    let waits = !nonblocking_call && slot.waits(dir);
    if !waits {
        // The fast path: the call does not block. No registration, no clock, no fiber lookup.
        let n = op();
        if n >= 0 || errno() != libc::EAGAIN || nonblocking_call || slot.nonblocking() {
            return n;
        }
    }
    wait_and_retry(fd, slot, dir, reason, timeout, saved, op)
}

/// `do_io` after a first `EAGAIN`, or at once for an fd whose last call this way had to wait
/// (the `waits` hint: a client reading its reply, say). The readiness protocol needs a
/// snapshot taken before a failed attempt, so after the fast path's `EAGAIN` the first round
/// here retries the call after taking it: one more syscall on a path about to park, which
/// the hint spares the next call.
#[cold]
#[inline(never)]
fn wait_and_retry(
    fd: RawFd,
    slot: &Slot,
    dir: Direction,
    reason: ParkReason,
    timeout: Option<Duration>,
    saved: i32,
    mut op: impl FnMut() -> isize,
) -> isize {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let fiber = hooked_fiber();
    let mut first = true;
    loop {
        let reg = slot.registration();
        let snap = reg.as_ref().map(|r| r.io.snapshot());
        let n = op();
        if n >= 0 {
            if first {
                slot.set_waits(dir, false); // it did not have to wait: back to the fast path
            }
            set_errno(saved);
            return n;
        }
        first = false;
        if errno() != libc::EAGAIN || slot.nonblocking() {
            return n;
        }
        slot.set_waits(dir, true);
        let waited = match &fiber {
            None => wait_thread(fd, dir, deadline),
            Some(f) => {
                if must_stop() {
                    Err(libc::ECANCELED)
                } else {
                    match (reg, snap) {
                        (Some(reg), Some(snap)) if !reg.io.clear(snap, dir) => Ok(Woke::Retry),
                        (Some(reg), Some(_)) => park_on(f, &[(&reg.io, dir)], reason, deadline),
                        // Not registered when the attempt began: register and retry. Adding
                        // an fd to epoll reports its readiness as an edge: nothing is missed.
                        _ => register(fd, slot).map(|()| Woke::Retry),
                    }
                }
            }
        };
        match waited {
            Ok(Woke::Retry) => {}
            Ok(Woke::TimedOut) => return fail(libc::EAGAIN),
            Err(e) => return fail(e),
        }
    }
}

fn fail(e: i32) -> isize {
    set_errno(e);
    -1
}

/// Registers the managed `fd` with the calling worker's reactor.
pub(super) fn register(fd: RawFd, slot: &Slot) -> Result<(), i32> {
    match current_reactor() {
        Some(reactor) => slot.register(fd, reactor),
        None => Ok(()), // not on a worker: cannot happen for a hooked fiber
    }
}

/// Parks `fiber` until one of `waits` is ready, `deadline` passes or a spurious wake-up,
/// after the caller cleared each with a snapshot taken before its failed attempt.
pub(super) fn park_on(
    fiber: &FiberRef,
    waits: &[(&ScheduledIo, Direction)],
    reason: ParkReason,
    deadline: Option<Instant>,
) -> Result<Woke, i32> {
    let enqueued = Enqueued { fiber, waits };
    for (io, dir) in waits {
        if !io.enqueue(*dir, fiber) {
            return Ok(Woke::Retry);
        }
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(Woke::TimedOut);
    }
    park_guarded(reason, deadline)?;
    drop(enqueued);
    Ok(Woke::Retry)
}

/// Takes the fiber off every waiter list however the wait ends.
struct Enqueued<'a> {
    fiber: &'a FiberRef,
    waits: &'a [(&'a ScheduledIo, Direction)],
}

impl Drop for Enqueued<'_> {
    fn drop(&mut self) {
        for (io, dir) in self.waits {
            io.dequeue(*dir, self.fiber);
        }
    }
}

/// A plain thread's wait on a managed (non-blocking underneath) fd: the real `poll` until
/// `dir` is ready or `deadline`.
fn wait_thread(fd: RawFd, dir: Direction, deadline: Option<Instant>) -> Result<Woke, i32> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let poll = real!(POLL: unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, i32) -> i32);
    loop {
        let Some(ms) = poll_timeout(deadline) else {
            return Ok(Woke::TimedOut);
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a pollfd array of length 1, live for the call.
        match unsafe { poll(&mut pfd, 1, ms) } {
            -1 if errno() == libc::EINTR => {}
            -1 => return Err(errno()),
            _ => return Ok(Woke::Retry), // ready, or the timeout: the caller's loop re-checks
        }
    }
}

/// `poll`'s timeout for `deadline` in ms, rounded up (a shorter wait would spin on the last
/// millisecond); `None` once it passed, -1 for no deadline.
pub(super) fn poll_timeout(deadline: Option<Instant>) -> Option<i32> {
    let Some(d) = deadline else { return Some(-1) };
    let left = d.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32)
}
