//! `UnixDatagram`: Unix datagram sockets whose blocking calls park the calling fiber.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::net::evented::Evented;
use crate::net::opts::Opts;
use crate::park::ParkReason;

/// A Unix datagram socket, like [`std::os::unix::net::UnixDatagram`]; receiving parks the
/// calling fiber until a datagram arrives.
///
/// ```
/// # fibra::run(|| {
/// let (a, b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
/// let rx = fibra::spawn(move || {
///     let mut buf = [0u8; 8];
///     let n = b.recv(&mut buf).unwrap();
///     buf[..n].to_vec()
/// });
/// a.send(b"dgram").unwrap();
/// assert_eq!(rx.join().unwrap(), b"dgram");
/// # });
/// ```
pub struct UnixDatagram {
    inner: Evented<net::UnixDatagram>,
}

impl UnixDatagram {
    fn wrap(s: net::UnixDatagram, opts: Arc<Opts>) -> io::Result<UnixDatagram> {
        s.set_nonblocking(true)?;
        Ok(UnixDatagram {
            inner: Evented::new(s, opts),
        })
    }

    fn std(&self) -> &net::UnixDatagram {
        self.inner.get_ref()
    }

    /// A socket bound to `path`.
    ///
    /// # Errors
    /// `AddrInUse` if `path` exists; other bind errors.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-dbind-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let s = fibra::os::unix::net::UnixDatagram::bind(&path).unwrap();
    /// assert_eq!(s.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::wrap(net::UnixDatagram::bind(path)?, Arc::default())
    }

    /// A socket bound to `addr`: a path, or on Linux an abstract name.
    ///
    /// # Errors
    /// `AddrInUse` if the address is taken; other bind errors.
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use fibra::os::unix::net::{SocketAddr, UnixDatagram};
    /// # fibra::run(|| {
    /// let name = format!("fibra-doc-dbind-addr-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    /// let s = UnixDatagram::bind_addr(&addr).unwrap();
    /// assert_eq!(s.local_addr().unwrap().as_abstract_name(), Some(name.as_bytes()));
    /// # });
    /// ```
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        UnixDatagram::wrap(net::UnixDatagram::bind_addr(addr)?, Arc::default())
    }

    /// A socket bound to no address.
    ///
    /// # Errors
    /// If the OS cannot create it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::os::unix::net::UnixDatagram::unbound().unwrap();
    /// assert!(s.local_addr().unwrap().is_unnamed());
    /// # });
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::wrap(net::UnixDatagram::unbound()?, Arc::default())
    }

    /// A connected pair of sockets.
    ///
    /// # Errors
    /// If the OS cannot create them.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.send(b"x").unwrap();
    /// assert_eq!(b.recv(&mut [0u8; 4]).unwrap(), 1);
    /// # });
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = net::UnixDatagram::pair()?;
        Ok((
            UnixDatagram::wrap(a, Arc::default())?,
            UnixDatagram::wrap(b, Arc::default())?,
        ))
    }

    /// Sets the default destination of [`send`](Self::send) and the only source accepted.
    ///
    /// # Errors
    /// If nobody is bound at `path`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-dconn-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let server = fibra::os::unix::net::UnixDatagram::bind(&path).unwrap();
    /// let client = fibra::os::unix::net::UnixDatagram::unbound().unwrap();
    /// client.connect(&path).unwrap();
    /// client.send(b"hi").unwrap();
    /// assert_eq!(server.recv(&mut [0u8; 4]).unwrap(), 2);
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.std().connect(path)
    }

    /// Sets the default destination (and only accepted source) to `addr`: a path, or on
    /// Linux an abstract name.
    ///
    /// # Errors
    /// If nobody is bound at `addr`.
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use fibra::os::unix::net::{SocketAddr, UnixDatagram};
    /// # fibra::run(|| {
    /// let name = format!("fibra-doc-dconn-addr-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    /// let server = UnixDatagram::bind_addr(&addr).unwrap();
    /// let client = UnixDatagram::unbound().unwrap();
    /// client.connect_addr(&addr).unwrap();
    /// client.send(b"hi").unwrap();
    /// assert_eq!(server.recv(&mut [0u8; 4]).unwrap(), 2);
    /// # });
    /// ```
    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        self.std().connect_addr(addr)
    }

    /// Sends `buf` to the socket at `path`.
    ///
    /// # Errors
    /// A send error, or the write timeout (`WouldBlock`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-dsendto-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let server = fibra::os::unix::net::UnixDatagram::bind(&path).unwrap();
    /// let client = fibra::os::unix::net::UnixDatagram::unbound().unwrap();
    /// assert_eq!(client.send_to(b"abc", &path).unwrap(), 3);
    /// assert_eq!(server.recv_from(&mut [0u8; 4]).unwrap().0, 3);
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner
            .write_op(ParkReason::IoWrite, |s| s.send_to(buf, path))
    }

    /// Sends `buf` to the socket at `addr` (a path, or on Linux an abstract name), parking
    /// while the receiver's queue is full.
    ///
    /// # Errors
    /// A send error, or the write timeout (`WouldBlock`).
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use fibra::os::unix::net::{SocketAddr, UnixDatagram};
    /// # fibra::run(|| {
    /// let name = format!("fibra-doc-dsendto-addr-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    /// let server = UnixDatagram::bind_addr(&addr).unwrap();
    /// let client = UnixDatagram::unbound().unwrap();
    /// assert_eq!(client.send_to_addr(b"abc", &addr).unwrap(), 3);
    /// assert_eq!(server.recv(&mut [0u8; 4]).unwrap(), 3);
    /// # });
    /// ```
    pub fn send_to_addr(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        self.inner
            .write_op(ParkReason::IoWrite, |s| s.send_to_addr(buf, addr))
    }

    /// Sends `buf` to the connected peer.
    ///
    /// # Errors
    /// `NotConnected`; a send error; the write timeout.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert_eq!(a.send(b"ab").unwrap(), 2);
    /// # });
    /// ```
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_op(ParkReason::IoWrite, |s| s.send(buf))
    }

    /// Receives one datagram and its sender's address, parking until one arrives.
    ///
    /// # Errors
    /// A receive error, or the read timeout (`WouldBlock`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.send(b"x").unwrap();
    /// let (n, from) = b.recv_from(&mut [0u8; 4]).unwrap();
    /// assert_eq!(n, 1);
    /// assert!(from.is_unnamed());
    /// # });
    /// ```
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_op(ParkReason::IoRead, |s| s.recv_from(buf))
    }

    /// Receives one datagram, parking until one arrives.
    ///
    /// # Errors
    /// A receive error, or the read timeout (`WouldBlock`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.send(b"xy").unwrap();
    /// assert_eq!(b.recv(&mut [0u8; 4]).unwrap(), 2);
    /// # });
    /// ```
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_op(ParkReason::IoRead, |s| s.recv(buf))
    }

    /// The local address.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert!(a.local_addr().unwrap().is_unnamed());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` if not connected.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::os::unix::net::UnixDatagram::unbound().unwrap();
    /// assert!(s.peer_addr().is_err());
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// Shuts down the read half, the write half or both.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.shutdown(std::net::Shutdown::Both).unwrap();
    /// # });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std().shutdown(how)
    }

    /// A second handle to the same socket (a duplicated fd); options are shared.
    ///
    /// # Errors
    /// If the fd cannot be duplicated.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert!(a.try_clone().is_ok());
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        UnixDatagram::wrap(self.std().try_clone()?, self.inner.opts.clone())
    }

    /// Sets the read timeout (a receive that waits longer fails with `WouldBlock`).
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.set_read_timeout(Some(std::time::Duration::from_millis(5))).unwrap();
    /// assert_eq!(a.recv(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
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
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.set_write_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), Some(std::time::Duration::from_secs(1)));
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
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert_eq!(a.read_timeout().unwrap(), None);
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
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert_eq!(a.write_timeout().unwrap(), None);
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
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// assert_eq!(a.recv(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.opts.nonblocking.store(nonblocking, Relaxed);
        Ok(())
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert!(a.take_error().unwrap().is_none());
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
    /// let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert!(fibra::os::unix::net::UnixDatagram::from_std(a).is_ok());
    /// # });
    /// ```
    pub fn from_std(socket: net::UnixDatagram) -> io::Result<UnixDatagram> {
        let opts = Opts::adopt(&socket, true)?;
        UnixDatagram::wrap(socket, Arc::new(opts))
    }

    /// Unwraps into a `std` socket, with fibra's timeouts and mode set on it (it
    /// blocks unless [`set_nonblocking`](Self::set_nonblocking) was called).
    ///
    /// # Errors
    /// If the socket's mode or options cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
    /// assert!(a.into_std().is_ok());
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::UnixDatagram> {
        let opts = self.inner.opts.clone();
        let s = self.inner.into_inner();
        opts.restore(&s, true)?;
        Ok(s)
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.std().as_raw_fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std().as_fd()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
