//! The path each file operation takes, cheapest first (the protocol is in `fs/mod.rs`):
//! `RWF_NOWAIT` on the worker, then the worker's ring, then the blocking pool. On a plain
//! thread (no fiber to park) every operation is the plain blocking syscall, as in `std::fs`.

use std::fs::File as StdFile;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use super::nowait;
use super::uring::{self, Ring};

/// Linux moves at most this much in one read or write (`MAX_RW_COUNT`); the ring's length
/// field is 32 bits anyway.
const MAX_RW: usize = 0x7fff_f000;

const CHECKED: u8 = 1;
const REGULAR: u8 = 2;
const NO_READ_NOWAIT: u8 = 4;
const NO_WRITE_NOWAIT: u8 = 8;
/// The last read of this file that tried `RWF_NOWAIT` missed: reads go straight to the ring
/// until one completes at submission (a page-cache hit), then try `RWF_NOWAIT` again.
const READ_MISSED: u8 = 16;

/// What a file's fd has shown about itself: a regular file (the only kind the nowait and ring
/// paths take: a pipe or a tty read may wait for ever), which `RWF_NOWAIT` attempts it
/// refused, and whether its reads have been missing the page cache (the miss hint). Learned on
/// use; Relaxed: a race only repeats a harmless `fstat` or attempt, or sends one read down the
/// other of two correct paths.
#[derive(Debug, Default)]
pub(super) struct Kind(AtomicU8);

