//! A non-blocking fd that makes the calling fiber wait for readiness: the core of every
//! `fibra::net` type.
//!
//! An operation is attempted first; only on `WouldBlock` does the caller wait. Inside a fiber
//! the fd is registered (once, lazily) with the reactor of the worker the fiber runs on, and
//! the fiber parks until the reactor reports the direction ready (the readiness protocol is in
//! `reactor/scheduled.rs`). On a plain thread (or a `fibra::run_blocking` closure) the thread
//! blocks in `poll(2)` instead, so the types behave as `std::net`'s do.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use mio::Token;

use super::reactor::{Direction, Reactor, ScheduledIo};
use crate::fiber::FiberRef;
use crate::park::{self, ParkReason};
use crate::sched::context;

struct Registration {
    reactor: Arc<Reactor>,
    token: Token,
    io: Arc<ScheduledIo>,
}

/// An owned non-blocking I/O object `S` whose operations park the calling fiber.
pub(crate) struct Source<S: AsRawFd> {
    io: Option<S>,
    reg: OnceLock<Registration>,
    /// Serialises the slow path of the lazy registration (epoll refuses a second ADD).
    registering: Mutex<()>,
}

/// The error of an operation whose deadline passed: `WouldBlock`, as `std::net` reports a read
/// or write timeout on Unix.
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        "fibra: the I/O operation timed out",
    )
}

fn ended_session() -> io::Error {
    io::Error::other(
        "fibra: this socket was registered by a runtime session that has ended; \
         use it in one session only (or convert it with into_std / from_std)",
    )
}

fn shutting_down() -> io::Error {
    io::Error::other("fibra: the runtime is shutting down")
}

