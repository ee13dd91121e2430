//! The fd conversions `std` gives each socket type and fibra's mirror them: `FromRawFd`,
//! `IntoRawFd`, `From<OwnedFd>` and `From<T> for OwnedFd` (`AsFd`/`AsRawFd` are beside each
//! type).
//!
//! They go through `from_std`/`into_std`, so a socket's mode and timeouts travel with its fd
//! (`opts.rs`, "Hand-overs"): an adopted fd is switched to `O_NONBLOCK` underneath, and is
//! registered with a reactor lazily, at the first operation that has to wait
//! (`io/source.rs`); a released fd is deregistered first and gets fibra's mode and timeouts
//! written into it.
//!
//! The traits cannot return errors. The calls that could fail (`fcntl`, `getsockopt`,
//! `setsockopt` on the fd) fail only when the fd is not a socket, which `FromRawFd`'s caller
//! promises it is and fibra's own types guarantee; they panic if it happens anyway.

/// Implements the four conversions for `$ty` (public path `$public`), a fibra socket
/// wrapping `$std`. `$make` is doctest code that binds a `$ty` to `s`.
macro_rules! fd_conversions {
    ($ty:ident, $public:literal, $std:ty, $make:literal) => {
        impl std::os::fd::FromRawFd for $ty {
            /// Adopts the socket `fd`, as [`from_std`]($ty::from_std) does: its timeouts
            /// and mode carry over, and it is switched to non-blocking underneath.
            ///
            /// # Safety
            /// `fd` is an open socket of this type's kind, owned by the caller, who hands
            /// that ownership over (`FromRawFd`'s contract).
            ///
            /// # Panics
            /// If `fd` is not a socket after all (its options cannot be read).
            ///
            #[doc = concat!(
                "```\n",
                "use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};\n",
                "# fibra::run(|| {\n",
                $make, "\n",
                "let addr = format!(\"{:?}\", s.local_addr().unwrap());\n",
                "let raw = s.into_raw_fd();\n",
                "// SAFETY: `raw` came from `into_raw_fd` above, and nothing else owns it.\n",
                "let s = unsafe { ", $public, "::from_raw_fd(raw) };\n",
                "let owned = OwnedFd::from(s);\n",
                "assert_eq!(owned.as_raw_fd(), raw);\n",
                "let s = ", $public, "::from(owned);\n",
                "assert_eq!(format!(\"{:?}\", s.local_addr().unwrap()), addr);\n",
                "# });\n",
                "```"
            )]
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $ty {
                // SAFETY: forwarded: the caller owns `fd`, an open socket of `$std`'s kind,
                // and hands it over, which is what `$std::from_raw_fd` requires.
                let socket = unsafe { <$std as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                $crate::net::fd::adopt(socket, $ty::from_std)
            }
        }

        impl From<std::os::fd::OwnedFd> for $ty {
            /// Adopts the socket `fd` (see [`FromRawFd`](std::os::fd::FromRawFd), whose
            /// example shows all four conversions).
            ///
            /// # Panics
            /// If `fd` is not a socket.
            fn from(fd: std::os::fd::OwnedFd) -> $ty {
                $crate::net::fd::adopt(<$std>::from(fd), $ty::from_std)
            }
        }

        impl std::os::fd::IntoRawFd for $ty {
            /// Releases the fd, as [`into_std`]($ty::into_std) does: deregistered, with
            /// fibra's timeouts and mode written into it (see the example of
            /// [`FromRawFd`](std::os::fd::FromRawFd)).
            ///
            /// # Panics
            /// If the OS refuses to set the options (it does not for a socket).
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::OwnedFd::from(self).into_raw_fd()
            }
        }

        impl From<$ty> for std::os::fd::OwnedFd {
            /// Releases the fd (see [`IntoRawFd`](std::os::fd::IntoRawFd)).
            ///
            /// # Panics
            /// If the OS refuses to set the options (it does not for a socket).
            fn from(socket: $ty) -> std::os::fd::OwnedFd {
                match socket.into_std() {
                    Ok(s) => std::os::fd::OwnedFd::from(s),
                    Err(e) => panic!(
                        concat!("fibra: ", stringify!($ty), ": releasing the fd: {}"),
                        e
                    ),
                }
            }
        }
    };
}
pub(crate) use fd_conversions;

use std::io;

/// `from_std` for a conversion that cannot return its error.
pub(crate) fn adopt<S, T>(socket: S, from_std: impl FnOnce(S) -> io::Result<T>) -> T {
    match from_std(socket) {
        Ok(t) => t,
        Err(e) => panic!("fibra: adopting an fd that is not a socket of this kind: {e}"),
    }
}

fd_conversions!(
    TcpListener,
    "fibra::net::TcpListener",
    std::net::TcpListener,
    "let s = fibra::net::TcpListener::bind(\"127.0.0.1:0\").unwrap();"
);
fd_conversions!(
    TcpStream,
    "fibra::net::TcpStream",
    std::net::TcpStream,
    "# let l = fibra::net::TcpListener::bind(\"127.0.0.1:0\").unwrap();
let s = fibra::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();"
);
fd_conversions!(
    UdpSocket,
    "fibra::net::UdpSocket",
    std::net::UdpSocket,
    "let s = fibra::net::UdpSocket::bind(\"127.0.0.1:0\").unwrap();"
);

use super::{TcpListener, TcpStream, UdpSocket};