impl Kind {
    fn get(&self, fd: RawFd) -> u8 {
        let k = self.0.load(Relaxed);
        if k & CHECKED != 0 {
            return k;
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is valid for writes of one `stat`; `fstat` initialises it on success.
        let regular = unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0 && {
            // SAFETY: `fstat` returned 0, so it filled `st`.
            let st = unsafe { st.assume_init() };
            st.st_mode & libc::S_IFMT == libc::S_IFREG
        };
        let k = CHECKED | if regular { REGULAR } else { 0 };
        self.0.fetch_or(k, Relaxed) | k
    }

    fn set(&self, bit: u8) {
        self.0.fetch_or(bit, Relaxed);
    }

    fn clear(&self, bit: u8) {
        self.0.fetch_and(!bit, Relaxed);
    }
}

thread_local! {
    /// Operations this thread sent down each path: `RWF_NOWAIT` successes, ring operations,
    /// pool excursions (`fibra::fs::__paths`, for tests), and `RWF_NOWAIT` read attempts that
    /// missed (`fibra::fs::__nowait_misses`).
    static PATHS: std::cell::Cell<[u64; 4]> = const { std::cell::Cell::new([0; 4]) };
}

#[derive(Clone, Copy)]
enum Path {
    NoWait = 0,
    Ring = 1,
    Pool = 2,
    Missed = 3,
}

fn count(p: Path) {
    PATHS.with(|c| {
        let mut v = c.get();
        v[p as usize] += 1;
        c.set(v);
    });
}

/// The calling thread's counts: `[nowait, ring, pool]`.
pub(super) fn paths() -> [u64; 3] {
    let [nowait, ring, pool, _] = PATHS.with(|c| c.get());
    [nowait, ring, pool]
}

/// The calling thread's `RWF_NOWAIT` read attempts that missed the page cache.
pub(super) fn nowait_misses() -> u64 {
    PATHS.with(|c| c.get())[Path::Missed as usize]
}

/// Is a fiber running on this thread (one that can park)? On every read: one thread-local
/// access, without building the `io::WorkerIo` that only a miss needs.
fn in_fiber() -> bool {
    crate::sched::context::with_worker(|w| w.is_some_and(|w| !w.current.get().is_null()))
}

/// Bytes of a read or write done without parking that cost one unit of the fiber's
/// cooperative budget beyond the operation itself. Measured here (release, warm page cache):
/// a 4 KiB read takes ~1 µs and a 1 MiB one ~150 µs, so one unit per 8 KiB keeps a unit near
/// 1 µs whatever the size. Counting a 1 MiB read as one operation let a fiber reading a
/// cached file in 1 MiB reads run 128 of them (~19 ms) without yielding: longer than the
/// monitor's stall threshold (10 ms), so its worker was reported stuck, its stack captured
/// and symbolised, over and over (the lab's warm 1 MiB row ran 3.5× slower than threads).
const COOP_BYTES: usize = 8 << 10;

/// Counts `n` bytes moved without parking against the running fiber's budget (`coop.rs`).
fn consume(n: usize) {
    let units = 1 + (n / COOP_BYTES).min(u32::MAX as usize - 1) as u32;
    crate::coop::consume_n(units);
}

fn blocking_read(file: &StdFile, buf: &mut [u8], off: Option<u64>) -> io::Result<usize> {
    match off {
        None => (&*file).read(buf),
        Some(o) => file.read_at(buf, o),
    }
}

fn blocking_write(file: &StdFile, buf: &[u8], off: Option<u64>) -> io::Result<usize> {
    match off {
        None => (&*file).write(buf),
        Some(o) => file.write_at(buf, o),
    }
}

/// Reads into `buf` at `off` (None: at the file position, advancing it).
///
/// # The miss hint
/// A `RWF_NOWAIT` attempt that misses is not free: it starts the disk read itself (the
/// kernel's readahead, submitted by the caller: page allocation, the block request, the
/// virtio notification), and the ring's read then looks the page up again. After a miss, the
/// file's next reads skip the attempt and go straight to the ring, whose enter starts the
/// disk read instead; the first of them the page cache serves (it completes at submission,
/// `uring.rs`) clears the hint. A cached file never misses, so warm reads keep the
/// one-syscall path; a file read partly cached alternates, each ring hit costing a ring round
/// trip (~2.8× a syscall, `fs/mod.rs`) instead of a failed attempt. Measured on the lab's
/// cold 64-unit row (docs/lab/FS.md): one syscall per cold read instead of two, less CPU
/// per read, the same throughput (the disk's).
pub(super) fn read(
    file: &StdFile,
    kind: &Kind,
    buf: &mut [u8],
    off: Option<u64>,
) -> io::Result<usize> {
    if buf.is_empty() || !in_fiber() {
        return blocking_read(file, buf, off);
    }
    let fd = file.as_raw_fd();
    let k = kind.get(fd);
    if k & REGULAR != 0 {
        // Where no ring serves (the pool does), the hint is ignored: a hit saves a hand-off.
        let hinted = if k & READ_MISSED != 0 {
            Ring::current()
        } else {
            None
        };
        if hinted.is_none() && k & NO_READ_NOWAIT == 0 {
            match nowait::read(fd, buf, off) {
                Ok(n) => {
                    count(Path::NoWait);
                    // A read that could have parked and did not counts against the budget.
                    consume(n);
                    return Ok(n);
                }
                Err(e) if nowait::would_block(&e) => {
                    count(Path::Missed);
                    kind.set(READ_MISSED);
                }
                Err(e) if nowait::unsupported(&e) => kind.set(NO_READ_NOWAIT),
                Err(e) => return Err(e),
            }
        }
        let skipped = hinted.is_some();
        if let Some(ring) = hinted.or_else(Ring::current) {
            count(Path::Ring);
            let len = buf.len().min(MAX_RW) as u32;
            let done = ring.execute(Vec::new(), uring::read_entry(fd, len, off))?;
            let mut data = done.buf;
            let n = result(done.res)?;
            if n > data.capacity() {
                fatal!("fs::route::read: the kernel read {n} bytes into a {len}-byte buffer");
            }
            // SAFETY: the completion says the kernel wrote the first `n` bytes of the buffer's
            // allocation, and `n` is within its capacity (checked above).
            unsafe { data.set_len(n) };
            buf[..n].copy_from_slice(&data);
            // Only a read that skipped the attempt says so: after a miss, the disk read that
            // the attempt started may have finished before the ring's own attempt.
            if skipped && done.at_submit {
                kind.clear(READ_MISSED); // the page cache had it: try `RWF_NOWAIT` again
            }
            return Ok(n);
        }
    }
    count(Path::Pool);
    crate::run_blocking(|| blocking_read(file, buf, off))
}

/// Writes from `buf` at `off` (None: at the file position, or the end in append mode).
pub(super) fn write(
    file: &StdFile,
    kind: &Kind,
    buf: &[u8],
    off: Option<u64>,
) -> io::Result<usize> {
    if buf.is_empty() || !in_fiber() {
        return blocking_write(file, buf, off);
    }
    let fd = file.as_raw_fd();
    let k = kind.get(fd);
    if k & REGULAR != 0 {
        if k & NO_WRITE_NOWAIT == 0 {
            match nowait::write(fd, buf, off) {
                Ok(n) => {
                    count(Path::NoWait);
                    consume(n);
                    return Ok(n);
                }
                Err(e) if nowait::would_block(&e) => {}
                Err(e) if nowait::unsupported(&e) => kind.set(NO_WRITE_NOWAIT),
                Err(e) => return Err(e),
            }
        }
        if let Some(ring) = Ring::current() {
            count(Path::Ring);
            let data = buf[..buf.len().min(MAX_RW)].to_vec();
            return result(ring.execute(data, uring::write_entry(fd, off))?.res);
        }
    }
    count(Path::Pool);
    crate::run_blocking(|| blocking_write(file, buf, off))
}

/// `fsync` (`datasync`: `fdatasync`): through the ring where there is one, else the pool
/// (the ring measured at least as fast: `fs/mod.rs`, "Writes and syncs").
pub(super) fn sync(file: &StdFile, datasync: bool) -> io::Result<()> {
    if in_fiber() {
        if let Some(ring) = Ring::current() {
            count(Path::Ring);
            let entry = uring::fsync_entry(file.as_raw_fd(), datasync);
            return result(ring.execute(Vec::new(), entry)?.res).map(drop);
        }
    }
    pool(|| {
        if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        }
    })
}

/// Runs a blocking call on the pool while the fiber parks (plainly, outside a fiber).
pub(super) fn pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    crate::run_blocking(f)
}

fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}
