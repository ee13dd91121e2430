//! `UdpSocket`: datagrams whose blocking sends and receives park only the calling fiber.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::evented::Evented;
use super::opts::Opts;
use crate::park::ParkReason;

/// A UDP socket, like [`std::net::UdpSocket`]; receiving parks the calling fiber until a
/// datagram arrives (or the read timeout passes), sending parks while the send buffer is full.
///
/// ```
/// # fibra::run(|| -> std::io::Result<()> {
/// let a = fibra::net::UdpSocket::bind("127.0.0.1:0")?;
/// let b = fibra::net::UdpSocket::bind("127.0.0.1:0")?;
/// let b_addr = b.local_addr()?;
/// let rx = fibra::spawn(move || {
///     let mut buf = [0u8; 16];
///     let (n, from) = b.recv_from(&mut buf).unwrap();
///     (buf[..n].to_vec(), from)
/// });
/// a.send_to(b"hi", b_addr)?;
/// let (data, from) = rx.join().unwrap();
/// assert_eq!((data.as_slice(), from), (&b"hi"[..], a.local_addr()?));
/// # Ok(()) }).unwrap();
/// ```
pub struct UdpSocket {
    inner: Evented<net::UdpSocket>,
}

impl UdpSocket {
    fn wrap(s: net::UdpSocket, opts: Arc<Opts>) -> io::Result<UdpSocket> {
        s.set_nonblocking(true)?;
        Ok(UdpSocket {
            inner: Evented::new(s, opts),
        })
    }

    pub(super) fn std(&self) -> &net::UdpSocket {
        self.inner.get_ref()
    }

    /// Binds to `addr` (host names resolved on the blocking pool), trying each resolved
    /// address in turn.
    ///
    /// # Errors
    /// The last address's error, or `InvalidInput` if `addr` resolves to no address.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_ne!(s.local_addr().unwrap().port(), 0);
    /// # });
    /// ```
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<UdpSocket> {
        super::each_addr(addr, |a| {
            UdpSocket::wrap(net::UdpSocket::bind(a)?, Arc::default())
        })
    }

    /// Sets the default destination of [`send`](Self::send) and the only source
    /// [`recv`](Self::recv) accepts.
    ///
    /// # Errors
    /// The last address's error, or `InvalidInput` if `addr` resolves to no address.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.connect(b.local_addr().unwrap()).unwrap();
    /// assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    /// # });
    /// ```
    pub fn connect<A: ToSocketAddrs + Send>(&self, addr: A) -> io::Result<()> {
        super::each_addr(addr, |a| self.std().connect(a))
    }

