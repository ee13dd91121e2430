//! Per-socket options fibra keeps itself (the fd is always non-blocking underneath), shared by
//! a socket and its `try_clone`s as the socket's own options would be.
//!
//! # Hand-overs
//! A socket fibra adopts (`from_std`, `FromRawFd`, `From<OwnedFd>`) brings its options along:
//! [`Opts::adopt`] reads its timeouts and `O_NONBLOCK` into fibra's copies before the fd is
//! switched to non-blocking underneath. A socket fibra hands back (`into_std`, `IntoRawFd`,
//! `From<T> for OwnedFd`) gets them written back by [`Opts::restore`], so a round trip
//! keeps what the user set, as `std`'s own conversions (which change nothing) do.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
pub(crate) struct Opts {
    /// Nanoseconds; 0 = none (a zero timeout is refused, as `std` refuses it).
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// `set_nonblocking(true)`: `WouldBlock` is returned instead of parking.
    pub(crate) nonblocking: AtomicBool,
}

fn encode(t: Option<Duration>) -> io::Result<u64> {
    match t {
        None => Ok(0),
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    }
}

fn decode(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

impl Opts {
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout.store(encode(t)?, Relaxed);
        Ok(())
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.write_timeout.store(encode(t)?, Relaxed);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        decode(self.read_timeout.load(Relaxed))
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        decode(self.write_timeout.load(Relaxed))
    }

    /// The deadline of an operation starting now with timeout `t` (None: no deadline, also
    /// when `now + t` overflows).
    pub(crate) fn deadline(t: Option<Duration>) -> Option<Instant> {
        t.and_then(|t| Instant::now().checked_add(t))
    }

    pub(crate) fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Relaxed)
    }

    /// The options of `socket` as the OS keeps them: its mode, and (with `timeouts`, for
    /// sockets that have them in fibra) `SO_RCVTIMEO`/`SO_SNDTIMEO`. Then switches the socket
    /// to non-blocking underneath.
    pub(crate) fn adopt(socket: &impl AsFd, timeouts: bool) -> io::Result<Opts> {
        let sock = socket2::SockRef::from(socket);
        let opts = Opts::default();
        if timeouts {
            opts.set_read_timeout(sock.read_timeout()?)?;
            opts.set_write_timeout(sock.write_timeout()?)?;
        }
        opts.nonblocking.store(sock.nonblocking()?, Relaxed);
        sock.set_nonblocking(true)?;
        Ok(opts)
    }

    /// Writes fibra's options into `socket` as it leaves fibra: the mode, and (with
    /// `timeouts`) the timeouts.
    pub(crate) fn restore(&self, socket: &impl AsFd, timeouts: bool) -> io::Result<()> {
        let sock = socket2::SockRef::from(socket);
        if timeouts {
            sock.set_read_timeout(self.read_timeout())?;
            sock.set_write_timeout(self.write_timeout())?;
        }
        sock.set_nonblocking(self.is_nonblocking())
    }
}
