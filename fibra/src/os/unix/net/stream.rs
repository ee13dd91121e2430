//! `UnixStream`: a connected Unix stream socket whose blocking calls park the calling fiber.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::net::evented::Evented;
use crate::net::opts::Opts;
use crate::park::ParkReason;

/// A Unix stream socket, like [`std::os::unix::net::UnixStream`]; implements [`Read`] and
/// [`Write`] (also for `&UnixStream`), parking the calling fiber while it waits.
///
/// ```
/// use std::io::{Read, Write};
/// # fibra::run(|| {
/// let (mut a, mut b) = fibra::os::unix::net::UnixStream::pair().unwrap();
/// a.write_all(b"hi").unwrap();
/// drop(a);
/// let mut s = String::new();
/// b.read_to_string(&mut s).unwrap();
/// assert_eq!(s, "hi");
/// # });
/// ```
pub struct UnixStream {
    /// Also polled by the async adapters (`fibra::compat`).
    pub(crate) inner: Evented<net::UnixStream>,
}

impl UnixStream {
    pub(crate) fn wrap(s: net::UnixStream, opts: Arc<Opts>) -> io::Result<UnixStream> {
        s.set_nonblocking(true)?;
        Ok(UnixStream {
            inner: Evented::new(s, opts),
        })
    }

    fn std(&self) -> &net::UnixStream {
        self.inner.get_ref()
    }

    /// Connects to the socket at `path`.
    ///
    /// # Errors
    /// `NotFound` / `ConnectionRefused` if nobody listens there; other connect errors.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-connect-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// let s = fibra::os::unix::net::UnixStream::connect(&path).unwrap();
    /// assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// # drop(l); std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let path = path.as_ref();
        UnixStream::connect_with(mio::net::UnixStream::connect(path), || {
            net::UnixStream::connect(path)
        })
    }

    /// Connects to the socket at `addr`: a path, or on Linux an abstract name.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use fibra::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    /// # fibra::run(|| {
    /// let name = format!("fibra-doc-connect-addr-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    /// let _l = UnixListener::bind_addr(&addr).unwrap();
    /// let s = UnixStream::connect_addr(&addr).unwrap();
    /// assert_eq!(s.peer_addr().unwrap().as_abstract_name(), Some(name.as_bytes()));
    /// # });
    /// ```
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        UnixStream::connect_with(mio::net::UnixStream::connect_addr(addr), || {
            net::UnixStream::connect_addr(addr)
        })
    }

    /// Finishes a non-blocking connect's `attempt`, or makes a blocking one with `blocking`
    /// when the listener's backlog is full.
    fn connect_with(
        attempt: io::Result<mio::net::UnixStream>,
        blocking: impl FnOnce() -> io::Result<net::UnixStream> + Send,
    ) -> io::Result<UnixStream> {
        match attempt {
            Ok(s) => {
                let s = UnixStream::wrap(net::UnixStream::from(OwnedFd::from(s)), Arc::default())?;
                s.check_connected()?;
                Ok(s)
            }
            // A full backlog: a non-blocking connect cannot wait for room, a blocking one can
            // (on the blocking pool, so the worker keeps running).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                UnixStream::wrap(crate::run_blocking(blocking)?, Arc::default())
            }
            Err(e) => Err(e),
        }
    }

    /// Linux completes a Unix-socket connect at once (or refuses it with `EAGAIN`, handled in
    /// `connect`): there is no handshake to wait for, only an error to collect.
    fn check_connected(&self) -> io::Result<()> {
        match self.std().take_error()? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A connected pair of sockets.
    ///
    /// # Errors
    /// If the OS cannot create them (`EMFILE`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(a.peer_addr().is_ok() && b.local_addr().is_ok());
    /// # });
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((
            UnixStream::wrap(a, Arc::default())?,
            UnixStream::wrap(b, Arc::default())?,
        ))
    }

    /// The local address.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(a.local_addr().unwrap().is_unnamed());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// The peer's address.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(a.peer_addr().unwrap().is_unnamed());
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
    /// use std::io::Read;
    /// # fibra::run(|| {
    /// let (a, mut b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// a.shutdown(std::net::Shutdown::Write).unwrap();
    /// assert_eq!(b.read(&mut [0u8; 4]).unwrap(), 0);
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
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(a.try_clone().is_ok());
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        UnixStream::wrap(self.std().try_clone()?, self.inner.opts.clone())
    }

    /// Sets the read timeout (a read that waits longer fails with `WouldBlock`).
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// use std::io::Read;
    /// # fibra::run(|| {
    /// let (mut a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// a.set_read_timeout(Some(std::time::Duration::from_millis(5))).unwrap();
    /// assert_eq!(a.read(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
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
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
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
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
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
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
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
    /// use std::io::Read;
    /// # fibra::run(|| {
    /// let (mut a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// assert_eq!(a.read(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
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
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
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
    /// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(fibra::os::unix::net::UnixStream::from_std(a).is_ok());
    /// # });
    /// ```
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        let opts = Opts::adopt(&stream, true)?;
        UnixStream::wrap(stream, Arc::new(opts))
    }

    /// Unwraps into a `std` stream, with fibra's timeouts and mode set on it (it
    /// blocks unless [`set_nonblocking`](Self::set_nonblocking) was called).
    ///
    /// # Errors
    /// If the socket's mode or options cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (a, _b) = fibra::os::unix::net::UnixStream::pair().unwrap();
    /// assert!(a.into_std().is_ok());
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::UnixStream> {
        let opts = self.inner.opts.clone();
        let s = self.inner.into_inner();
        opts.restore(&s, true)?;
        Ok(s)
    }
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.inner.stream_read(len, |mut s| s.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = crate::io::vectored_len(bufs);
        self.inner.stream_read(len, |mut s| s.read_vectored(bufs))
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .write_op(ParkReason::IoWrite, |mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner
            .write_op(ParkReason::IoWrite, |mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.std().as_raw_fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std().as_fd()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}
