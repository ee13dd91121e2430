//! Files from fibers: [`std::fs`]'s API, where a read that misses the page cache parks the
//! fiber instead of its worker.
//!
//! A regular file cannot be registered with epoll (it is always "ready"), so a plain `read`
//! from a fiber blocks the worker thread for as long as the disk takes, and every other fiber
//! of that worker waits too. `fibra::fs` takes, for each operation, the cheapest path that
//! does not block the worker:
//!
//! | operation | path, cheapest first |
//! |---|---|
//! | read, `read_at` | 1. `preadv2(RWF_NOWAIT)` on the worker: a page-cache hit is one syscall, no hand-off; 2. on `EAGAIN` an io_uring read on the worker's own ring, the fiber parked until its completion (after a miss the file's next reads start here, until one is served from the page cache: the miss hint); 3. where io_uring is unavailable, the blocking pool |
//! | write, `write_at` | `pwritev2(RWF_NOWAIT)` where the file system takes it, else the ring, else the pool |
//! | `sync_all`, `sync_data` | the ring (`IORING_OP_FSYNC`), else the pool |
//! | open, metadata, directories, rename, copy, `set_len`, … | the blocking pool ([`run_blocking`](crate::run_blocking)) |
//!
//! Why not the ring for everything: on this kind of machine a page-cache hit through io_uring
//! at queue depth 1 is slower than `pread` (352k vs 533k IOPS: a submit-and-wait round trip
//! costs ~2.8× a plain syscall), while reads that go to the disk gain 3.6–5.7× from queue
//! depth, which only a ring (or many threads) gives. `RWF_NOWAIT` tells the two apart for the
//! price of one failed syscall on a miss.
//!
//! # Writes and syncs: the ring, measured against the pool
//! A write that `RWF_NOWAIT` refuses (on ext4 every append that allocates blocks) and every
//! `fsync` go to the worker's ring, because it measured at least as fast as the pool where
//! the difference was clear (`cargo bench -p fibra --bench fs_write`: 2 workers, one file per
//! fiber, rounds alternating the two routes, median of the paired ring/pool ratios; 4 runs of
//! 5–9 rounds on the shared 2-core VM, load average 9–30):
//!
//! | case | 1 fiber | 16 fibers |
//! |---|---|---|
//! | 4 KiB append (the `RWF_NOWAIT` attempt refused) | 1.13, 0.48, 0.21, 1.02 | **1.99, 2.09, 2.46, 3.45** |
//! | `sync_data` with nothing dirty | 2.44, 0.90, 1.06, 1.46 | 1.45, 1.65, 0.84, 1.16 |
//! | 4 KiB append + `sync_data` | 1.23, 0.62, 1.16, 1.20 | 1.21, 0.92, 1.07, 1.12 |
//!
//! At 16 fibers the ring takes many operations in flight without a thread each (the pool
//! serves them with as many threads, which then compete for the two cores); at one fiber the
//! two routes are within the machine's noise (a hand-off either way: the ring's kernel worker
//! or a pool thread). Metadata stays on the pool for another reason: [`Metadata`] is std's
//! type, which only std's own `statx` call can build, so `IORING_OP_STATX` could not return
//! it; opens, directory operations, `set_len`, rename and copy are rare next to reads and
//! writes and also stay there.
//!
//! # Reads: figures
//! The lab's `fs` experiment (4 KiB random reads of a 256 MiB file, 2 workers) in paired
//! runs of the lab's child (`fibra-lab child fs <peer> … --case <row>`), before and after
//! the changes below; docs/lab/FS.md has the rounds. Three things had held fibra back:
//! - the lab's fibra peer spawned its readers in one burst without
//!   [`Builder::spread`](crate::Builder::spread): all 64 started on the spawning worker
//!   before the other judged a steal worth it, and stayed (started fibers are pinned);
//! - a read that did not park counted as one operation against the cooperative budget
//!   whatever its size, so a fiber reading in 1 MiB reads ran 128 of them (~19 ms) without
//!   yielding, past the monitor's stall threshold: its worker was reported stuck and its stack
//!   captured and symbolised again and again (the warm 1 MiB row 3.5× slower than threads,
//!   now at par); a read now costs one unit plus one per 8 KiB (`route.rs`);
//! - glibc's `preadv2` wrapper is a cancellation point, whose enter/leave took ~3.4 % of a
//!   cached 4 KiB read's CPU; the read is now a plain `syscall` (`nowait.rs`). What remains
//!   over `pread` is the kernel's iovec import (~3 % of a read's CPU, perf).
//!
//! And one change cut the cold path's CPU: a miss paid for the page twice. The failed
//! `RWF_NOWAIT` attempt already starts the disk read (the kernel's readahead runs in the
//! caller: page allocation, the block request, the virtio notification, a VM exit that was
//! 23 % of fibra's CPU on the cold 64-unit row), and the ring's read then looked the page up
//! again. After a miss a file's reads now skip the attempt until the page cache serves one
//! (`route.rs`, "The miss hint"): ~1.1 syscalls per cold read instead of ~2.1, and less CPU
//! per read; that row's throughput is the disk's either way (docs/lab/FS.md).
//!
//! Still open: inside the lab, `RWF_NOWAIT` reads of 1 MiB of an evicted file sometimes took
//! ~4 ms each, blocked in the kernel on the readahead they start, where a thread's `pread`
//! took 0.14 ms (docs/lab/FS.md, "Open").
//!
//! # The worker's ring
//! Each worker thread gets its own ring the first time one of its fibers misses
//! (`SINGLE_ISSUER | DEFER_TASKRUN`), with an eventfd registered in that worker's epoll, so a
//! worker asleep in `epoll_wait` wakes when a completion is ready. One fiber at a time reaps
//! it for the others; see `fs/uring.rs`. io_uring is unavailable on kernels before 6.1 (which
//! lack `DEFER_TASKRUN`), under seccomp filters that forbid it, and with
//! `kernel.io_uring_disabled`; the first failed setup switches the process to the pool.
//!
//! # Buffers, cancellation and shutdown
//! A read that goes to the ring reads into a heap buffer owned by the ring until the kernel
//! has completed it, then copies into the caller's slice; a write copies the caller's data in
//! first. A fiber cancelled or unwound (shutdown) while its operation is in flight leaves the
//! buffer to the ring, which frees it when the completion arrives; a ring dropped with
//! operations in flight cancels them and waits for every completion first. The kernel
//! never writes into freed memory and no buffer is leaked.
//!
//! # Platform and migration
//! Linux only, like the rest of fibra. On a plain thread (outside a fiber) every operation is
//! the plain blocking call, as in `std::fs`. Under
//! [`RuntimeBuilder::migrate_started_fibers`](crate::RuntimeBuilder::migrate_started_fibers)
//! a miss goes to the pool (a parked fiber may resume on another thread, away from its ring).
//!
//! ```
//! # fibra::run(|| {
//! let dir = std::env::temp_dir().join(format!("fibra-doc-fs-{}", std::process::id()));
//! fibra::fs::create_dir_all(&dir)?;
//! let readers: Vec<_> = (0..8)
//!     .map(|i| {
//!         let path = dir.join(format!("f{i}"));
//!         fibra::spawn(move || {
//!             fibra::fs::write(&path, format!("file {i}"))?;
//!             fibra::fs::read_to_string(&path)
//!         })
//!     })
//!     .collect();
//! for (i, r) in readers.into_iter().enumerate() {
//!     assert_eq!(r.join().unwrap()?, format!("file {i}"));
//! }
//! fibra::fs::remove_dir_all(&dir)?;
//! # std::io::Result::Ok(())
//! # }).unwrap();
//! ```

