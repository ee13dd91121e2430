//! `fibra::fs` against `std::fs` on the same files, and the path each read takes: a page-cache
//! hit through `RWF_NOWAIT`, a miss (evicted with `posix_fadvise(DONTNEED)`) through the
//! worker's io_uring; large files, short reads, cancellation and shutdown with reads in flight.

mod common;

/// The ring's live-buffer count and the read-path counters are process-wide, and the test
/// harness runs tests on parallel threads: each test here runs alone, so what one reads is its
/// own (a read in flight in another test showed up as a "leaked" buffer).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use common::watchdog;

/// A directory of its own for each test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fibra-fs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic contents: byte `i` is a hash of `i`, so a read at the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

/// Writes `data` to `path`, flushes it to disk and drops it from the page cache, so the next
/// read misses. (Dirty pages cannot be dropped: hence the fsync.)
fn write_cold(path: &Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    (&f).write_all(data).unwrap();
    f.sync_all().unwrap();
    evict(path);
}

fn evict(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// Is the page at `off` of `path` in the page cache? (`mincore` on a mapping: unlike a failed
/// `RWF_NOWAIT` read, it starts no readahead.)
fn resident(path: &Path, off: usize) -> bool {
    let f = std::fs::File::open(path).unwrap();
    let len = std::fs::metadata(path).unwrap().len() as usize;
    // SAFETY: a fresh read-only shared mapping of an open file, unmapped below; nothing reads
    // through it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(4096)];
        assert_eq!(libc::mincore(p, len, vec.as_mut_ptr()), 0);
        libc::munmap(p, len);
        vec[off / 4096] & 1 != 0
    }
}

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(1).build().unwrap()
}

fn delta(before: [u64; 3], after: [u64; 3]) -> [u64; 3] {
    [
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    ]
}

