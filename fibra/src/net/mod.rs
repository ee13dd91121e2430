//! Networking in blocking style: [`TcpListener`], [`TcpStream`] and [`UdpSocket`] mirror
//! `std::net` (and [`fibra::os::unix::net`](crate::os::unix::net) mirrors
//! `std::os::unix::net`), but a call that would block parks only the calling fiber; its
//! worker runs other fibers meanwhile.
//!
//! ```
//! use std::io::{Read, Write};
//! use fibra::net::{TcpListener, TcpStream};
//!
//! fibra::run(|| -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     fibra::spawn(move || loop {
//!         let Ok((mut s, _)) = listener.accept() else { return };
//!         fibra::spawn(move || {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n) = s.read(&mut buf) {
//!                 if n == 0 || s.write_all(&buf[..n]).is_err() { break; }
//!             }
//!         });
//!     });
//!     let mut c = TcpStream::connect(addr)?;
//!     c.write_all(b"ping")?;
//!     let mut r = [0u8; 4];
//!     c.read_exact(&mut r)?;
//!     assert_eq!(&r, b"ping");
//!     Ok(())
//! }).unwrap();
//! ```
//!
//! # How waiting works
//! Sockets are non-blocking underneath. An operation that returns `WouldBlock` registers the
//! socket (once) with the poller of the worker the fiber runs on and parks the fiber until
//! the poller reports readiness ([`ParkReason::IoRead`](crate::ParkReason::IoRead) and its
//! siblings). Timeouts set with `set_read_timeout` / `set_write_timeout` park with a
//! deadline. On a plain OS thread (outside any fiber) the same types block the thread, like
//! `std::net`'s.
//!
//! # Name resolution
//! Addresses are resolved with `std`'s [`ToSocketAddrs`] on the
//! runtime's blocking pool ([`fibra::run_blocking`](crate::run_blocking)), so a slow DNS server never
//! stalls a worker. That is why address arguments must be `Send`.
//!
//! # Listen backlog and socket options
//! [`TcpListener::bind`] (and [`UnixListener::bind`](crate::os::unix::net::UnixListener::bind))
//! listen with the system's maximum backlog, `net.core.somaxconn`, where `std` uses 128: a
//! burst of connections beyond the backlog loses SYNs, and each lost one costs its client a
//! retransmit (1 s, then 3 s, ...). [`TcpSocket`] chooses the backlog and sets the options
//! that must precede `listen` or `connect`:
//!
//! ```
//! # fibra::run(|| -> std::io::Result<()> {
//! let socket = fibra::net::TcpSocket::new_v4()?;
//! socket.set_reuseport(true)?;
//! socket.bind("127.0.0.1:0".parse().unwrap())?;
//! let listener = socket.listen(65_535)?; // the kernel caps it at somaxconn
//! # drop(listener); Ok(()) }).unwrap();
//! ```
//!
//! # Differences from `std::net`
//! - A read or write timeout fails with [`WouldBlock`](std::io::ErrorKind::WouldBlock), as
//!   `std` does on Unix; timeouts are kept by fibra, not in the socket (they are shared by
//!   [`try_clone`](TcpStream::try_clone)s, and [`into_std`](TcpStream::into_std) writes them
//!   into the socket).
//! - [`TcpListener::accept`] does not fail when the process runs out of file descriptors
//!   (`EMFILE`/`ENFILE`): it backs off (5 ms, doubling up to 100 ms: Go's `net/http` schedule,
//!   capped lower) and retries, so a server under fd pressure keeps serving. In non-blocking
//!   mode it returns the error at once, as `std` does.
//! - The non-blocking mode is fibra's, not the fd's (the fd is always non-blocking
//!   underneath); `from_std`, `into_std` and the fd conversions (`FromRawFd`, `IntoRawFd`,
//!   `From<OwnedFd>`, `From<T> for OwnedFd`) carry it across, with the timeouts.

pub(crate) mod backlog;
pub(crate) mod evented;
pub(crate) mod fd;
pub(crate) mod opts;
mod tcp_listener;
mod tcp_socket;
mod tcp_stream;
mod udp;
mod udp_multicast;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use tcp_listener::{Incoming, TcpListener};
pub use tcp_socket::TcpSocket;
pub use tcp_stream::TcpStream;
pub use udp::UdpSocket;

/// Resolves `addr` on the blocking pool (inline on a plain thread).
pub(crate) fn resolve<A: ToSocketAddrs + Send>(addr: A) -> io::Result<Vec<SocketAddr>> {
    crate::run_blocking(move || addr.to_socket_addrs().map(Iterator::collect))
}

/// Tries `f` on each resolved address in turn, as `std::net` does; returns the last error.
pub(crate) fn each_addr<A, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T>
where
    A: ToSocketAddrs + Send,
{
    let mut last = None;
    for a in resolve(addr)? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// First back-off after `EMFILE`/`ENFILE`, doubled per failure up to [`ACCEPT_BACKOFF_MAX`]:
/// Go's `net/http` schedule (5 ms doubling), capped at 100 ms instead of 1 s so a server
/// resumes within a tenth of a second once descriptors are freed.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Runs `accept` until it succeeds or fails with something other than running out of file
/// descriptors; on `EMFILE`/`ENFILE` it sleeps (parking the fiber) and retries. The pending
/// connection stays in the kernel's backlog meanwhile; no readiness edge will announce that
/// descriptors were freed, hence retrying on a timer. A listener in non-blocking mode (per
/// `opts`, read at each failure) gets the error at once: its caller asked never to wait.
pub(crate) fn accept_with_backoff<T>(
    opts: &opts::Opts,
    mut accept: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match accept() {
            Err(e) if out_of_fds(&e) && !opts.is_nonblocking() && !crate::park::cancelling() => {
                crate::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            r => return r,
        }
    }
}

/// `EMFILE` (process limit) or `ENFILE` (system limit): transient, worth waiting out.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
