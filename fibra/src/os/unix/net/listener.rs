//! `UnixListener`: accepts Unix-socket connections, parking the calling fiber meanwhile.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use super::UnixStream;
use crate::io::reactor::Direction;
use crate::io::source::Source;
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
    source: Source<mio::net::UnixListener>,
    nonblocking: AtomicBool,
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
    fn from_mio(l: mio::net::UnixListener) -> UnixListener {
        UnixListener {
            source: Source::new(l),
            nonblocking: AtomicBool::new(false),
        }
    }

    fn mio(&self) -> &mio::net::UnixListener {
        self.source.get_ref()
    }

    /// Binds to `path` (which must not exist yet).
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
        mio::net::UnixListener::bind(path).map(UnixListener::from_mio)
    }

    /// Waits for a connection. Like [`TcpListener::accept`](crate::net::TcpListener::accept),
    /// it backs off and retries when the process or system is out of file descriptors.
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
        crate::net::accept_with_backoff(|| {
            let (s, addr) = if self.nonblocking.load(Relaxed) {
                self.mio().accept()?
            } else {
                self.source
                    .do_io(Direction::Read, ParkReason::Accept, None, |l| l.accept())?
            };
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

    /// A second handle to the same listening socket (a duplicated fd).
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
        let l = UnixListener::from_mio(mio::net::UnixListener::from_std(fd.into()));
        l.nonblocking.store(self.nonblocking.load(Relaxed), Relaxed);
        Ok(l)
    }

    /// In non-blocking mode, `accept` fails with `WouldBlock` instead of parking.
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
        self.nonblocking.store(nonblocking, Relaxed);
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

    /// Wraps a `std` listener (switched to non-blocking mode underneath).
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
        listener.set_nonblocking(true)?;
        Ok(UnixListener::from_mio(mio::net::UnixListener::from_std(
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
    /// let path = std::env::temp_dir().join(format!("fibra-doc-istd-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let l = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
    /// assert!(l.into_std().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn into_std(self) -> io::Result<net::UnixListener> {
        let l = net::UnixListener::from(OwnedFd::from(self.source.into_inner()));
        l.set_nonblocking(false)?;
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
