//! Waiting for a managed fd: the retry loop every hooked I/O call runs once libc said
//! `EAGAIN`, and the two ways to wait (a fiber parks on the reactor; anything else blocks
//! in the real `poll`). The readiness protocol is `io/reactor/scheduled.rs`'s, step for step.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::table::Slot;
use super::{consume_budget, errno, hooked_fiber, must_stop, park_guarded, set_errno};
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

/// What a hooked I/O call is, for `do_io`.
pub(super) struct Call {
    /// The readiness it waits for.
    pub(super) dir: Direction,
    pub(super) reason: ParkReason,
    /// The caller asked for this call not to block (`MSG_DONTWAIT`).
    pub(super) dontwait: bool,
    /// The fd's `SO_RCVTIMEO`/`SO_SNDTIMEO`.
    pub(super) timeout: Option<Duration>,
    /// The call reads up to this many bytes from a TCP socket, so a shorter read emptied it
    /// (`wait_and_retry`).
    pub(super) read_len: Option<usize>,
}

/// Runs `op` (one real, non-blocking libc call on the managed `fd`) until it does not fail
/// with `EAGAIN`, waiting for `call.dir` in between unless the caller sees the call
/// non-blocking (`MSG_DONTWAIT`, or the fd's own mode). Past `call.timeout` it fails with
/// `EAGAIN`. Returns `op`'s result, with errno set on failure and the caller's errno kept on
/// success.
///
/// A blocking-mode call that returns without parking counts against the fiber's cooperative
/// budget (`consume_budget`). A non-blocking one does not: its caller never parks there and
/// may keep thread-local state across it (tokio's `block_on` inside the sync `postgres`
/// crate: a yield would let another fiber of the worker see it inside a runtime).
pub(super) fn do_io(fd: RawFd, slot: &Slot, call: Call, mut op: impl FnMut() -> isize) -> isize {
    let (dir, nonblocking_call) = (call.dir, call.dontwait);
    // A caller that sees the fd non-blocking never waits: the fast path answers it.
    let waits = !nonblocking_call && slot.waits(dir) && !slot.nonblocking();
    if !waits {
        // The fast path: the call does not block. No registration, no clock, no fiber lookup.
        let saved = errno();
        let n = op();
        if nonblocking_call || slot.nonblocking() {
            return n; // its caller runs its own event loop: no yield behind its back
        }
        if n >= 0 || errno() != libc::EAGAIN {
            consume_budget();
            return n;
        }
        return wait_and_retry(fd, slot, &call, saved, op);
    }
    wait_and_retry(fd, slot, &call, errno(), op)
}

/// `do_io` after a first `EAGAIN`, or at once for an fd whose last call this way had to wait
/// (the `waits` hint: a client reading its reply, say). The readiness protocol needs a
/// snapshot taken before a failed attempt, so after the fast path's `EAGAIN` the first round
/// here retries the call after taking it: one more syscall on a path about to park, which
/// the hint spares the next call.
///
/// Two shortcuts of `fibra::net`'s (`io/source.rs`, modelled in `io/reactor/scheduled.rs`'s
/// loom tests), in a fiber: a read of `read_len` bytes that returns fewer emptied the
/// TCP socket, so it clears the readiness bit (with its snapshot: an edge since keeps it);
/// and a first attempt that the readiness word proves would say `EAGAIN` (`known_not_ready`,
/// its reactor running) is skipped: the fiber parks at once, and edge-triggered epoll reports
/// whatever arrives after the bit was cleared. A client's reply read then costs one `recv`.
#[cold]
#[inline(never)]
fn wait_and_retry(
    fd: RawFd,
    slot: &Slot,
    call: &Call,
    saved: i32,
    mut op: impl FnMut() -> isize,
) -> isize {
    let (dir, reason, read_len) = (call.dir, call.reason, call.read_len);
    let deadline = call.timeout.and_then(|t| Instant::now().checked_add(t));
    let fiber = hooked_fiber();
    let mut first = true;
    loop {
        let reg = slot.registration();
        let snap = reg.as_ref().map(|r| r.io.snapshot());
        // Only a fiber parks on the reactor; a thread's wait polls, which updates no word.
        let skip = first
            && fiber.is_some()
            && !slot.nonblocking()
            && snap.is_some_and(|s| dir.known_not_ready(s));
        if !skip {
            let n = op();
            if n >= 0 {
                if let (Some(len), Some(reg), Some(snap)) = (read_len, &reg, snap) {
                    if n > 0 && (n as usize) < len {
                        reg.io.clear(snap, dir); // drained
                    }
                }
                set_errno(saved);
                if first {
                    slot.set_waits(dir, false); // it did not have to wait: back to the fast path
                    consume_budget();
                }
                return n;
            }
            if errno() != libc::EAGAIN || slot.nonblocking() {
                if first && !slot.nonblocking() {
                    consume_budget(); // keeps the call's errno
                }
                return n;
            }
        }
        first = false;
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
