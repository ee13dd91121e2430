//! Unix-specific parts of fibra, mirroring `std::os::unix`.
//!
//! ```
//! use std::io::{Read, Write};
//! # fibra::run(|| {
//! let (mut a, mut b) = fibra::os::unix::net::UnixStream::pair().unwrap();
//! a.write_all(b"unix").unwrap();
//! let mut buf = [0u8; 4];
//! b.read_exact(&mut buf).unwrap();
//! assert_eq!(&buf, b"unix");
//! # });
//! ```

pub mod net;
