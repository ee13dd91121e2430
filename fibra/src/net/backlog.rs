//! The listen backlog a listener gets when none is asked for: the system's maximum.
//!
//! `std` and mio listen with 128. A burst of 2,000 clients connecting at once to a fibra
//! listener lost SYNs in 4 of 7 runs at 128 (93–513 listen drops, connects delayed up to
//! 11 s by SYN retransmits) and in none of 5 runs at 4,096 (issue 20). Measured again with
//! `TcpSocket::listen(128)` against `bind`'s default (somaxconn = 4,096), 2,000 threads
//! connecting, writing and reading one byte, 2 workers on 2 shared cores: at 128, 4 of 7
//! runs overflowed (1,078–4,589 `TcpExt: ListenOverflows`, slowest client 1.9–3.8 s); at
//! 4,096, 0 of 7 (slowest 30–280 ms). Go reads
//! `/proc/sys/net/core/somaxconn` for the same reason; so does fibra, once per process.
//! A larger number costs nothing until connections actually queue: the kernel allocates
//! per pending connection, not per slot.

use std::sync::OnceLock;

/// The kernel's cap on any listen backlog, when `/proc` cannot tell: glibc's `SOMAXCONN`,
/// Linux's default `somaxconn` since 5.4.
const FALLBACK: i32 = 4096;

/// `net.core.somaxconn`: the largest backlog `listen(2)` grants (a larger one is cut to it).
pub(crate) fn default_backlog() -> i32 {
    static BACKLOG: OnceLock<i32> = OnceLock::new();
    *BACKLOG.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(FALLBACK)
    })
}

/// A backlog from the public `u32` to `listen(2)`'s `c_int`; the kernel caps it at
/// `somaxconn` anyway, so saturating loses nothing.
pub(crate) fn clamp(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}
