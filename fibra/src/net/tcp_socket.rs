//! `TcpSocket`: a TCP socket before it listens or connects, for the options that
//! [`TcpListener::bind`] and [`TcpStream::connect`] cannot take (tokio's `TcpSocket` is the
//! model). Built on `socket2`; the fd is non-blocking and close-on-exec from its creation.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use super::{backlog, TcpListener, TcpStream};

/// A TCP socket that is neither listening nor connected yet: set its options, [`bind`] it,
/// then turn it into a [`TcpListener`] with [`listen`] (choosing the backlog) or into a
/// [`TcpStream`] with [`connect`].
///
/// Nothing is set by default (unlike [`TcpListener::bind`], which sets `SO_REUSEADDR`).
///
/// [`bind`]: TcpSocket::bind
/// [`listen`]: TcpSocket::listen
/// [`connect`]: TcpSocket::connect
///
/// ```
/// use fibra::net::TcpSocket;
/// # fibra::run(|| -> std::io::Result<()> {
/// let socket = TcpSocket::new_v4()?;
/// socket.set_reuseaddr(true)?;
/// socket.bind("127.0.0.1:0".parse().unwrap())?;
/// let listener = socket.listen(4096)?;
///
/// let client = TcpSocket::new_v4()?;
/// client.set_nodelay(true)?;
/// let stream = client.connect(listener.local_addr()?)?;
/// assert!(stream.nodelay()?);
/// # Ok(()) }).unwrap();
/// ```
pub struct TcpSocket {
    inner: Socket,
}

