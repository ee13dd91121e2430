//! `TcpListener`: accepts connections, parking the calling fiber while none is pending.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::evented::Evented;
use super::opts::Opts;
use super::tcp_stream::TcpStream;
use super::TcpSocket;
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
    /// mio's listener for its `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`. Of the options, only
    /// the non-blocking flag applies (a listener has no timeouts); it is shared with
    /// `try_clone`s.
    inner: Evented<mio::net::TcpListener>,
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
    /// The listen backlog is the system's maximum, `net.core.somaxconn` (`std` and mio use
    /// 128, too few for a burst of connections: the kernel drops SYNs past it). To choose
    /// the backlog or set other options first, use [`TcpSocket`].
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
            let socket = TcpSocket::for_addr(&a)?;
            socket.set_reuseaddr(true)?;
            socket.bind(a)?;
            socket.listen_raw(super::backlog::default_backlog())
        })
    }

    /// `listener` must be listening and in non-blocking mode already.
    pub(crate) fn from_listening(listener: net::TcpListener, opts: Arc<Opts>) -> TcpListener {
        TcpListener {
            inner: Evented::new(mio::net::TcpListener::from_std(listener), opts),
        }
    }

    /// Waits for a connection and returns it with the peer's address. The accepted stream
    /// starts without timeouts.
    ///
    /// When the process (`EMFILE`) or the system (`ENFILE`) is out of file descriptors, the
    /// call does not fail: it backs off (5 ms doubling to 100 ms) and retries, leaving the
    /// connection in the kernel's backlog meanwhile (see the [module docs](crate::net)).
    ///
    /// In non-blocking mode there is no back-off: `accept` returns `WouldBlock`, `EMFILE`
    /// and every other error at once, as `std` does.
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
        super::accept_with_backoff(&self.inner.opts, || {
            let (s, peer) = self.inner.read_op(ParkReason::Accept, |l| l.accept())?;
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
        self.inner.get_ref()
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
    /// several fibers. The non-blocking mode is shared: setting it on one sets it on both,
    /// as with `std`'s clones.
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
        Ok(TcpListener::from_listening(
            fd.into(),
            self.inner.opts.clone(),
        ))
    }

    /// Wraps a `std` listener. Its mode carries over: a listener `std` had in non-blocking
    /// mode is in fibra's non-blocking mode. Underneath, the socket is switched to
    /// non-blocking either way.
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
        let opts = Opts::adopt(&listener, false)?;
        Ok(TcpListener::from_listening(listener, Arc::new(opts)))
    }

    /// Unwraps into a `std` listener in fibra's mode (blocking unless
    /// [`set_nonblocking`](Self::set_nonblocking) was called).
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
        let opts = self.inner.opts.clone();
        let l = net::TcpListener::from(OwnedFd::from(self.inner.into_inner()));
        opts.restore(&l, false)?;
        Ok(l)
    }

    /// In non-blocking mode, `accept` fails with [`WouldBlock`](io::ErrorKind::WouldBlock)
    /// instead of parking when no connection is pending. The mode is shared with
    /// [`try_clone`](Self::try_clone)s.
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
        self.inner.opts.nonblocking.store(nonblocking, Relaxed);
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
