//! Address space for fiber stacks: `mmap`, `madvise`, `mprotect`.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

/// `madvise` advice that turns pages into guard markers without splitting the mapping
/// (Linux >= 6.13, `include/uapi/asm-generic/mman-common.h`). Not yet in the `libc` crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Cached so that the overflow handler can read it without calling anything (async-signal-safe).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The page size. Any thread, and from a signal handler once any stack exists.
pub(crate) fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Relaxed); // a plain value, idempotent to recompute
    if cached != 0 {
        return cached;
    }
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    PAGE_SIZE.store(size, Relaxed);
    size
}

/// Reserves `len` bytes of private, zeroed, read-write address space. `MAP_NORESERVE`: nothing
/// is committed until first touch, so a million 64 KiB slots cost address space, not memory.
pub(crate) fn reserve(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous mapping at a kernel-chosen address aliases nothing we own.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range came from [`reserve`] and nothing refers to memory inside it any more.
pub(crate) unsafe fn release(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the whole range and no reference into it survives.
    cvt(unsafe { libc::munmap(addr.as_ptr().cast(), len) })
}

/// Drops the pages of `[addr, addr + len)`: they read as zero again and stop costing memory.
/// Guard markers inside the range survive (tested in `stack::region`).
///
/// # Safety
/// The range lies inside a [`reserve`]d mapping and nothing live is stored in it.
pub(crate) unsafe fn discard(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees no live data in the range; zeroing it is then unobservable.
    retry(|| unsafe { libc::madvise(addr.as_ptr().cast(), len, libc::MADV_DONTNEED) })
}

/// Makes `[addr, addr + len)` fault on access without a new memory map. Fails with `EINVAL`
/// on kernels older than 6.13.
///
/// # Safety
/// The range lies inside a [`reserve`]d mapping and holds nothing live.
pub(crate) unsafe fn guard_madvise(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and keeps nothing in it.
    retry(|| unsafe { libc::madvise(addr.as_ptr().cast(), len, MADV_GUARD_INSTALL) })
}

/// Makes `[addr, addr + len)` fault on access with `PROT_NONE`. Splits the mapping: costs
/// about two entries of `vm.max_map_count` when the range sits inside a larger mapping.
///
/// # Safety
/// The range lies inside a [`reserve`]d mapping and holds nothing live.
pub(crate) unsafe fn guard_mprotect(addr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and keeps nothing in it.
    cvt(unsafe { libc::mprotect(addr.as_ptr().cast(), len, libc::PROT_NONE) })
}

/// `/proc/sys/vm/max_map_count`, read once (65530 if unreadable: the kernel default).
pub(crate) fn max_map_count() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65530)
    })
}

/// Hidden test switch: `FIBRA_FORCE_MPROTECT_GUARDS=1` makes every pool use `mprotect` guards
/// even where `MADV_GUARD_INSTALL` works, so the fallback can be tested on new kernels. Read once.
pub(crate) fn force_mprotect_guards() -> bool {
    static FORCE: OnceLock<bool> = OnceLock::new();
    *FORCE.get_or_init(|| std::env::var_os("FIBRA_FORCE_MPROTECT_GUARDS").is_some_and(|v| v == "1"))
}

fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Retries on `EINTR` and on `EAGAIN` (which `MADV_GUARD_INSTALL` may return under races with
/// page faults in the same range).
fn retry(mut call: impl FnMut() -> libc::c_int) -> io::Result<()> {
    loop {
        match cvt(call()) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => continue,
            other => return other,
        }
    }
}

/// Installs guard markers on many pages with one `process_madvise` call (a vector of ranges)
/// instead of one `madvise` each: ~0.8 µs instead of ~1.4 µs per slot on these VMs. Returns
/// how many leading pages of `pages` were guarded; `Err` if the kernel does not offer it
/// (`process_madvise` with `MADV_GUARD_INSTALL` needs Linux >= 6.15), and then the caller
/// guards one page at a time.
///
/// # Safety
/// Every page lies inside a [`reserve`]d mapping and holds nothing live.
pub(crate) unsafe fn guard_madvise_many(pages: &[NonNull<u8>]) -> io::Result<usize> {
    let page = page_size();
    let iov: Vec<libc::iovec> = pages
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast(),
            iov_len: page,
        })
        .collect();
    let pidfd = self_pidfd()?;
    // SAFETY: `iov` describes pages the caller owns and keeps nothing in; the pidfd names this
    // process (re-opened after a fork, see `self_pidfd`).
    let advised = retry_len(|| unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            iov.as_ptr(),
            iov.len(),
            MADV_GUARD_INSTALL,
            0,
        )
    })?;
    Ok(advised / page)
}

/// A pidfd for this process, opened once per pid (a forked child must not advise its parent).
fn self_pidfd() -> io::Result<libc::c_int> {
    static CACHE: std::sync::Mutex<Option<(libc::pid_t, libc::c_int)>> =
        std::sync::Mutex::new(None);
    // SAFETY: `getpid` has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((cached_pid, fd)) = *cache {
        if cached_pid == pid {
            return Ok(fd);
        }
    }
    // SAFETY: `pidfd_open` on our own pid has no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = fd as libc::c_int;
    *cache = Some((pid, fd));
    Ok(fd)
}

/// `retry` for calls that return a length.
fn retry_len(mut f: impl FnMut() -> libc::c_long) -> io::Result<usize> {
    loop {
        let rc = f();
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
            return Err(e);
        }
    }
}