mod file;
mod nowait;
mod open_options;
mod route;
mod uring;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use file::File;
pub use open_options::OpenOptions;
pub use std::fs::{DirEntry, FileType, Metadata, Permissions};

/// Hidden test hook: `true` makes every ring path behave as if io_uring were unavailable in
/// this process (misses go to the blocking pool), `false` restores detection. Not API.
#[doc(hidden)]
pub fn __force_pool(forced: bool) {
    uring::force_off(forced);
}

/// Hidden test hook: whether a miss may go to a ring (io_uring not known to be unavailable,
/// not forced off). Not API.
#[doc(hidden)]
pub fn __uring_available() -> bool {
    uring::available()
}

/// Hidden test hook: the calling thread's counts of reads and writes served by
/// `[RWF_NOWAIT, the ring, the pool]`. Not API.
#[doc(hidden)]
pub fn __paths() -> [u64; 3] {
    route::paths()
}

/// Hidden test hook: the calling thread's `RWF_NOWAIT` read attempts that missed the page
/// cache (each then went to the ring or the pool). Not API.
#[doc(hidden)]
pub fn __nowait_misses() -> u64 {
    route::nowait_misses()
}

/// Hidden test hook: ring operation buffers alive in this process (0 once every ring has
/// drained). Not API.
#[doc(hidden)]
pub fn __live_buffers() -> usize {
    uring::live_buffers()
}

