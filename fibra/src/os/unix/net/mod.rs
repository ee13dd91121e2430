//! Unix domain sockets whose blocking calls park only the calling fiber, mirroring
//! `std::os::unix::net`: [`UnixListener`], [`UnixStream`] and [`UnixDatagram`].
//!
//! They wait exactly as [`fibra::net`](crate::net)'s TCP and UDP types do (the same reactor,
//! timeouts, non-blocking mode and plain-thread fallback).
//!
//! ```
//! use std::io::{Read, Write};
//! use fibra::os::unix::net::UnixStream;
//! # fibra::run(|| {
//! let (mut a, mut b) = UnixStream::pair().unwrap();
//! let echo = fibra::spawn(move || {
//!     let mut buf = [0u8; 4];
//!     b.read_exact(&mut buf).unwrap();
//!     b.write_all(&buf).unwrap();
//! });
//! a.write_all(b"ping").unwrap();
//! let mut back = [0u8; 4];
//! a.read_exact(&mut back).unwrap();
//! assert_eq!(&back, b"ping");
//! echo.join().unwrap();
//! # });
//! ```

mod addr;
mod datagram;
mod listener;
mod stream;

pub use datagram::UnixDatagram;
pub use listener::{Incoming, UnixListener};
pub use std::os::unix::net::SocketAddr;
pub use stream::UnixStream;

crate::net::fd::fd_conversions!(
    UnixListener,
    "fibra::os::unix::net::UnixListener",
    std::os::unix::net::UnixListener,
    "let path = std::env::temp_dir().join(format!(\"fibra-doc-fd-{}.sock\", std::process::id()));
# let _ = std::fs::remove_file(&path);
let s = fibra::os::unix::net::UnixListener::bind(&path).unwrap();
# std::fs::remove_file(&path).unwrap();"
);
crate::net::fd::fd_conversions!(
    UnixStream,
    "fibra::os::unix::net::UnixStream",
    std::os::unix::net::UnixStream,
    "let (s, _peer) = fibra::os::unix::net::UnixStream::pair().unwrap();"
);
crate::net::fd::fd_conversions!(
    UnixDatagram,
    "fibra::os::unix::net::UnixDatagram",
    std::os::unix::net::UnixDatagram,
    "let (s, _peer) = fibra::os::unix::net::UnixDatagram::pair().unwrap();"
);
