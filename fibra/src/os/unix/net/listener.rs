//! `UnixListener`: accepts Unix-socket connections, parking the calling fiber meanwhile.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::UnixStream;
use crate::net::evented::Evented;
use crate::net::opts::Opts;
use crate::park::ParkReason;

/// A Unix stream socket listening for connections, like
/// [`std::os::unix::net::UnixListener`]; [`accept`](UnixListener::accept) parks the calling
/// fiber until a connection arrives.
///
/// ```
/// # fibra::run(|| {
/// let path = std::env::temp_dir().join(format!("fibra-doc-listener-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
/// let p = path.clone();
/// let c = fibra::spawn(move || fibra::os::unix::net::UnixStream::connect(&p).unwrap());
/// let (_s, _) = l.accept().unwrap();
/// c.join().unwrap();
/// std::fs::remove_file(&path).unwrap();
/// # });
/// ```
pub struct UnixListener {
    /// mio's listener for its `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`; the options hold only
    /// the non-blocking flag, shared with `try_clone`s.
    inner: Evented<mio::net::UnixListener>,
}

/// The iterator of [`UnixListener::incoming`]: accepted connections, forever.
///
/// ```
/// # fibra::run(|| {
/// let path = std::env::temp_dir().join(format!("fibra-doc-incoming-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
/// let _c = fibra::os::unix::net::UnixStream::connect(&path).unwrap();
/// let mut incoming: fibra::os::unix::net::Incoming<'_> = l.incoming();
/// assert!(incoming.next().unwrap().is_ok());
/// std::fs::remove_file(&path).unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl UnixListener {
    /// `l` must be listening and in non-blocking mode already.
    fn from_listening(l: net::UnixListener, opts: Arc<Opts>) -> UnixListener {
        UnixListener {
            inner: Evented::new(mio::net::UnixListener::from_std(l), opts),
        }
    }

    fn mio(&self) -> &mio::net::UnixListener {
        self.inner.get_ref()
    }

    /// Binds to `path` (which must not exist yet). The listen backlog is the system's
    /// maximum, `net.core.somaxconn`, as for [`TcpListener::bind`](crate::net::TcpListener::bind);
    /// [`bind_with_backlog`](Self::bind_with_backlog) chooses another.
    ///
    /// # Errors
    /// `AddrInUse` if `path` exists; other bind errors.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-bind-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let addr = SocketAddr::from_pathname(path)?;
        UnixListener::listen_on(&addr, crate::net::backlog::default_backlog())
    }

    /// Binds to `path` and listens with room for `backlog` connections not accepted yet
    /// (capped by the kernel at `net.core.somaxconn`). Past it, a connect waits for room
    /// (a non-blocking one fails with `WouldBlock`).
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-backlog-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind_with_backlog(&path, 8).unwrap();
    /// let _c = fibra::os::unix::net::UnixStream::connect(&path).unwrap();
    /// assert!(l.accept().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn bind_with_backlog<P: AsRef<Path>>(path: P, backlog: u32) -> io::Result<UnixListener> {
        let addr = SocketAddr::from_pathname(path)?;
        UnixListener::listen_on(&addr, crate::net::backlog::clamp(backlog))
    }

    /// Binds to `addr`: a path, or on Linux an abstract name
    /// ([`SocketAddrExt::from_abstract_name`](std::os::linux::net::SocketAddrExt::from_abstract_name)),
    /// with the backlog of [`bind`](Self::bind).
    ///
    /// # Errors
    /// `AddrInUse` if the address is taken; other bind errors.
    ///
    /// ```
    /// use std::os::linux::net::SocketAddrExt;
    /// use fibra::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    /// # fibra::run(|| {
    /// let name = format!("fibra-doc-bind-addr-{}", std::process::id());
    /// let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    /// let l = UnixListener::bind_addr(&addr).unwrap();
    /// let _c = UnixStream::connect_addr(&addr).unwrap();
    /// assert!(l.accept().is_ok());
    /// # });
    /// ```
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::listen_on(addr, crate::net::backlog::default_backlog())
    }

    fn listen_on(addr: &SocketAddr, backlog: i32) -> io::Result<UnixListener> {
        use socket2::{Domain, Socket, Type};
        // SOCK_NONBLOCK from the start (fibra's invariant); socket2 adds SOCK_CLOEXEC.
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        socket.bind(&super::addr::sock_addr(addr)?)?;
        socket.listen(backlog)?;
        let l = net::UnixListener::from(OwnedFd::from(socket));
        Ok(UnixListener::from_listening(l, Arc::default()))
    }

    /// Waits for a connection. Like [`TcpListener::accept`](crate::net::TcpListener::accept),
    /// it backs off and retries when the process or system is out of file descriptors.
    ///
    /// In non-blocking mode there is no back-off: every error, `EMFILE` included, returns at
    /// once.
    ///
    /// # Errors
    /// Other accept errors; `WouldBlock` in non-blocking mode; an error at runtime shutdown.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-accept-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// let _c = fibra::os::unix::net::UnixStream::connect(&path).unwrap();
    /// let (s, _addr) = l.accept().unwrap();
    /// assert!(s.local_addr().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        crate::net::accept_with_backoff(&self.inner.opts, || {
            let (s, addr) = self.inner.read_op(ParkReason::Accept, |l| l.accept())?;
            let s = net::UnixStream::from(OwnedFd::from(s));
            Ok((UnixStream::wrap(s, Arc::default())?, addr))
        })
    }

    /// An iterator over accepted connections (it never ends).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-inc-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// let _c = fibra::os::unix::net::UnixStream::connect(&path).unwrap();
    /// assert!(l.incoming().next().unwrap().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    /// If the OS cannot report it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-laddr-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(l.local_addr().unwrap().as_pathname().is_some());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.mio().local_addr()
    }

    /// A second handle to the same listening socket (a duplicated fd). The non-blocking mode
    /// is shared: setting it on one sets it on both, as with `std`'s clones.
    ///
    /// # Errors
    /// If the fd cannot be duplicated.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-clone-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(l.try_clone().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        let fd = self.as_fd().try_clone_to_owned()?;
        Ok(UnixListener::from_listening(
            fd.into(),
            self.inner.opts.clone(),
        ))
    }

    /// In non-blocking mode, `accept` fails with `WouldBlock` instead of parking. The mode
    /// is shared with [`try_clone`](Self::try_clone)s.
    ///
    /// # Errors
    /// None today (`io::Result` mirrors `std`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-nb-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// l.set_nonblocking(true).unwrap();
    /// assert_eq!(l.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// std::fs::remove_file(&path).unwrap();
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
    /// let path = std::env::temp_dir().join(format!("fibra-doc-err-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(l.take_error().unwrap().is_none());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.mio().take_error()
    }

    /// Wraps a `std` listener. Its mode carries over (a non-blocking `std` listener is in
    /// fibra's non-blocking mode); underneath, the socket is switched to non-blocking.
    ///
    /// # Errors
    /// If the socket's mode cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-fstd-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let std_l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(fibra::os::unix::net::UnixListener::from_std(std_l).is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        let opts = Opts::adopt(&listener, false)?;
        Ok(UnixListener::from_listening(listener, Arc::new(opts)))
    }

    /// Unwraps into a `std` listener in fibra's mode (blocking unless
    /// [`set_nonblocking`](Self::set_nonblocking) was called).
    ///
    /// # Errors
    /// If the socket's mode cannot be changed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-istd-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(l.into_std().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::UnixListener> {
        let opts = self.inner.opts.clone();
        let l = net::UnixListener::from(OwnedFd::from(self.inner.into_inner()));
        opts.restore(&l, false)?;
        Ok(l)
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.mio().as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mio().as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .field("local", &self.local_addr().ok())
            .finish()
    }
}