#[test]
fn every_api_matches_std() {
    let _alone = alone();
    let _w = watchdog("every_api_matches_std");
    let dir = TempDir::new("api");
    let d = dir.0.clone();
    rt().run(move || {
        let data = pattern(100_000);
        let a = d.join("a");
        // write / read / read_to_string / metadata
        fibra::fs::write(&a, &data).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), data);
        assert_eq!(fibra::fs::read(&a).unwrap(), std::fs::read(&a).unwrap());
        std::fs::write(d.join("t"), "text ✓").unwrap();
        assert_eq!(
            fibra::fs::read_to_string(d.join("t")).unwrap(),
            std::fs::read_to_string(d.join("t")).unwrap()
        );
        assert_eq!(
            fibra::fs::read_to_string(&a).unwrap_err().kind(),
            std::fs::read_to_string(&a).unwrap_err().kind()
        );
        let (m, sm) = (
            fibra::fs::metadata(&a).unwrap(),
            std::fs::metadata(&a).unwrap(),
        );
        assert_eq!(
            (m.len(), m.is_file(), m.modified().unwrap()),
            (sm.len(), sm.is_file(), sm.modified().unwrap())
        );
        assert_eq!(
            fibra::fs::metadata(d.join("none")).unwrap_err().kind(),
            std::fs::metadata(d.join("none")).unwrap_err().kind()
        );
        // File: Read / Seek / Write, for File and &File
        let mut f = fibra::fs::File::open(&a).unwrap();
        let mut s = std::fs::File::open(&a).unwrap();
        let (mut b1, mut b2) = (vec![0; 777], vec![0; 777]);
        f.read_exact(&mut b1).unwrap();
        s.read_exact(&mut b2).unwrap();
        assert_eq!(b1, b2);
        assert_eq!(
            f.seek(SeekFrom::End(-10)).unwrap(),
            s.seek(SeekFrom::End(-10)).unwrap()
        );
        let (mut r1, mut r2) = (Vec::new(), Vec::new());
        (&f).read_to_end(&mut r1).unwrap();
        (&s).read_to_end(&mut r2).unwrap();
        assert_eq!(r1, r2);
        assert_eq!((&f).stream_position().unwrap(), 100_000);
        // read_at / read_exact_at leave the position alone
        let mut b = [0u8; 64];
        assert_eq!(f.read_at(&mut b, 1000).unwrap(), 64);
        assert_eq!(&b[..], &data[1000..1064]);
        f.read_exact_at(&mut b, 5).unwrap();
        assert_eq!(&b[..], &data[5..69]);
        assert_eq!(f.stream_position().unwrap(), 100_000);
        // writes: File, &File, write_at, append, set_len, sync
        let w = d.join("w");
        let mut fw = fibra::fs::File::create(&w).unwrap();
        fw.write_all(b"hello ").unwrap();
        (&fw).write_all(b"world").unwrap();
        fw.write_all_at(b"W", 6).unwrap();
        fw.flush().unwrap();
        fw.sync_all().unwrap();
        fw.sync_data().unwrap();
        assert_eq!(std::fs::read(&w).unwrap(), b"hello World");
        fw.set_len(5).unwrap();
        assert_eq!(std::fs::read(&w).unwrap(), b"hello");
        fw.set_len(8).unwrap();
        assert_eq!(std::fs::read(&w).unwrap(), b"hello\0\0\0");
        let mut ap = fibra::fs::File::options().append(true).open(&w).unwrap();
        ap.write_all(b"!").unwrap();
        assert_eq!(std::fs::read(&w).unwrap(), b"hello\0\0\0!");
        assert_eq!(
            fw.metadata().unwrap().len(),
            std::fs::metadata(&w).unwrap().len()
        );
        // into_std / from_std keep the position
        let mut f = fibra::fs::File::open(&a).unwrap();
        f.seek(SeekFrom::Start(10)).unwrap();
        let mut sf = f.into_std();
        assert_eq!(sf.stream_position().unwrap(), 10);
        sf.seek(SeekFrom::Start(20)).unwrap();
        let mut f = fibra::fs::File::from_std(sf);
        let mut one = [0u8; 1];
        f.read_exact(&mut one).unwrap();
        assert_eq!(one[0], data[20]);
        // open errors
        assert_eq!(
            fibra::fs::File::open(d.join("none")).unwrap_err().kind(),
            std::fs::File::open(d.join("none")).unwrap_err().kind()
        );
        assert_eq!(
            fibra::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&a)
                .unwrap_err()
                .kind(),
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&a)
                .unwrap_err()
                .kind()
        );
        // directories, rename, copy, canonicalize, remove
        fibra::fs::create_dir_all(d.join("x/y/z")).unwrap();
        assert!(std::fs::metadata(d.join("x/y/z")).unwrap().is_dir());
        fibra::fs::write(d.join("x/y/f1"), "1").unwrap();
        fibra::fs::write(d.join("x/y/f2"), "2").unwrap();
        let mut ours: Vec<_> = fibra::fs::read_dir(d.join("x/y"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut theirs: Vec<_> = std::fs::read_dir(d.join("x/y"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert_eq!(
            fibra::fs::read_dir(d.join("none")).unwrap_err().kind(),
            std::fs::read_dir(d.join("none")).unwrap_err().kind()
        );
        fibra::fs::rename(d.join("x/y/f1"), d.join("x/g1")).unwrap();
        assert_eq!(std::fs::read(d.join("x/g1")).unwrap(), b"1");
        assert_eq!(fibra::fs::copy(&a, d.join("copy")).unwrap(), 100_000);
        assert_eq!(std::fs::read(d.join("copy")).unwrap(), data);
        assert_eq!(
            fibra::fs::canonicalize(d.join("x/y/../g1")).unwrap(),
            std::fs::canonicalize(d.join("x/y/../g1")).unwrap()
        );
        fibra::fs::remove_file(d.join("copy")).unwrap();
        assert_eq!(
            fibra::fs::remove_file(d.join("copy")).unwrap_err().kind(),
            std::fs::remove_file(d.join("copy")).unwrap_err().kind()
        );
        fibra::fs::remove_dir_all(d.join("x")).unwrap();
        assert!(!d.join("x").exists());
    });
}

/// Outside a fiber every call is std's, including `Read for &File`.
#[test]
fn works_on_a_plain_thread() {
    let _alone = alone();
    let dir = TempDir::new("plain");
    let p = dir.join("f");
    fibra::fs::write(&p, b"plain").unwrap();
    let f = fibra::fs::File::open(&p).unwrap();
    let mut s = String::new();
    (&f).read_to_string(&mut s).unwrap();
    assert_eq!(s, "plain");
    assert_eq!(
        fibra::fs::__paths(),
        [0, 0, 0],
        "no path counted outside a fiber"
    );
}

/// A cached read is one `RWF_NOWAIT` syscall; an evicted one goes to the ring (or, where
/// io_uring is unavailable, the pool) and returns the same bytes. After a miss the file's next
/// read skips the attempt (the miss hint): cached, it completes at submission in the ring,
/// which clears the hint, and the read after it is one `RWF_NOWAIT` syscall again.
#[test]
fn nowait_hit_and_miss_paths() {
    let _alone = alone();
    let _w = watchdog("nowait_hit_and_miss_paths");
    let dir = TempDir::new("paths");
    let p = dir.join("f");
    let data = pattern(1 << 20);
    const AT: usize = 768 << 10;
    write_cold(&p, &data);
    // Pages still under I/O (writeback, readahead) survive an eviction: evict until ours is out.
    let mut tries = 0;
    while resident(&p, AT) {
        tries += 1;
        if tries == 1000 {
            common::note("nowait_hit_and_miss_paths: the page stays cached; skipping");
            return;
        }
        std::thread::yield_now();
        evict(&p);
    }
    rt().run(move || {
        let f = fibra::fs::File::open(&p).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut read = |expect: [u64; 3], misses: u64, what: &str| {
            let (before, missed) = (fibra::fs::__paths(), fibra::fs::__nowait_misses());
            f.read_exact_at(&mut buf, AT as u64).unwrap();
            assert_eq!(&buf[..], &data[AT..AT + 4096], "{what}: the bytes");
            assert_eq!(
                delta(before, fibra::fs::__paths()),
                expect,
                "{what}: the path"
            );
            assert_eq!(
                fibra::fs::__nowait_misses() - missed,
                misses,
                "{what}: misses"
            );
        };
        if fibra::fs::__uring_available() {
            read([0, 1, 0], 1, "a miss goes to the ring");
            read([0, 1, 0], 0, "the next read skips RWF_NOWAIT (the hint)");
            read([1, 0, 0], 0, "a ring hit cleared the hint");
        } else {
            read([0, 0, 1], 1, "a miss goes to the pool without io_uring");
            read(
                [1, 0, 0],
                0,
                "without a ring the hint is ignored: a hit is one nowait read",
            );
        }
    });
    assert_eq!(fibra::fs::__live_buffers(), 0);
}

/// The miss hint on a cold file read at random by 64 fibers on one worker: every read returns
/// std's bytes, and only the first few try `RWF_NOWAIT` (each later miss goes straight to the
/// ring).
#[test]
fn cold_random_reads_skip_nowait() {
    let _alone = alone();
    let _w = watchdog("cold_random_reads_skip_nowait");
    let dir = TempDir::new("hint");
    let p = dir.join("f");
    const PAGES: u64 = 2048;
    let data = std::sync::Arc::new(pattern(PAGES as usize * 4096));
    write_cold(&p, &data);
    let (p2, d2) = (p.clone(), data.clone());
    let (reads, misses, ring) = rt().run(move || {
        let f = std::sync::Arc::new(fibra::fs::File::open(&p2).unwrap());
        // No readahead: one read must not bring in the next one's page.
        // SAFETY: plain syscall on an open fd.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        assert_eq!(r, 0);
        let before = (fibra::fs::__paths(), fibra::fs::__nowait_misses());
        // Fiber `u` reads pages u, u + 64, …, shuffled: each page once, none cached before.
        let hs: Vec<_> = (0..64u64)
            .map(|u| {
                let (f, data) = (f.clone(), d2.clone());
                fibra::spawn(move || {
                    let mut b = vec![0u8; 4096];
                    for i in 0..PAGES / 64 {
                        let page = (i * 13 % (PAGES / 64)) * 64 + u;
                        let off = (page * 4096) as usize;
                        f.read_exact_at(&mut b, off as u64).unwrap();
                        assert_eq!(&b[..], &data[off..off + 4096], "page {page}");
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // One worker: every fiber ran on this thread, whose counters these are.
        let paths = delta(before.0, fibra::fs::__paths());
        (
            paths.iter().sum::<u64>(),
            fibra::fs::__nowait_misses() - before.1,
            paths[1],
        )
    });
    assert_eq!(reads, PAGES);
    assert!(
        std::fs::read(&p).unwrap() == *data,
        "std reads the same file"
    );
    common::note(&format!(
        "cold_random_reads: {reads} reads, {ring} through the ring, {misses} RWF_NOWAIT misses"
    ));
    if !fibra::fs::__uring_available() {
        common::note("cold_random_reads: io_uring unavailable; the hint untested");
        return;
    }
    // A page the eviction left cached completes at submission and costs one more miss; a
    // handful at most. Without the hint every ring read would follow a miss.
    assert!(misses * 4 <= ring, "{misses} misses for {ring} ring reads");
    assert_eq!(fibra::fs::__live_buffers(), 0);
}

/// Many fibers missing at once on one worker: every read returns its own bytes (the reaper
/// hands off between them).
#[test]
fn concurrent_misses_on_one_worker() {
    let _alone = alone();
    let _w = watchdog("concurrent_misses_on_one_worker");
    let dir = TempDir::new("concurrent");
    let p = dir.join("f");
    let data = std::sync::Arc::new(pattern(8 << 20));
    write_cold(&p, &data);
    rt().run(move || {
        let f = std::sync::Arc::new(fibra::fs::File::open(&p).unwrap());
        let hs: Vec<_> = (0..256u64)
            .map(|i| {
                let (f, data) = (f.clone(), data.clone());
                fibra::spawn(move || {
                    let off = (i * 7919 % 2048) * 4096;
                    let mut b = vec![0u8; 4096];
                    f.read_exact_at(&mut b, off).unwrap();
                    assert_eq!(&b[..], &data[off as usize..off as usize + 4096]);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(fibra::fs::__live_buffers(), 0);
}

/// Large files: a 64 MiB file read whole (cold), and with 8 MiB `read_at`s.
#[test]
fn large_files() {
    let _alone = alone();
    let _w = watchdog("large_files");
    let dir = TempDir::new("large");
    let p = dir.join("f");
    let data = pattern(64 << 20);
    write_cold(&p, &data);
    rt().run(move || {
        assert!(
            fibra::fs::read(&p).unwrap() == data,
            "whole-file read differs"
        );
        evict(&p);
        let f = fibra::fs::File::open(&p).unwrap();
        let mut buf = vec![0u8; 8 << 20];
        for chunk in 0..8u64 {
            f.read_exact_at(&mut buf, chunk * (8 << 20)).unwrap();
            let at = (chunk * (8 << 20)) as usize;
            assert!(buf[..] == data[at..at + (8 << 20)], "chunk {chunk} differs");
        }
        // A large write through `Write`, read back by std.
        let w = p.with_extension("w");
        let mut fw = fibra::fs::File::create(&w).unwrap();
        fw.write_all(&data[..16 << 20]).unwrap();
        fw.sync_all().unwrap();
        assert!(std::fs::read(&w).unwrap() == data[..16 << 20]);
    });
}

/// Short reads: at the end of the file, past it, and into a buffer larger than the file.
#[test]
fn short_reads() {
    let _alone = alone();
    let _w = watchdog("short_reads");
    let dir = TempDir::new("short");
    let p = dir.join("f");
    let data = pattern(10_000);
    write_cold(&p, &data);
    rt().run(move || {
        let f = fibra::fs::File::open(&p).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(f.read_at(&mut buf, 9_000).unwrap(), 1_000); // cold, at the end
        assert_eq!(&buf[..1000], &data[9000..]);
        assert_eq!(f.read_at(&mut buf, 10_000).unwrap(), 0);
        assert_eq!(f.read_at(&mut buf, 1 << 40).unwrap(), 0);
        evict(&p);
        let mut big = vec![0u8; 1 << 20];
        let n = (&f).read(&mut big).unwrap(); // cold, with the file position
        assert!(n > 0 && n <= 10_000);
        assert_eq!(&big[..n], &data[..n]);
        let mut rest = Vec::new();
        (&f).read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[n..]);
        assert_eq!(f.read_at(&mut [], 0).unwrap(), 0);
        assert!(f.read_exact_at(&mut buf, 8_000).is_err());
    });
}

/// Fibers cancelled while their reads are in flight, and a session that ends with reads in
/// flight: each buffer is freed once its completion arrives (none leaks, none is written
/// after it is freed: the workers' rings drain on exit).
#[test]
fn cancel_and_shutdown_with_reads_in_flight() {
    let _alone = alone();
    let _w = watchdog("cancel_and_shutdown_with_reads_in_flight");
    let dir = TempDir::new("shutdown");
    let p = dir.join("f");
    let data = pattern(32 << 20);
    write_cold(&p, &data);
    let p2 = p.clone();
    rt().run(move || {
        let f = std::sync::Arc::new(fibra::fs::File::open(&p2).unwrap());
        // No readahead (8 MiB on some disks): one read must not bring in the others' pages.
        // SAFETY: plain syscall on an open fd.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        assert_eq!(r, 0);
        let uring = fibra::fs::__uring_available();
        let spawn_reads = |range: std::ops::Range<u64>| -> Vec<fibra::JoinHandle<()>> {
            range
                .map(|i| {
                    let f = f.clone();
                    fibra::spawn(move || {
                        let mut b = vec![0u8; 1 << 20];
                        let _ = f.read_at(&mut b, i << 20);
                    })
                })
                .collect()
        };
        // Until each fiber is parked on its completion (or done): the reads are in flight.
        let in_flight = |hs: &[fibra::JoinHandle<()>]| {
            loop {
                let parked = hs
                    .iter()
                    .filter(|h| h.fiber().park_reason() == fibra::ParkReason::FileIo)
                    .count();
                if hs.iter().all(|h| h.is_finished() || h.fiber().park_reason() == fibra::ParkReason::FileIo) {
                    return parked;
                }
                fibra::yield_now();
            }
        };
        // Cancelled mid-read.
        let hs = spawn_reads(0..16);
        let parked = if uring { in_flight(&hs) } else { 0 };
        for h in hs {
            h.cancel();
            let _ = h.join();
        }
        // Left in flight when the root returns: shutdown unwinds them.
        let hs = spawn_reads(16..32);
        let parked_at_end = if uring { in_flight(&hs) } else { 0 };
        if uring {
            common::note(&format!(
                "cancel_and_shutdown: {parked} reads in flight at cancel, {parked_at_end} at shutdown"
            ));
            assert!(parked + parked_at_end > 0, "no read was ever in flight: the test proves nothing");
        }
    });
    assert_eq!(
        fibra::fs::__live_buffers(),
        0,
        "a ring buffer outlived its session"
    );
    // The file is intact and a new session reads it.
    evict(&p);
    rt().run(move || assert!(fibra::fs::read(&p).unwrap() == data));
    assert_eq!(fibra::fs::__live_buffers(), 0);
}

/// Two sessions on one runtime: each worker thread's ring belongs to its session.
#[test]
fn a_runtime_reused_across_sessions() {
    let _alone = alone();
    let _w = watchdog("a_runtime_reused_across_sessions");
    let dir = TempDir::new("sessions");
    let p = dir.join("f");
    let data = pattern(1 << 20);
    let rt = rt();
    for _ in 0..3 {
        write_cold(&p, &data);
        let p = p.clone();
        let d = data.clone();
        rt.run(move || assert!(fibra::fs::read(&p).unwrap() == d));
    }
}

/// A fiber reading a cached file in 1 MiB reads (each one `RWF_NOWAIT` hit, never parking)
/// still lets its worker's other fibers run between reads: a read's cost against the
/// cooperative budget grows with its size (~150 µs for 1 MiB, as much as 128 small reads).
/// Counted as one operation each, 32 such reads (~5 ms) ran without a single yield.
#[test]
fn large_cached_reads_yield_to_other_fibers() {
    let _alone = alone();
    let _w = watchdog("large_cached_reads_yield_to_other_fibers");
    let dir = TempDir::new("coop");
    let p = dir.join("f");
    let data = pattern(4 << 20);
    std::fs::write(&p, &data).unwrap(); // written through the page cache: it stays cached
    const READS: u64 = 32;
    let (turns, paths) = rt().run(move || {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
        use std::sync::Arc;
        let done = Arc::new(AtomicBool::new(false));
        let turns = Arc::new(AtomicU64::new(0));
        let (d, t) = (done.clone(), turns.clone());
        // On the same (only) worker: counts its turns while the reader reads.
        let other = fibra::spawn(move || {
            while !d.load(Acquire) {
                t.fetch_add(1, Relaxed);
                fibra::yield_now();
            }
        });
        fibra::yield_now(); // let it start
        let f = fibra::fs::File::open(&p).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let before = fibra::fs::__paths();
        let start = turns.load(Relaxed);
        for i in 0..READS {
            let off = (i % 4) << 20;
            f.read_exact_at(&mut buf, off).unwrap();
            assert_eq!(buf[..], data[off as usize..off as usize + (1 << 20)]);
        }
        let seen = turns.load(Relaxed) - start;
        let paths = delta(before, fibra::fs::__paths());
        done.store(true, Release);
        other.join().unwrap();
        (seen, paths)
    });
    if paths[0] < READS {
        common::note(&format!(
            "large_cached_reads_yield_to_other_fibers: not every read was a RWF_NOWAIT hit \
             ({paths:?}); the budget is not what let the other fiber run; skipping"
        ));
        return;
    }
    assert!(
        turns >= READS / 2,
        "the other fiber ran {turns} times during {READS} reads of 1 MiB"
    );
}
