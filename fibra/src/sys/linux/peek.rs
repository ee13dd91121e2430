//! Reading this process's own memory through the kernel (`process_vm_readv` on our own pid):
//! a copy that can neither fault nor race. An unmapped or guard page fails the call with
//! `EFAULT` instead of raising `SIGSEGV`, and memory another thread writes meanwhile is copied
//! as the kernel finds it (possibly torn), which is no data race in Rust's sense: the access
//! is the kernel's, as with `read(2)` into a buffer. The monitor reads parked fibers' stacks
//! this way (`sched/lock_holder.rs`). Ordinary thread only (it allocates).

use std::io;

/// Copies `len` bytes at `addr` of this process. A short copy (the range runs into an unmapped
/// page) returns the bytes before it.
///
/// # Errors
/// `EFAULT` when `addr` itself is not mapped, `EPERM`/`ENOSYS` where the call is forbidden
/// (a seccomp filter).
pub(crate) fn read_own(addr: usize, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    let got = loop {
        // SAFETY: `local` describes `buf`, which we own and which outlives the call; the
        // kernel only writes there. `remote` is only read, by the kernel, which checks it and
        // fails with EFAULT rather than touching an unmapped page.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_mapped_memory_and_refuses_unmapped_memory() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(read_own(data.as_ptr() as usize, data.len()).unwrap(), data);
        // A page we unmap ourselves: the read fails instead of faulting.
        let page = crate::sys::page_size();
        // SAFETY: a fresh private anonymous mapping; no other code knows its address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the second page of our own mapping, which nothing references.
        let unmapped = unsafe { libc::munmap(p.cast::<u8>().add(page).cast(), page) };
        assert_eq!(unmapped, 0);
        let err = read_own(p as usize + page, 8).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
        // A range running off the end of the mapping is cut short.
        assert_eq!(read_own(p as usize + page - 8, 16).unwrap().len(), 8);
        // SAFETY: the first page, still mapped, ours.
        assert_eq!(unsafe { libc::munmap(p, page) }, 0);
    }
}