    /// Sends `buf` to `addr` (resolved on the blocking pool); returns the bytes sent.
    ///
    /// # Errors
    /// A send error, the write timeout (`WouldBlock`), or `InvalidInput` if `addr` resolves
    /// to no address.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(a.send_to(b"abc", b.local_addr().unwrap()).unwrap(), 3);
    /// # });
    /// ```
    pub fn send_to<A: ToSocketAddrs + Send>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addrs = super::resolve(addr)?;
        let Some(&to) = addrs.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            ));
        };
        self.inner
            .write_op(ParkReason::IoWrite, |s| s.send_to(buf, to))
    }

    /// Receives one datagram and its sender's address, parking until one arrives.
    ///
    /// # Errors
    /// A receive error, or the read timeout (`WouldBlock`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 4];
    /// assert_eq!(b.recv_from(&mut buf).unwrap(), (1, a.local_addr().unwrap()));
    /// # });
    /// ```
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_op(ParkReason::IoRead, |s| s.recv_from(buf))
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued.
    ///
    /// # Errors
    /// As `recv_from`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.send_to(b"x", b.local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 4];
    /// assert_eq!(b.peek_from(&mut buf).unwrap().0, 1);
    /// assert_eq!(b.recv_from(&mut buf).unwrap().0, 1);
    /// # });
    /// ```
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_op(ParkReason::IoRead, |s| s.peek_from(buf))
    }

    /// Sends `buf` to the connected peer.
    ///
    /// # Errors
    /// `NotConnected` without [`connect`](Self::connect); a send error; the write timeout.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.connect(b.local_addr().unwrap()).unwrap();
    /// assert_eq!(a.send(b"ab").unwrap(), 2);
    /// # });
    /// ```
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_op(ParkReason::IoWrite, |s| s.send(buf))
    }

    /// Receives one datagram from the connected peer.
    ///
    /// # Errors
    /// A receive error (for example `ConnectionRefused` after an ICMP error), or the read
    /// timeout (`WouldBlock`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// b.connect(a.local_addr().unwrap()).unwrap();
    /// a.send_to(b"hey", b.local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv(&mut buf).unwrap(), 3);
    /// # });
    /// ```
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_op(ParkReason::IoRead, |s| s.recv(buf))
    }

    /// Like [`recv`](Self::recv), but leaves the datagram queued.
    ///
    /// # Errors
    /// As `recv`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let a = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// let b = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// b.connect(a.local_addr().unwrap()).unwrap();
    /// a.send_to(b"hey", b.local_addr().unwrap()).unwrap();
    /// assert_eq!(b.peek(&mut [0u8; 8]).unwrap(), 3);
    /// # });
    /// ```
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_op(ParkReason::IoRead, |s| s.peek(buf))
    }

    /// The local address.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` without [`connect`](Self::connect).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.peer_addr().unwrap_err().kind(), std::io::ErrorKind::NotConnected);
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// A second handle to the same socket (a duplicated fd); options are shared.
    ///
    /// # Errors
    /// If the fd cannot be duplicated.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.try_clone().unwrap().local_addr().unwrap(), s.local_addr().unwrap());
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        UdpSocket::wrap(self.std().try_clone()?, self.inner.opts.clone())
    }

    /// Sets the read timeout (a receive that waits longer fails with `WouldBlock`).
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_read_timeout(Some(std::time::Duration::from_millis(5))).unwrap();
    /// assert_eq!(s.recv_from(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.opts.set_read_timeout(timeout)
    }

    /// Sets the write timeout.
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_write_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    /// assert_eq!(s.write_timeout().unwrap(), Some(std::time::Duration::from_secs(1)));
    /// # });
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.opts.set_write_timeout(timeout)
    }

    /// The read timeout.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.read_timeout().unwrap(), None);
    /// # });
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts.read_timeout())
    }

    /// The write timeout.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(s.write_timeout().unwrap(), None);
    /// # });
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts.write_timeout())
    }

    /// In non-blocking mode, an operation that would wait fails with `WouldBlock`.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_nonblocking(true).unwrap();
    /// assert_eq!(s.recv(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.opts.nonblocking.store(nonblocking, Relaxed);
        Ok(())
    }

    /// Sets `SO_BROADCAST`.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_broadcast(true).unwrap();
    /// assert!(s.broadcast().unwrap());
    /// # });
    /// ```
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.std().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(!s.broadcast().unwrap());
    /// # });
    /// ```
    pub fn broadcast(&self) -> io::Result<bool> {
        self.std().broadcast()
    }

    /// Sets the IP time-to-live of outgoing packets.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// s.set_ttl(9).unwrap();
    /// assert_eq!(s.ttl().unwrap(), 9);
    /// # });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.std().set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing packets.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(s.ttl().unwrap() > 0);
    /// # });
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        self.std().ttl()
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(s.take_error().unwrap().is_none());
    /// # });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// Wraps a `std` socket. Its timeouts and its mode carry over (a non-blocking `std`
    /// socket is in fibra's non-blocking mode); underneath, it is switched to non-blocking.
    ///
    /// # Errors
    /// If the socket's mode or options cannot be read or changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::from_std(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    /// assert!(s.local_addr().is_ok());
    /// # });
    /// ```
    pub fn from_std(socket: net::UdpSocket) -> io::Result<UdpSocket> {
        let opts = Opts::adopt(&socket, true)?;
        UdpSocket::wrap(socket, Arc::new(opts))
    }

    /// Unwraps into a `std` socket, with fibra's timeouts and mode set on it (it
    /// blocks unless [`set_nonblocking`](Self::set_nonblocking) was called).
    ///
    /// # Errors
    /// If the socket's mode or options cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert!(s.into_std().unwrap().local_addr().is_ok());
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::UdpSocket> {
        let opts = self.inner.opts.clone();
        let s = self.inner.into_inner();
        opts.restore(&s, true)?;
        Ok(s)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.std().as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std().as_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
