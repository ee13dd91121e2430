//! `TcpStream`: a connected TCP socket whose blocking calls park only the calling fiber.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{self, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::opts::Opts;
use crate::io::reactor::Direction;
use crate::io::source::Source;
use crate::park::ParkReason;

/// A TCP connection, like [`std::net::TcpStream`], whose reads, writes and connects park the
/// calling fiber instead of blocking its worker thread.
///
/// Reading and writing go through [`Read`] and [`Write`], implemented for `TcpStream` and for
/// `&TcpStream`, so one fiber may read while another writes (share it in an `Arc`, or use
/// [`try_clone`](TcpStream::try_clone)). Dropping it closes the connection.
///
/// ```
/// use std::io::{Read, Write};
/// # fibra::run(|| -> std::io::Result<()> {
/// let listener = fibra::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let server = fibra::spawn(move || -> std::io::Result<()> {
///     let (mut s, _) = listener.accept()?;
///     s.write_all(b"hello")
/// });
/// let mut c = fibra::net::TcpStream::connect(addr)?;
/// let mut text = String::new();
/// c.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// server.join().unwrap()
/// # }).unwrap();
/// ```
pub struct TcpStream {
    /// Also polled by the async adapters (`fibra::compat`).
    pub(crate) source: Source<net::TcpStream>,
    opts: Arc<Opts>,
}

impl TcpStream {
    /// Opens a connection to `addr`, trying each resolved address in turn. Host names are
    /// resolved on the blocking pool; the fiber parks until the handshake completes.
    ///
    /// # Errors
    /// The last address's error (for example `ConnectionRefused`), or `InvalidInput` if
    /// `addr` resolves to no address.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let listener = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let port = listener.local_addr().unwrap().port();
    /// let s = fibra::net::TcpStream::connect(("localhost", port)).unwrap();
    /// assert_eq!(s.peer_addr().unwrap().port(), port);
    /// # });
    /// ```
    pub fn connect<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpStream> {
        super::each_addr(addr, |a| TcpStream::connect_addr(a, None))
    }

