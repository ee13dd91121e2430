//! `futures_io::{AsyncRead, AsyncWrite}` for fibra's stream sockets (feature `futures-io`),
//! for `T` and `&T` as `std::io::{Read, Write}` are.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::poll;
use crate::net::TcpStream;
use crate::os::unix::net::UnixStream;

macro_rules! futures_io {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                poll::read(&*self, cx, buf)
            }
        }

        impl futures_io::AsyncWrite for $ty {
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

            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(())) // no user-space buffer
            }

            /// Shuts the write half down (the peer reads end of stream).
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                poll::shutdown(&*self)
            }
        }
    };
}

futures_io!(TcpStream);
futures_io!(&TcpStream);
futures_io!(UnixStream);
futures_io!(&UnixStream);
