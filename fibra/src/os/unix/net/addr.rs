//! `std`'s Unix [`SocketAddr`] as the `socket2` address `bind(2)` takes: a path, an abstract
//! name, or unnamed (which `bind` turns into an automatic abstract name on Linux).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;

use socket2::SockAddr;

pub(super) fn sock_addr(addr: &SocketAddr) -> io::Result<SockAddr> {
    if let Some(path) = addr.as_pathname() {
        return SockAddr::unix(path);
    }
    match addr.as_abstract_name() {
        // socket2 reads a leading NUL as "abstract" and then counts no terminating NUL.
        Some(name) => {
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            SockAddr::unix(OsStr::from_bytes(&bytes))
        }
        None => SockAddr::unix(""),
    }
}
