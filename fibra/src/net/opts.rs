//! Per-socket options fibra keeps itself (the fd is always non-blocking underneath), shared by
//! a socket and its `try_clone`s as the socket's own options would be.

use std::io;
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
}
