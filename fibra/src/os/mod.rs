//! Platform-specific networking, mirroring `std::os`.
//!
//! ```
//! # fibra::run(|| {
//! let (a, b) = fibra::os::unix::net::UnixDatagram::pair().unwrap();
//! a.send(b"os").unwrap();
//! assert_eq!(b.recv(&mut [0u8; 2]).unwrap(), 2);
//! # });
//! ```

pub mod unix;