impl TcpSocket {
    /// A new IPv4 TCP socket.
    ///
    /// # Errors
    /// If the OS cannot create one (`EMFILE`, `ENFILE`, ...).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert!(s.local_addr().unwrap().is_ipv4());
    /// # });
    /// ```
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket.
    ///
    /// # Errors
    /// If the OS cannot create one (also when IPv6 is disabled).
    ///
    /// ```
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::TcpSocket::new_v6() {
    ///     if s.bind("[::1]:0".parse().unwrap()).is_ok() {
    ///         assert!(s.local_addr().unwrap().is_ipv6());
    ///     }
    /// }
    /// # });
    /// ```
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    /// A new socket of `addr`'s family.
    pub(crate) fn for_addr(addr: &SocketAddr) -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::for_address(*addr))
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        // socket2 adds SOCK_CLOEXEC on Linux; SOCK_NONBLOCK is fibra's invariant for any fd it
        // waits on (`io::source`).
        let inner = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
        Ok(TcpSocket { inner })
    }

    /// Sets `SO_REUSEADDR`: binding succeeds while old connections on the port linger in
    /// `TIME_WAIT` (what a server restarting on a fixed port wants).
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.set_reuseaddr(true).unwrap();
    /// assert!(s.reuseaddr().unwrap());
    /// # });
    /// ```
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.inner.set_reuse_address(reuseaddr)
    }

    /// Whether `SO_REUSEADDR` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(!fibra::net::TcpSocket::new_v4().unwrap().reuseaddr().unwrap());
    /// # });
    /// ```
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.inner.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: several sockets (of the same user) may bind the same address and
    /// port; the kernel spreads incoming connections across their listeners.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| -> std::io::Result<()> {
    /// use fibra::net::TcpSocket;
    /// let a = TcpSocket::new_v4()?;
    /// a.set_reuseport(true)?;
    /// a.bind("127.0.0.1:0".parse().unwrap())?;
    /// let b = TcpSocket::new_v4()?;
    /// b.set_reuseport(true)?;
    /// b.bind(a.local_addr()?)?; // the same port
    /// let (la, lb) = (a.listen(128)?, b.listen(128)?);
    /// assert_eq!(la.local_addr()?, lb.local_addr()?);
    /// # Ok(()) }).unwrap();
    /// ```
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.inner.set_reuse_port(reuseport)
    }

    /// Whether `SO_REUSEPORT` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(!fibra::net::TcpSocket::new_v4().unwrap().reuseport().unwrap());
    /// # });
    /// ```
    pub fn reuseport(&self) -> io::Result<bool> {
        self.inner.reuse_port()
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes). On a socket that goes on to
    /// [`listen`](Self::listen), Linux passes it on to the connections it accepts.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// # });
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(!fibra::net::TcpSocket::new_v4().unwrap().nodelay().unwrap());
    /// # });
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    /// Sets `SO_SNDBUF`. Linux doubles the value (for its bookkeeping) and clamps it to
    /// `net.core.wmem_max`; [`send_buffer_size`](Self::send_buffer_size) reports the result.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.set_send_buffer_size(64 * 1024).unwrap();
    /// assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
    /// # });
    /// ```
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_send_buffer_size(size as usize)
    }

    /// `SO_SNDBUF` as the kernel keeps it.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::net::TcpSocket::new_v4().unwrap().send_buffer_size().unwrap() > 0);
    /// # });
    /// ```
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.inner.send_buffer_size().map(saturate)
    }

    /// Sets `SO_RCVBUF` (doubled and clamped to `net.core.rmem_max` by Linux). Set it before
    /// `listen` or `connect`: the TCP window scale is chosen at the handshake.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.set_recv_buffer_size(64 * 1024).unwrap();
    /// assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
    /// # });
    /// ```
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_recv_buffer_size(size as usize)
    }

    /// `SO_RCVBUF` as the kernel keeps it.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::net::TcpSocket::new_v4().unwrap().recv_buffer_size().unwrap() > 0);
    /// # });
    /// ```
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.inner.recv_buffer_size().map(saturate)
    }

    /// Sets `IPV6_V6ONLY` on an IPv6 socket: `true` accepts IPv6 only; `false` also accepts
    /// IPv4 as mapped addresses (`::ffff:a.b.c.d`) when bound to `[::]`. Linux's default is
    /// `net.ipv6.bindv6only` (normally `false`).
    ///
    /// # Errors
    /// `InvalidInput` on an IPv4 socket; if the OS refuses (after `bind`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// if let Ok(s) = fibra::net::TcpSocket::new_v6() {
    ///     s.set_only_v6(true).unwrap();
    ///     assert!(s.only_v6().unwrap());
    /// }
    /// # });
    /// ```
    pub fn set_only_v6(&self, only_v6: bool) -> io::Result<()> {
        self.inner.set_only_v6(only_v6)
    }

    /// Whether `IPV6_V6ONLY` is set.
    ///
    /// # Errors
    /// `InvalidInput` on an IPv4 socket.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::net::TcpSocket::new_v4().unwrap().only_v6().is_err());
    /// # });
    /// ```
    pub fn only_v6(&self) -> io::Result<bool> {
        self.inner.only_v6()
    }

    /// Binds to `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// `AddrInUse`, `AddrNotAvailable`, `InvalidInput` for the other family, ...
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert_ne!(s.local_addr().unwrap().port(), 0);
    /// # });
    /// ```
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.bind(&addr.into())
    }

    /// The address the socket is bound to (`0.0.0.0:0` or `[::]:0` before `bind`).
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// assert_eq!(s.local_addr().unwrap(), "0.0.0.0:0".parse().unwrap());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::net::TcpSocket::new_v4().unwrap().take_error().unwrap().is_none());
    /// # });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.take_error()
    }

    /// Starts listening with room for `backlog` connections that completed the handshake but
    /// were not accepted yet (capped by the kernel at `net.core.somaxconn`; past it, new
    /// SYNs are dropped and clients retry after a second or more).
    /// [`TcpListener::bind`] uses `somaxconn` itself.
    ///
    /// # Errors
    /// If the OS refuses (for example `AddrInUse` for an unbound socket whose automatic port
    /// is taken).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// let listener = s.listen(1024).unwrap();
    /// assert!(listener.local_addr().unwrap().ip().is_loopback());
    /// # });
    /// ```
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        self.listen_raw(backlog::clamp(backlog))
    }

    pub(crate) fn listen_raw(self, backlog: i32) -> io::Result<TcpListener> {
        self.inner.listen(backlog)?;
        let l = net::TcpListener::from(OwnedFd::from(self.inner));
        Ok(TcpListener::from_listening(l, Arc::default()))
    }

    /// Connects to `addr`, parking the calling fiber (blocking a plain thread) until the
    /// handshake completes.
    ///
    /// # Errors
    /// The connection's error (for example `ConnectionRefused`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap(); // choose the source address
    /// let from = s.local_addr().unwrap();
    /// let stream = s.connect(l.local_addr().unwrap()).unwrap();
    /// assert_eq!(stream.local_addr().unwrap(), from);
    /// # });
    /// ```
    pub fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.connect_until(addr, None)
    }

    /// Starts a non-blocking connect and waits (up to `deadline`) for it to finish.
    pub(crate) fn connect_until(
        self,
        addr: SocketAddr,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        match self.inner.connect(&addr.into()) {
            Ok(()) => {}
            // EINTR: the connect goes on in the background, as EINPROGRESS says (connect(2)).
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let stream = net::TcpStream::from(OwnedFd::from(self.inner));
        TcpStream::finish_connect(stream, deadline)
    }
}

/// `usize` from socket2 to the `u32` of the API (buffer sizes are `int` in the kernel).
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
