//! The poll-shaped operations every async trait family is written with: one read, write and
//! shutdown per stream socket, waiting through `Source::poll_io` (io/source.rs).

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use crate::io::reactor::Direction;
use crate::io::source::Source;
use crate::net::TcpStream;
use crate::os::unix::net::UnixStream;

/// A fibra stream socket, seen from its async adapters.
pub(crate) trait PollStream {
    /// The `std` socket inside.
    type Std: AsRawFd;
    fn source(&self) -> &Source<Self::Std>;
    fn write_std(s: &Self::Std, buf: &[u8]) -> io::Result<usize>;
    fn write_vectored_std(s: &Self::Std, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn shutdown_std(s: &Self::Std) -> io::Result<()>;
}

/// Implements `PollStream` for `$ty`, whose `std` socket (`$std`) is reached by `$source`.
macro_rules! poll_stream {
    ($ty:ty, $std:ty, |$s:ident| $source:expr) => {
        impl PollStream for $ty {
            type Std = $std;
            fn source(&self) -> &Source<$std> {
                let $s = self;
                $source
            }
            fn write_std(mut s: &$std, buf: &[u8]) -> io::Result<usize> {
                s.write(buf)
            }
            fn write_vectored_std(mut s: &$std, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                s.write_vectored(bufs)
            }
            fn shutdown_std(s: &$std) -> io::Result<()> {
                s.shutdown(Shutdown::Write)
            }
        }
    };
}

poll_stream!(TcpStream, std::net::TcpStream, |s| &s.source);
poll_stream!(UnixStream, std::os::unix::net::UnixStream, |s| &s
    .inner
    .source);

impl<T: PollStream> PollStream for &T {
    type Std = T::Std;
    fn source(&self) -> &Source<T::Std> {
        (**self).source()
    }
    fn write_std(s: &T::Std, buf: &[u8]) -> io::Result<usize> {
        T::write_std(s, buf)
    }
    fn write_vectored_std(s: &T::Std, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        T::write_vectored_std(s, bufs)
    }
    fn shutdown_std(s: &T::Std) -> io::Result<()> {
        T::shutdown_std(s)
    }
}

/// Reads into `buf`, which may be uninitialised (hyper's and tokio's read buffers are).
pub(crate) fn read_uninit<T: PollStream>(
    s: &T,
    cx: &mut Context<'_>,
    buf: &mut [MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    let len = buf.len();
    s.source().poll_stream_read(cx, len, |io| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and
        // `read(2)` only writes into it (never reads it), so uninitialised bytes are fine;
        // the kernel writes at most `len` bytes and reports how many.
        let n = unsafe { libc::read(io.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Reads into an initialised `buf`.
#[cfg(feature = "futures-io")]
pub(crate) fn read<T: PollStream>(
    s: &T,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and `read_uninit` only
    // writes initialised bytes (what `read(2)` delivers) into it, never uninitialises any.
    let buf = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    read_uninit(s, cx, buf)
}

pub(crate) fn write<T: PollStream>(
    s: &T,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    s.source()
        .poll_io(cx, Direction::Write, |io| T::write_std(io, buf))
}

pub(crate) fn write_vectored<T: PollStream>(
    s: &T,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    s.source()
        .poll_io(cx, Direction::Write, |io| T::write_vectored_std(io, bufs))
}

/// Shuts the write half down (FIN): the end of an async write stream. Never waits.
pub(crate) fn shutdown<T: PollStream>(s: &T) -> Poll<io::Result<()>> {
    match T::shutdown_std(s.source().get_ref()) {
        // Already shut down, or the peer went away: the stream is closed either way.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
        r => Poll::Ready(r),
    }
}
