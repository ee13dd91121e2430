//! `hyper::rt::{Read, Write}` for fibra's stream sockets, for `T` and `&T`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::ReadBufCursor;

use crate::compat::poll;
use crate::net::TcpStream;
use crate::os::unix::net::UnixStream;

macro_rules! hyper_io {
    ($ty:ty) => {
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `read_uninit` only writes bytes the kernel delivered into the
                // unfilled part; it never de-initialises any.
                let unfilled = unsafe { buf.as_mut() };
                let n = std::task::ready!(poll::read_uninit(&*self, cx, unfilled))?;
                // SAFETY: `read(2)` initialised the first `n` bytes of the unfilled part.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }

        impl hyper::rt::Write for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                poll::write(&*self, cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                poll::write_vectored(&*self, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(())) // no user-space buffer
            }

            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                poll::shutdown(&*self)
            }
        }
    };
}

hyper_io!(TcpStream);
hyper_io!(&TcpStream);
hyper_io!(UnixStream);
hyper_io!(&UnixStream);