impl<S: AsRawFd> Source<S> {
    /// `io` must already be in non-blocking mode.
    pub(crate) fn new(io: S) -> Source<S> {
        Source {
            io: Some(io),
            reg: OnceLock::new(),
            registering: Mutex::new(()),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        match &self.io {
            Some(io) => io,
            None => fatal!("io::source: used after into_inner"),
        }
    }

    /// Deregisters and hands the object back (still non-blocking).
    pub(crate) fn into_inner(mut self) -> S {
        self.deregister();
        match self.io.take() {
            Some(io) => io,
            None => fatal!("io::source: into_inner twice"),
        }
    }

    fn deregister(&mut self) {
        if let (Some(reg), Some(io)) = (self.reg.take(), &self.io) {
            reg.reactor.deregister(io.as_raw_fd(), reg.token);
        }
    }

    /// The registration's readiness word before an attempt (step 1 in `reactor/scheduled.rs`),
    /// or None before the first registration. Pass it to [`Source::wait`] after the attempt
    /// failed.
    pub(crate) fn snapshot(&self) -> Option<usize> {
        self.reg.get().map(|r| r.io.snapshot())
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for `dir` readiness between
    /// attempts (parking as `reason`). Past `deadline` it returns [`timed_out`].
    pub(crate) fn do_io<R>(
        &self,
        dir: Direction,
        reason: ParkReason,
        deadline: Option<Instant>,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.do_io_draining(dir, reason, deadline, |_| false, op)
    }

    /// [`Source::do_io`] for a stream socket's read of `len` bytes: a read that returns fewer
    /// (but some) bytes emptied the receive queue, so the next read waits for an edge without
    /// first trying a syscall that would say `WouldBlock` (tokio does the same). Never for
    /// datagrams (one per read) or `peek` (it empties nothing).
    pub(crate) fn do_stream_read(
        &self,
        reason: ParkReason,
        deadline: Option<Instant>,
        len: usize,
        op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.do_io_draining(Direction::Read, reason, deadline, |&n| n > 0 && n < len, op)
    }

    fn do_io_draining<R>(
        &self,
        dir: Direction,
        reason: ParkReason,
        deadline: Option<Instant>,
        drained: impl Fn(&R) -> bool,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        // Only the first attempt may be skipped: after any wait the caller tries again, since
        // a thread outside a fiber waits in poll(2), which updates no readiness word.
        let mut first = true;
        loop {
            let snap = self.reg.get().map(|r| r.io.snapshot());
            // Known not ready: the attempt would only say `WouldBlock`.
            let skip = first && snap.is_some_and(|s| self.known_not_ready(s, dir));
            first = false;
            if !skip {
                match op(self.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                    Ok(v) => {
                        self.forget_if_drained(snap, dir, drained(&v));
                        // It could have parked and did not: count it against the fiber's budget.
                        crate::coop::consume();
                        return Ok(v);
                    }
                }
            }
            self.wait(dir, reason, snap, deadline)?;
        }
    }

    /// `Direction::known_not_ready`, trusted only while the registration's reactor runs: a
    /// session that ended updates no readiness word, so its stale bits prove nothing (the
    /// attempt then says what the socket has, as before the shortcut).
    fn known_not_ready(&self, snap: usize, dir: Direction) -> bool {
        dir.known_not_ready(snap) && self.reg.get().is_some_and(|r| r.reactor.is_open())
    }

    /// After an attempt that emptied the socket (`drained`), clears `dir`'s readiness as a
    /// `WouldBlock` would (step 3 of `reactor/scheduled.rs`): unless an edge arrived since
    /// `snap`, the next attempt goes straight to waiting.
    fn forget_if_drained(&self, snap: Option<usize>, dir: Direction, drained: bool) {
        if let (true, Some(reg), Some(snap)) = (drained, self.reg.get(), snap) {
            reg.io.clear(snap, dir);
        }
    }

    /// Waits for `dir` after an attempt that saw `snap` failed with `WouldBlock`. May return
    /// early: the caller retries its operation.
    pub(crate) fn wait(
        &self,
        dir: Direction,
        reason: ParkReason,
        snap: Option<usize>,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let fiber = context::with_current_fiber(|f| f.map(|h| h.to_ref()));
        let Some(fiber) = fiber else {
            return poll_fd(self.get_ref().as_raw_fd(), dir, deadline);
        };
        if park::cancelling() {
            return Err(shutting_down());
        }
        let (Some(reg), Some(snap)) = (self.reg.get(), snap) else {
            // Not registered when the attempt began: register now and retry. Adding an fd to
            // epoll reports its current readiness as an edge, so nothing is missed.
            return self.register();
        };
        if !reg.reactor.is_open() {
            return Err(ended_session());
        }
        if !reg.io.clear(snap, dir) {
            return Ok(()); // an edge arrived after the attempt began: retry at once
        }
        let waiting = Waiting {
            io: &reg.io,
            dir,
            fiber,
        };
        loop {
            if !reg.io.enqueue(dir, &waiting.fiber) {
                return Ok(());
            }
            if park::cancelling() {
                return Err(shutting_down());
            }
            match deadline {
                Some(d) if Instant::now() >= d => return Err(timed_out()),
                Some(d) => crate::time::park_until(reason, d),
                None => park::park(reason),
            }
        }
    }

    /// The future-shaped `do_io`: runs `op`; on `WouldBlock` leaves `cx`'s waker with the
    /// registration (`ScheduledIo::register_waker`, the same steps as a fiber's wait) and
    /// returns `Pending`. Timeouts and fibra's non-blocking flag do not apply: a future is
    /// given up by dropping it.
    ///
    /// The first wait registers the fd with the poller of the worker this runs on. A socket
    /// never registered cannot wait on a thread that is not a fibra worker: nobody would poll
    /// for it there, so that is an error, not a hang (`compat/mod.rs`, "Where futures run").
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code) // only the async adapters (`fibra::compat`) poll
    )]
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_draining(cx, dir, |_| false, op)
    }

    /// [`Source::poll_io`] for a stream read of `len` bytes: see [`Source::do_stream_read`].
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code) // only the async adapters (`fibra::compat`) poll
    )]
    pub(crate) fn poll_stream_read(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        op: impl FnMut(&S) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        self.poll_io_draining(cx, Direction::Read, |&n| n > 0 && n < len, op)
    }

    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
        allow(dead_code) // only the async adapters (`fibra::compat`) poll
    )]
    fn poll_io_draining<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        drained: impl Fn(&R) -> bool,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let snap = self.reg.get().map(|r| r.io.snapshot());
            // Known not ready: skip the attempt, it would only say `WouldBlock`.
            if !snap.is_some_and(|s| self.known_not_ready(s, dir)) {
                match op(self.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(v) => {
                        self.forget_if_drained(snap, dir, drained(&v));
                        crate::coop::consume();
                        return Poll::Ready(Ok(v));
                    }
                }
            }
            let (Some(reg), Some(snap)) = (self.reg.get(), snap) else {
                if let Err(e) = self.register() {
                    return Poll::Ready(Err(e));
                }
                if self.reg.get().is_none() {
                    return Poll::Ready(Err(io::Error::other(
                        "fibra: a socket must first wait for readiness on a fibra worker (poll \
                         it inside fibra::await_future once) before a future on another \
                         thread can wait on it",
                    )));
                }
                continue; // registered: the registration's first edge reports readiness
            };
            if !reg.reactor.is_open() {
                return Poll::Ready(Err(ended_session()));
            }
            if !reg.io.clear(snap, dir) {
                continue; // an edge arrived after the attempt began: retry at once
            }
            if reg.io.register_waker(dir, cx.waker()) {
                return Poll::Pending;
            }
        }
    }

    /// Registers with the reactor of the worker running the calling fiber, or with the
    /// session's shared poller if it has one.
    fn register(&self) -> io::Result<()> {
        let _g = self.registering.lock().unwrap_or_else(|e| e.into_inner());
        if self.reg.get().is_some() {
            return Ok(());
        }
        let Some(reactor) = current_reactor() else {
            return Ok(()); // not on a worker: `wait` falls back to poll(2) next time
        };
        let (token, io) = reactor.register(self.get_ref().as_raw_fd())?;
        // Cannot fail: `registering` is held and the cell was empty.
        let _ = self.reg.set(Registration { reactor, token, io });
        Ok(())
    }
}

impl<S: AsRawFd> Drop for Source<S> {
    fn drop(&mut self) {
        // Before `io` closes the fd: epoll would otherwise keep reporting it while a dup lives.
        self.deregister();
    }
}

/// The reactor a socket used on this thread registers with: the running worker's, or the
/// session's shared poller if it has one. `None` off the workers.
pub(crate) fn current_reactor() -> Option<Arc<Reactor>> {
    context::with_worker(|w| {
        w.map(|w| match &w.shared.shared_poller {
            Some(shared) => shared.clone(),
            None => w.shared.slots[w.index].reactor.clone(),
        })
    })
}

/// Removes the fiber from the waiters however the wait ends, including an unwind at shutdown.
struct Waiting<'a> {
    io: &'a ScheduledIo,
    dir: Direction,
    fiber: FiberRef,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.io.dequeue(self.dir, &self.fiber);
    }
}

/// A plain thread's wait: `poll(2)` on the fd until `dir` is ready or `deadline`.
fn poll_fd(fd: RawFd, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                // Round up: a wait shorter than asked would spin on the last millisecond.
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match n {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => {} // timed out: the loop re-checks the deadline
            _ => return Ok(()),
        }
    }
}
