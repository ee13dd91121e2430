//! `preadv2`/`pwritev2` with `RWF_NOWAIT`: the attempt every read makes first, on the worker.
//!
//! A read whose data is in the page cache completes in this one syscall (no hand-off, no ring);
//! one that would wait for the disk fails with `EAGAIN` at once, and the caller goes on to the
//! ring (or the pool). Buffered `RWF_NOWAIT` reads need Linux 5.9+ on the common file systems;
//! where a file (procfs, an older kernel) refuses the flag the answer is `EOPNOTSUPP`, and the
//! caller stops trying it for that file. A partly cached range may come back short: a short
//! read is a valid `read` result, and the next call continues (std's `read_exact` loops).

use std::io;
use std::os::fd::RawFd;

/// The syscall's offset argument: -1 means "the file position, and advance it".
fn offset(off: Option<u64>) -> io::Result<i64> {
    match off {
        None => Ok(-1),
        Some(o) => i64::try_from(o).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// `preadv2`/`pwritev2(fd, iov, 1, off, RWF_NOWAIT)` as a plain `syscall`, not through
/// glibc's wrappers: those are cancellation points, and entering and leaving asynchronous
/// cancellation took ~3.4 % of a cached 4 KiB read's CPU (perf, the lab's warm 1-unit row),
/// about what `preadv2` costs over `pread` in the kernel (the iovec copy). fibra never cancels
/// its threads. On 64-bit Linux the offset is the low word; the high one is ignored (0).
///
/// # Safety
/// `nr` is `SYS_preadv2` with `iov` valid for writes of its length, or `SYS_pwritev2` with it
/// valid for reads, for the duration of the call.
#[cfg(target_pointer_width = "64")]
unsafe fn raw(nr: libc::c_long, fd: RawFd, iov: &libc::iovec, off: i64) -> isize {
    // SAFETY: the caller vouches for `iov` (above); the other arguments are plain values.
    unsafe {
        libc::syscall(
            nr,
            libc::c_long::from(fd),
            std::ptr::from_ref(iov),
            1 as libc::c_long,
            off,
            0 as libc::c_long,
            libc::c_long::from(libc::RWF_NOWAIT),
        ) as isize
    }
}

/// The twin for 32-bit targets, where the offset is split in two: glibc's wrappers.
///
/// # Safety
/// As the 64-bit `raw`.
#[cfg(not(target_pointer_width = "64"))]
unsafe fn raw(nr: libc::c_long, fd: RawFd, iov: &libc::iovec, off: i64) -> isize {
    // SAFETY: the caller vouches for `iov` (above); the other arguments are plain values.
    unsafe {
        if nr == libc::SYS_preadv2 {
            libc::preadv2(fd, iov, 1, off, libc::RWF_NOWAIT)
        } else {
            libc::pwritev2(fd, iov, 1, off, libc::RWF_NOWAIT)
        }
    }
}

/// One `preadv2(RWF_NOWAIT)` (EINTR retried).
pub(super) fn read(fd: RawFd, buf: &mut [u8], off: Option<u64>) -> io::Result<usize> {
    let off = offset(off)?;
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: `iov` describes `buf`, which is valid for writes of its length and outlives
        // this synchronous call; the arguments are `preadv2`'s, in its order (`raw`).
        let n = unsafe { raw(libc::SYS_preadv2, fd, &iov, off) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `pwritev2(RWF_NOWAIT)` (EINTR retried).
pub(super) fn write(fd: RawFd, buf: &[u8], off: Option<u64>) -> io::Result<usize> {
    let off = offset(off)?;
    let iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: `iov` describes `buf`, valid for reads of its length for this synchronous
        // call; the kernel does not write through it (`raw`).
        let n = unsafe { raw(libc::SYS_pwritev2, fd, &iov, off) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Did the attempt fail only because it would have waited (try the ring or the pool)?
pub(super) fn would_block(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN)
}

/// Does this file refuse `RWF_NOWAIT` altogether (stop trying it)?
pub(super) fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}