/// Reads the whole file at `path` (`std::fs::read`): opened on the pool, read through
/// [`File`]'s path (a cached file costs no hand-off after the open).
///
/// # Errors
/// As `std::fs::read`.
///
/// ```
/// # fibra::run(|| {
/// let status = fibra::fs::read("/proc/self/status").unwrap();
/// assert!(status.starts_with(b"Name:"));
/// # });
/// ```
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads the whole file at `path` as UTF-8 (`std::fs::read_to_string`).
///
/// # Errors
/// As `std::fs::read_to_string`: `InvalidData` if the contents are not UTF-8.
///
/// ```
/// # fibra::run(|| {
/// let status = fibra::fs::read_to_string("/proc/self/status").unwrap();
/// assert!(status.contains("Threads:"));
/// # });
/// ```
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Writes `contents` to `path`, creating or truncating it (`std::fs::write`).
///
/// # Errors
/// As `std::fs::write`.
///
/// ```
/// # fibra::run(|| {
/// let path = std::env::temp_dir().join(format!("fibra-doc-write-{}", std::process::id()));
/// fibra::fs::write(&path, "contents").unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "contents");
/// # fibra::fs::remove_file(&path).unwrap();
/// # });
/// ```
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    File::create(path)?.write_all(contents.as_ref())
}

/// The metadata of `path`, following symlinks (`std::fs::metadata`), on the pool.
///
/// # Errors
/// As `std::fs::metadata`.
///
/// ```
/// # fibra::run(|| {
/// assert!(fibra::fs::metadata("/proc").unwrap().is_dir());
/// # });
/// ```
pub fn metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    let path = path.as_ref();
    route::pool(|| std::fs::metadata(path))
}

/// The metadata of `path` itself, not following a symlink (`std::fs::symlink_metadata`).
///
/// # Errors
/// As `std::fs::symlink_metadata`.
///
/// ```
/// # fibra::run(|| {
/// assert!(fibra::fs::symlink_metadata("/proc/self").unwrap().file_type().is_symlink());
/// # });
/// ```
pub fn symlink_metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    let path = path.as_ref();
    route::pool(|| std::fs::symlink_metadata(path))
}

/// The entries of the directory at `path` (`std::fs::read_dir`). The whole listing is read
/// on the pool at once, so iterating never blocks; [`DirEntry::metadata`] still calls
/// `statx` on the calling thread (use [`metadata`] on [`DirEntry::path`] to keep it off).
///
/// # Errors
/// As `std::fs::read_dir`; the iterator yields the errors met while listing.
///
/// ```
/// # fibra::run(|| {
/// let names: Vec<_> = fibra::fs::read_dir("/proc/self")
///     .unwrap()
///     .map(|e| e.unwrap().file_name())
///     .collect();
/// assert!(names.iter().any(|n| n == "status"));
/// # });
/// ```
pub fn read_dir<P: AsRef<Path>>(path: P) -> io::Result<ReadDir> {
    let path = path.as_ref();
    let entries = route::pool(|| std::fs::read_dir(path).map(|d| d.collect::<Vec<_>>()))?;
    Ok(ReadDir(entries.into_iter()))
}

/// The entries of a directory, listed in full by [`read_dir`].
///
/// ```
/// # fibra::run(|| {
/// let mut entries = fibra::fs::read_dir("/proc/self").unwrap();
/// assert!(entries.next().is_some());
/// # });
/// ```
#[derive(Debug)]
pub struct ReadDir(std::vec::IntoIter<io::Result<DirEntry>>);

impl Iterator for ReadDir {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

/// Creates a directory (`std::fs::create_dir`).
///
/// # Errors
/// As `std::fs::create_dir`: `AlreadyExists`, `NotFound` for a missing parent, …
///
/// ```
/// # fibra::run(|| {
/// let dir = std::env::temp_dir().join(format!("fibra-doc-mkdir-{}", std::process::id()));
/// fibra::fs::create_dir(&dir).unwrap();
/// assert!(fibra::fs::create_dir(&dir).is_err());
/// fibra::fs::remove_dir(&dir).unwrap();
/// # });
/// ```
pub fn create_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref();
    route::pool(|| std::fs::create_dir(path))
}

/// Creates a directory and every missing parent (`std::fs::create_dir_all`).
///
/// # Errors
/// As `std::fs::create_dir_all`.
///
/// ```
/// # fibra::run(|| {
/// let dir = std::env::temp_dir().join(format!("fibra-doc-mkdirs-{}", std::process::id()));
/// fibra::fs::create_dir_all(dir.join("a/b/c")).unwrap();
/// assert!(fibra::fs::metadata(dir.join("a/b/c")).unwrap().is_dir());
/// fibra::fs::remove_dir_all(&dir).unwrap();
/// # });
/// ```
pub fn create_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref();
    route::pool(|| std::fs::create_dir_all(path))
}

