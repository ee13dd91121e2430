//! `TcpListener`: accepts connections, parking the calling fiber while none is pending.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::tcp_stream::TcpStream;
use crate::io::reactor::Direction;
use crate::io::source::Source;
use crate::park::ParkReason;

/// A TCP socket listening for connections, like [`std::net::TcpListener`]; [`accept`] parks
/// the calling fiber until a connection arrives.
///
/// [`accept`]: TcpListener::accept
///
/// ```
/// # fibra::run(|| -> std::io::Result<()> {
/// let listener = fibra::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let client = fibra::spawn(move || fibra::net::TcpStream::connect(addr).map(|_| ()));
/// let (_conn, peer) = listener.accept()?;
/// assert!(peer.ip().is_loopback());
/// client.join().unwrap()
/// # }).unwrap();
/// ```
pub struct TcpListener {
    source: Source<mio::net::TcpListener>,
    nonblocking: AtomicBool,
}

/// The iterator of [`TcpListener::incoming`]: accepted connections, forever.
///
/// ```
/// # fibra::run(|| {
/// let listener = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// fibra::spawn(move || drop(fibra::net::TcpStream::connect(addr)));
/// let incoming: &mut fibra::net::Incoming<'_> = &mut listener.incoming();
/// assert!(incoming.next().unwrap().is_ok());
/// # });
/// ```
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl TcpListener {
    /// Binds to `addr` (host names are resolved on the blocking pool) with `SO_REUSEADDR`,
    /// trying each resolved address in turn; port 0 picks a free port.
    ///
    /// # Errors
    /// The last address's error (for example `AddrInUse`), or `InvalidInput` if `addr`
    /// resolves to no address.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert_ne!(l.local_addr().unwrap().port(), 0);
    /// # });
    /// ```
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpListener> {
        super::each_addr(addr, |a| {
            mio::net::TcpListener::bind(a).map(TcpListener::from_mio)
        })
    }

    fn from_mio(l: mio::net::TcpListener) -> TcpListener {
        TcpListener {
            source: Source::new(l),
            nonblocking: AtomicBool::new(false),
        }
    }

    /// Waits for a connection and returns it with the peer's address. The accepted stream
    /// starts without timeouts.
    ///
    /// When the process (`EMFILE`) or the system (`ENFILE`) is out of file descriptors, the
    /// call does not fail: it backs off (5 ms doubling to 100 ms) and retries, leaving the
    /// connection in the kernel's backlog meanwhile (see the [module docs](crate::net)).
    ///
    /// # Errors
    /// Other accept errors; `WouldBlock` in non-blocking mode; an error when the runtime is
    /// shutting down.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = l.local_addr().unwrap();
    /// let c = fibra::spawn(move || fibra::net::TcpStream::connect(addr).unwrap());
    /// let (s, peer) = l.accept().unwrap();
    /// assert_eq!(peer, c.join().unwrap().local_addr().unwrap());
    /// assert_eq!(s.local_addr().unwrap(), addr);
    /// # });
    /// ```
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        super::accept_with_backoff(|| {
            let (s, peer) = if self.nonblocking.load(Relaxed) {
                self.mio().accept()?
            } else {
                self.source
                    .do_io(Direction::Read, ParkReason::Accept, None, |l| l.accept())?
            };
            let s = net::TcpStream::from(OwnedFd::from(s));
            Ok((TcpStream::from_nonblocking(s, Arc::default()), peer))
        })
    }

    /// An iterator over accepted connections (it never ends; each item is `accept`'s result
    /// without the address).
    ///
    /// ```
    /// use std::io::Write;
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = l.local_addr().unwrap();
    /// fibra::spawn(move || fibra::net::TcpStream::connect(addr).unwrap().write_all(b"x"));
    /// for conn in l.incoming().take(1) {
    ///     assert!(conn.is_ok());
    /// }
    /// # });
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    fn mio(&self) -> &mio::net::TcpListener {
        self.source.get_ref()
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(l.local_addr().unwrap().ip().is_loopback());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.mio().local_addr()
    }

    /// A second handle to the same listening socket (a duplicated fd), for accepting from
    /// several fibers.
    ///
    /// # Errors
    /// If the fd cannot be duplicated.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let l2 = l.try_clone().unwrap();
    /// assert_eq!(l.local_addr().unwrap(), l2.local_addr().unwrap());
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        let fd = self.as_fd().try_clone_to_owned()?;
        let l = TcpListener::from_mio(mio::net::TcpListener::from_std(fd.into()));
        l.nonblocking.store(self.nonblocking.load(Relaxed), Relaxed);
        Ok(l)
    }

    /// Wraps a `std` listener (switched to non-blocking mode underneath).
    ///
    /// # Errors
    /// If the socket's mode cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let l = fibra::net::TcpListener::from_std(std_l).unwrap();
    /// assert!(l.local_addr().is_ok());
    /// # });
    /// ```
    pub fn from_std(listener: net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener::from_mio(mio::net::TcpListener::from_std(
            listener,
        )))
    }

    /// Unwraps into a blocking `std` listener.
    ///
    /// # Errors
    /// If the socket's mode cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std_l = l.into_std().unwrap();
    /// assert!(std_l.local_addr().is_ok());
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::TcpListener> {
        let l = net::TcpListener::from(OwnedFd::from(self.source.into_inner()));
        l.set_nonblocking(false)?;
        Ok(l)
    }

    /// In non-blocking mode, `accept` fails with [`WouldBlock`](io::ErrorKind::WouldBlock)
    /// instead of parking when no connection is pending.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// l.set_nonblocking(true).unwrap();
    /// assert_eq!(l.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, Relaxed);
        Ok(())
    }

    /// Sets the IP time-to-live of packets sent from accepted sockets.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// l.set_ttl(64).unwrap();
    /// assert_eq!(l.ttl().unwrap(), 64);
    /// # });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.mio().set_ttl(ttl)
    }

    /// The IP time-to-live.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(l.ttl().unwrap() > 0);
    /// # });
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.mio().ttl()
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// assert!(l.take_error().unwrap().is_none());
    /// # });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.mio().take_error()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.mio().as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mio().as_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
