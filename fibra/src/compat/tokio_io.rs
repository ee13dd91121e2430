//! `tokio::io::{AsyncRead, AsyncWrite}` for fibra's stream sockets (feature `tokio-io`):
//! tokio's traits only, driven by fibra's reactor; no tokio runtime is involved.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use ::tokio::io::ReadBuf;

use super::poll;
use crate::net::TcpStream;
use crate::os::unix::net::UnixStream;

macro_rules! tokio_io {
    ($ty:ty) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `read_uninit` only writes bytes the kernel delivered into the
                // unfilled part; it never de-initialises any.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = std::task::ready!(poll::read_uninit(&*self, cx, unfilled))?;
                // SAFETY: `read(2)` initialised the first `n` bytes of the unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }

        impl ::tokio::io::AsyncWrite for $ty {
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

            /// Shuts the write half down (the peer reads end of stream).
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                poll::shutdown(&*self)
            }
        }
    };
}

tokio_io!(TcpStream);
tokio_io!(&TcpStream);
tokio_io!(UnixStream);
tokio_io!(&UnixStream);