/// Removes an empty directory (`std::fs::remove_dir`).
///
/// # Errors
/// As `std::fs::remove_dir`.
///
/// ```
/// # fibra::run(|| {
/// let dir = std::env::temp_dir().join(format!("fibra-doc-rmdir-{}", std::process::id()));
/// fibra::fs::create_dir(&dir).unwrap();
/// fibra::fs::remove_dir(&dir).unwrap();
/// assert!(fibra::fs::metadata(&dir).is_err());
/// # });
/// ```
pub fn remove_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref();
    route::pool(|| std::fs::remove_dir(path))
}

/// Removes a file (`std::fs::remove_file`).
///
/// # Errors
/// As `std::fs::remove_file`.
///
/// ```
/// # fibra::run(|| {
/// let path = std::env::temp_dir().join(format!("fibra-doc-rm-{}", std::process::id()));
/// fibra::fs::write(&path, "x").unwrap();
/// fibra::fs::remove_file(&path).unwrap();
/// assert_eq!(fibra::fs::remove_file(&path).unwrap_err().kind(), std::io::ErrorKind::NotFound);
/// # });
/// ```
pub fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref();
    route::pool(|| std::fs::remove_file(path))
}

/// Removes a directory and everything in it (`std::fs::remove_dir_all`).
///
/// # Errors
/// As `std::fs::remove_dir_all`.
///
/// ```
/// # fibra::run(|| {
/// let dir = std::env::temp_dir().join(format!("fibra-doc-rmall-{}", std::process::id()));
/// fibra::fs::create_dir_all(dir.join("sub")).unwrap();
/// fibra::fs::write(dir.join("sub/f"), "x").unwrap();
/// fibra::fs::remove_dir_all(&dir).unwrap();
/// assert!(fibra::fs::metadata(&dir).is_err());
/// # });
/// ```
pub fn remove_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    let path = path.as_ref();
    route::pool(|| std::fs::remove_dir_all(path))
}

/// Renames `from` to `to`, replacing `to` if it exists (`std::fs::rename`).
///
/// # Errors
/// As `std::fs::rename`.
///
/// ```
/// # fibra::run(|| {
/// let a = std::env::temp_dir().join(format!("fibra-doc-mv-a-{}", std::process::id()));
/// let b = std::env::temp_dir().join(format!("fibra-doc-mv-b-{}", std::process::id()));
/// fibra::fs::write(&a, "x").unwrap();
/// fibra::fs::rename(&a, &b).unwrap();
/// assert_eq!(fibra::fs::read(&b).unwrap(), b"x");
/// # fibra::fs::remove_file(&b).unwrap();
/// # });
/// ```
pub fn rename<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    route::pool(|| std::fs::rename(from, to))
}

/// Copies the contents and permissions of `from` to `to`; returns the bytes copied
/// (`std::fs::copy`, which uses `copy_file_range` in the kernel), on the pool.
///
/// # Errors
/// As `std::fs::copy`.
///
/// ```
/// # fibra::run(|| {
/// let a = std::env::temp_dir().join(format!("fibra-doc-cp-a-{}", std::process::id()));
/// let b = std::env::temp_dir().join(format!("fibra-doc-cp-b-{}", std::process::id()));
/// fibra::fs::write(&a, "copied").unwrap();
/// assert_eq!(fibra::fs::copy(&a, &b).unwrap(), 6);
/// assert_eq!(fibra::fs::read(&b).unwrap(), b"copied");
/// # fibra::fs::remove_file(&a).unwrap();
/// # fibra::fs::remove_file(&b).unwrap();
/// # });
/// ```
pub fn copy<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<u64> {
    let (from, to) = (from.as_ref(), to.as_ref());
    route::pool(|| std::fs::copy(from, to))
}

/// The absolute path of `path` with every symlink, `.` and `..` resolved
/// (`std::fs::canonicalize`).
///
/// # Errors
/// As `std::fs::canonicalize`: `NotFound` if the path does not exist.
///
/// ```
/// # fibra::run(|| {
/// assert_eq!(fibra::fs::canonicalize("/proc/../proc").unwrap(), std::path::Path::new("/proc"));
/// # });
/// ```
pub fn canonicalize<P: AsRef<Path>>(path: P) -> io::Result<PathBuf> {
    let path = path.as_ref();
    route::pool(|| std::fs::canonicalize(path))
}
