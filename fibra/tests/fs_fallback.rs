//! `fibra::fs` where io_uring is unavailable (forced off, as on an old kernel, under seccomp or
//! with `kernel.io_uring_disabled`): a miss goes to the blocking pool and returns the same
//! bytes. Its own test binary: forcing io_uring off is process-wide.

mod common;

/// The ring's live-buffer count and the read-path counters are process-wide, and the test
/// harness runs tests on parallel threads: each test here runs alone, so what one reads is its
/// own (a read in flight in another test showed up as a "leaked" buffer).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use common::watchdog;

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

fn write_cold(path: &Path, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    (&f).write_all(data).unwrap();
    f.sync_all().unwrap();
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

#[test]
fn forced_off_misses_go_to_the_pool() {
    let _alone = alone();
    let _w = watchdog("forced_off_misses_go_to_the_pool");
    fibra::fs::__force_pool(true);
    assert!(!fibra::fs::__uring_available());
    let dir = std::env::temp_dir().join(format!("fibra-fs-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("f");
    let data = pattern(4 << 20);
    write_cold(&p, &data);
    let (p2, d2) = (p.clone(), data.clone());
    fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(move || {
            let f = std::sync::Arc::new(fibra::fs::File::open(&p2).unwrap());
            let before = fibra::fs::__paths();
            let hs: Vec<_> = (0..64u64)
                .map(|i| {
                    let (f, d) = (f.clone(), d2.clone());
                    fibra::spawn(move || {
                        let off = (i * 977 % 1024) * 4096;
                        let mut b = vec![0u8; 4096];
                        f.read_exact_at(&mut b, off).unwrap();
                        assert_eq!(&b[..], &d[off as usize..off as usize + 4096]);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let mut all = Vec::new();
            (&*f).read_to_end(&mut all).unwrap();
            assert!(all == d2);
            let after = fibra::fs::__paths();
            assert_eq!(after[1], before[1], "no operation went to a ring");
            f.sync_all().unwrap();
            let w = fibra::fs::File::create(p2.with_extension("w")).unwrap();
            w.write_all_at(b"pool", 0).unwrap();
            w.sync_data().unwrap();
            assert_eq!(fibra::fs::__paths()[1], before[1]);
        });
    assert_eq!(fibra::fs::__live_buffers(), 0);
    fibra::fs::__force_pool(false);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file whose reads missed through the ring (its miss hint set) when io_uring goes away:
/// a cold read goes to the pool, a cached one is one `RWF_NOWAIT` read, both with std's bytes.
#[test]
fn the_miss_hint_without_a_ring() {
    let _alone = alone();
    let _w = watchdog("the_miss_hint_without_a_ring");
    if !fibra::fs::__uring_available() {
        common::note("the_miss_hint_without_a_ring: io_uring unavailable here; skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("fibra-fs-hint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("f");
    let data = pattern(1 << 20);
    write_cold(&p, &data);
    let (p2, d) = (p.clone(), data.clone());
    fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(move || {
            let f = fibra::fs::File::open(&p2).unwrap();
            // SAFETY: plain syscall on an open fd.
            let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
            assert_eq!(r, 0);
            let mut b = vec![0u8; 4096];
            let mut read_at = |off: usize| {
                let before = fibra::fs::__paths();
                f.read_exact_at(&mut b, off as u64).unwrap();
                assert_eq!(&b[..], &d[off..off + 4096], "at {off}");
                let after = fibra::fs::__paths();
                [
                    after[0] - before[0],
                    after[1] - before[1],
                    after[2] - before[2],
                ]
            };
            // Cold: a miss, then (the hint set) straight to the ring. Page 0 may have stayed
            // cached through the eviction; a miss is what this step needs.
            let first = read_at(64 << 10);
            assert!(first == [0, 1, 0] || first == [1, 0, 0], "{first:?}");
            assert_eq!(read_at(128 << 10), [0, 1, 0], "hinted: to the ring");
            fibra::fs::__force_pool(true);
            assert_eq!(
                read_at(192 << 10),
                [0, 0, 1],
                "no ring: a miss goes to the pool"
            );
            assert_eq!(
                read_at(128 << 10),
                [1, 0, 0],
                "no ring: a hit is one nowait read"
            );
            fibra::fs::__force_pool(false);
        });
    fibra::fs::__force_pool(false);
    assert_eq!(fibra::fs::__live_buffers(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Under the migration opt-in a parked fiber may resume on another thread, away from its
/// ring: misses go to the pool.
#[test]
fn migration_uses_the_pool() {
    let _alone = alone();
    let _w = watchdog("migration_uses_the_pool");
    let dir = std::env::temp_dir().join(format!("fibra-fs-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("f");
    let data = pattern(1 << 20);
    write_cold(&p, &data);
    let b = fibra::Runtime::builder().workers(2);
    // SAFETY: the fibers below hold no `!Send` values or thread-local addresses across parks.
    let rt = unsafe { b.migrate_started_fibers() }.build().unwrap();
    let p2 = p.clone();
    rt.run(move || {
        assert_eq!(fibra::fs::read(&p2).unwrap(), data);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
