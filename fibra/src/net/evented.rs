//! A socket's fibra side: the lazily registered [`Source`] plus the options fibra keeps
//! (timeouts, non-blocking mode), with the read and write paths every socket type shares.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::opts::Opts;
use crate::io::reactor::Direction;
use crate::io::source::Source;
use crate::park::ParkReason;

pub(crate) struct Evented<S: AsRawFd> {
    pub(crate) source: Source<S>,
    pub(crate) opts: Arc<Opts>,
}

impl<S: AsRawFd> Evented<S> {
    /// `socket` must be in non-blocking mode already.
    pub(crate) fn new(socket: S, opts: Arc<Opts>) -> Evented<S> {
        Evented {
            source: Source::new(socket),
            opts,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        self.source.get_ref()
    }

    /// Deregisters; the socket is still non-blocking.
    pub(crate) fn into_inner(self) -> S {
        self.source.into_inner()
    }

    /// Runs a read-side operation, parking until readable (up to the read timeout).
    pub(crate) fn read_op<R>(
        &self,
        reason: ParkReason,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io(Direction::Read, reason, self.opts.read_timeout(), op)
    }

    /// Reads up to `len` bytes from a stream socket, parking until readable (up to the read
    /// timeout); a short read spares the next read its failing syscall
    /// (`Source::do_stream_read`).
    pub(crate) fn stream_read(
        &self,
        len: usize,
        mut op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.opts.is_nonblocking() {
            return op(self.get_ref());
        }
        let deadline = Opts::deadline(self.opts.read_timeout());
        self.source
            .do_stream_read(ParkReason::IoRead, deadline, len, op)
    }

    /// Runs a write-side operation, parking until writable (up to the write timeout).
    pub(crate) fn write_op<R>(
        &self,
        reason: ParkReason,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io(Direction::Write, reason, self.opts.write_timeout(), op)
    }

    fn io<R>(
        &self,
        dir: Direction,
        reason: ParkReason,
        timeout: Option<std::time::Duration>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        if self.opts.is_nonblocking() {
            return op(self.get_ref());
        }
        self.source.do_io(dir, reason, Opts::deadline(timeout), op)
    }
}