    /// Opens a connection to `addr`, failing with [`TimedOut`](io::ErrorKind::TimedOut) if it
    /// is not established within `timeout`.
    ///
    /// # Errors
    /// `InvalidInput` for a zero `timeout`; `TimedOut`; or the connection's error.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::Duration;
    /// let listener = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let s = fibra::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    /// assert_eq!(s.peer_addr().unwrap(), addr);
    /// # });
    /// ```
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_addr(*addr, Opts::deadline(Some(timeout))).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(io::ErrorKind::TimedOut, "connection timed out")
            } else {
                e
            }
        })
    }

    fn connect_addr(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        super::TcpSocket::for_addr(&addr)?.connect_until(addr, deadline)
    }

    /// Waits (up to `deadline`) for the non-blocking connect started on `stream` to finish:
    /// completion is a writable edge, then `SO_ERROR` tells how it went.
    pub(crate) fn finish_connect(
        stream: net::TcpStream,
        deadline: Option<Instant>,
    ) -> io::Result<TcpStream> {
        let s = TcpStream::from_nonblocking(stream, Arc::default());
        s.source
            .do_io(Direction::Write, ParkReason::Connect, deadline, |s| {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })?;
        Ok(s)
    }

    pub(crate) fn from_nonblocking(stream: net::TcpStream, opts: Arc<Opts>) -> TcpStream {
        TcpStream {
            source: Source::new(stream),
            opts,
        }
    }

    /// Wraps a `std` stream. Its read and write timeouts and its mode carry over: a stream
    /// `std` had in non-blocking mode is in fibra's non-blocking mode (`WouldBlock` instead of
    /// parking). Underneath, the socket is switched to non-blocking either way.
    ///
    /// # Errors
    /// If the socket's mode or options cannot be read or changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std_stream = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let s = fibra::net::TcpStream::from_std(std_stream).unwrap();
    /// assert!(s.peer_addr().is_ok());
    /// # });
    /// ```
    pub fn from_std(stream: net::TcpStream) -> io::Result<TcpStream> {
        let opts = Opts::adopt(&stream, true)?;
        Ok(TcpStream::from_nonblocking(stream, Arc::new(opts)))
    }

    /// Unwraps into a `std` stream, with fibra's timeouts and mode set on the socket (it
    /// blocks unless [`set_nonblocking`](Self::set_nonblocking) was called).
    ///
    /// # Errors
    /// If the socket's mode or options cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let std_stream: std::net::TcpStream = s.into_std().unwrap();
    /// assert!(std_stream.peer_addr().is_ok());
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::TcpStream> {
        let stream = self.source.into_inner();
        self.opts.restore(&stream, true)?;
        Ok(stream)
    }

    fn std(&self) -> &net::TcpStream {
        self.source.get_ref()
    }

    /// The remote address.
    ///
    /// # Errors
    /// `NotConnected` if the connection is gone.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.std().peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.std().local_addr()
    }

    /// Shuts down the read half, the write half or both. Shutting down writing sends FIN: the
    /// peer's reads return 0 once it has read everything.
    ///
    /// # Errors
    /// If the OS refuses (for example `NotConnected`).
    ///
    /// ```
    /// use std::io::Read;
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let c = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let (mut s, _) = l.accept().unwrap();
    /// c.shutdown(std::net::Shutdown::Write).unwrap();
    /// assert_eq!(s.read(&mut [0u8; 8]).unwrap(), 0); // end of stream
    /// # });
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.std().shutdown(how)
    }

    /// A second handle to the same connection (a duplicated fd, registered on its own), so one
    /// fiber can read while another writes. Timeouts and the non-blocking flag are shared.
    ///
    /// # Errors
    /// If the fd cannot be duplicated (`EMFILE`).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// # fibra::run(|| {
    /// let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut c = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let (s, _) = l.accept().unwrap();
    /// let mut writer = s.try_clone().unwrap();
    /// let w = fibra::spawn(move || writer.write_all(b"pong").unwrap());
    /// let mut buf = [0u8; 4];
    /// c.read_exact(&mut buf).unwrap();
    /// assert_eq!(&buf, b"pong");
    /// w.join().unwrap();
    /// drop(s);
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream::from_nonblocking(
            self.std().try_clone()?,
            self.opts.clone(),
        ))
    }

    /// Sets the read timeout: a read that waits longer fails with
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) (as `std` on Unix). `None` waits forever.
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::time::Duration;
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    /// let err = s.read(&mut [0u8; 1]).unwrap_err(); // nobody writes
    /// assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.opts.set_read_timeout(timeout)
    }

    /// Sets the write timeout: a write that waits longer for room in the send buffer fails
    /// with [`WouldBlock`](io::ErrorKind::WouldBlock). `None` waits forever.
    ///
    /// # Errors
    /// `InvalidInput` for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// s.set_write_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    /// assert_eq!(s.write_timeout().unwrap(), Some(std::time::Duration::from_secs(1)));
    /// # });
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.opts.set_write_timeout(timeout)
    }

    /// The read timeout.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert_eq!(s.read_timeout().unwrap(), None);
    /// # });
    /// ```
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts.read_timeout())
    }

    /// The write timeout.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert_eq!(s.write_timeout().unwrap(), None);
    /// # });
    /// ```
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.opts.write_timeout())
    }

    /// In non-blocking mode, an operation that would wait fails with
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) instead of parking.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// use std::io::Read;
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// s.set_nonblocking(true).unwrap();
    /// assert_eq!(s.read(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// # });
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.opts
            .nonblocking
            .store(nonblocking, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm: small writes go out at once).
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// # });
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.std().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert!(!s.nodelay().unwrap());
    /// # });
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.std().nodelay()
    }

    /// Sets the IP time-to-live of outgoing packets.
    ///
    /// # Errors
    /// If the OS refuses.
    ///
    /// ```
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// s.set_ttl(42).unwrap();
    /// assert_eq!(s.ttl().unwrap(), 42);
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
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
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
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// assert!(s.take_error().unwrap().is_none());
    /// # });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.std().take_error()
    }

    /// Reads without consuming: the next `read` returns the same bytes. Parks like `read`.
    ///
    /// # Errors
    /// As [`read`](Read::read).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// # fibra::run(|| {
    /// # let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut c = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let (mut s, _) = l.accept().unwrap();
    /// c.write_all(b"abc").unwrap();
    /// let mut buf = [0u8; 3];
    /// let n = s.peek(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], &b"abc"[..n]);
    /// # });
    /// ```
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_op(|s| s.peek(buf))
    }

    fn read_op<R>(&self, op: impl FnMut(&net::TcpStream) -> io::Result<R>) -> io::Result<R> {
        self.io(
            Direction::Read,
            ParkReason::IoRead,
            self.opts.read_timeout(),
            op,
        )
    }

    /// A read of up to `len` bytes: a short one spares the next read its failing syscall
    /// (`Source::do_stream_read`).
    fn stream_read(
        &self,
        len: usize,
        mut op: impl FnMut(&net::TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.opts.is_nonblocking() {
            return op(self.std());
        }
        let deadline = Opts::deadline(self.opts.read_timeout());
        self.source
            .do_stream_read(ParkReason::IoRead, deadline, len, op)
    }

    fn write_op<R>(&self, op: impl FnMut(&net::TcpStream) -> io::Result<R>) -> io::Result<R> {
        self.io(
            Direction::Write,
            ParkReason::IoWrite,
            self.opts.write_timeout(),
            op,
        )
    }

    fn io<R>(
        &self,
        dir: Direction,
        reason: ParkReason,
        timeout: Option<Duration>,
        mut op: impl FnMut(&net::TcpStream) -> io::Result<R>,
    ) -> io::Result<R> {
        if self.opts.is_nonblocking() {
            return op(self.std());
        }
        self.source.do_io(dir, reason, Opts::deadline(timeout), op)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.stream_read(len, |mut s| s.read(buf))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = crate::io::vectored_len(bufs);
        self.stream_read(len, |mut s| s.read_vectored(bufs))
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_op(|mut s| s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_op(|mut s| s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // TCP sockets have no user-space buffer
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for TcpStream {
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

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.std().as_raw_fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std().as_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}
