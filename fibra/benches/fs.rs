//! `fibra::fs` random reads against OS threads with `pread` and `tokio::fs`, a quick
//! version of the lab's `fs` experiment (`fibra-lab run fs`, with Go's peer and the report):
//! `cargo bench -p fibra --bench fs`.
//!
//! 4 KiB reads at random 4 KiB-aligned offsets of a 256 MiB file, warm (the file cached) and
//! cold (evicted with `posix_fadvise(DONTNEED)` before each rep), at concurrency 1, 64 and
//! 1,024, plus 1 MiB sequential reads; ops/s and p99 latency, median of `REPS` reps. Two
//! workers for fibra and tokio. `FIBRA_FS_BENCH_DIR` chooses where the file lives (default:
//! the temp dir), `FIBRA_FS_BENCH_REPS` the reps, `FIBRA_FS_BENCH_ONLY=warm` the cases whose
//! name contains it, `FIBRA_FS_BENCH_MONITOR=0` turns fibra's monitor off,
//! `FIBRA_FS_BENCH_CPU=1` prints how many cores each run kept busy.

use std::io::{Read, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE_SIZE: u64 = 256 << 20;
const BLOCK: usize = 4096;
const SEQ_BLOCK: usize = 1 << 20;

fn evict(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: plain syscall on an fd we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn warm(path: &Path) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut b = vec![0u8; SEQ_BLOCK];
    while f.read(&mut b).unwrap() > 0 {}
}

/// xorshift: the offsets of reader `r`'s `i`th read (the same for every contender).
fn offset(r: u64, i: u64) -> u64 {
    let mut x = (r + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % (FILE_SIZE / BLOCK as u64)) * BLOCK as u64
}

#[derive(Clone, Copy)]
enum Who {
    Fibra,
    Threads,
    Tokio,
}

/// Runs `conc` readers doing `per` reads each; returns (ops/s, p99 µs).
fn measure(who: Who, path: &Path, conc: usize, per: usize, seq: bool) -> (f64, f64) {
    let path = path.to_path_buf();
    let cpu0 = cpu_secs();
    let t = Instant::now();
    let mut lat: Vec<Duration> = match who {
        Who::Threads => {
            let f = Arc::new(std::fs::File::open(&path).unwrap());
            let hs: Vec<_> = (0..conc)
                .map(|r| {
                    let f = f.clone();
                    std::thread::Builder::new()
                        .stack_size(64 << 10)
                        .spawn(move || reader_sync(r, per, seq, |b, o| f.read_at(b, o)))
                        .unwrap()
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        }
        Who::Fibra => {
            let monitor = std::env::var("FIBRA_FS_BENCH_MONITOR").map_or(true, |v| v != "0");
            let rt = fibra::Runtime::builder()
                .workers(2)
                .monitor(monitor)
                .build()
                .unwrap();
            rt.run(move || {
                let f = Arc::new(fibra::fs::File::open(&path).unwrap());
                let hs: Vec<_> = (0..conc)
                    .map(|r| {
                        let f = f.clone();
                        fibra::spawn(move || reader_sync(r, per, seq, |b, o| f.read_at(b, o)))
                    })
                    .collect();
                hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
            })
        }
        Who::Tokio => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let hs: Vec<_> = (0..conc)
                    .map(|r| {
                        let path = path.clone();
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncSeekExt};
                            let mut f = tokio::fs::File::open(&path).await.unwrap();
                            let size = if seq { SEQ_BLOCK } else { BLOCK };
                            let mut b = vec![0u8; size];
                            let mut lat = Vec::with_capacity(per);
                            for i in 0..per {
                                let off = if seq {
                                    (i * SEQ_BLOCK) as u64 % FILE_SIZE
                                } else {
                                    offset(r as u64, i as u64)
                                };
                                let t = Instant::now();
                                f.seek(SeekFrom::Start(off)).await.unwrap();
                                f.read_exact(&mut b).await.unwrap();
                                lat.push(t.elapsed());
                            }
                            lat
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for h in hs {
                    all.extend(h.await.unwrap());
                }
                all
            })
        }
    };
    let secs = t.elapsed().as_secs_f64();
    if std::env::var_os("FIBRA_FS_BENCH_CPU").is_some() {
        eprintln!("  cores busy: {:.2}", (cpu_secs() - cpu0) / secs);
    }
    lat.sort_unstable();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
    (lat.len() as f64 / secs, p99.as_secs_f64() * 1e6)
}

fn reader_sync(
    r: usize,
    per: usize,
    seq: bool,
    read_at: impl Fn(&mut [u8], u64) -> std::io::Result<usize>,
) -> Vec<Duration> {
    let size = if seq { SEQ_BLOCK } else { BLOCK };
    let mut b = vec![0u8; size];
    let mut lat = Vec::with_capacity(per);
    for i in 0..per {
        let off = if seq {
            (i * SEQ_BLOCK) as u64 % FILE_SIZE
        } else {
            offset(r as u64, i as u64)
        };
        let t = Instant::now();
        let mut done = 0;
        while done < size {
            let n = read_at(&mut b[done..], off + done as u64).unwrap();
            assert!(n > 0);
            done += n;
        }
        lat.push(t.elapsed());
    }
    lat
}

/// User + system CPU time of this process so far.
fn cpu_secs() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `ru` is valid for writes of one `rusage`, which `getrusage` fills on success.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list
    }
    let dir = std::env::var_os("FIBRA_FS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let reps: usize = std::env::var("FIBRA_FS_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let path = dir.join(format!("fibra-fs-bench-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk: Vec<u8> = (0..SEQ_BLOCK).map(|i| i as u8).collect();
        for _ in 0..FILE_SIZE / SEQ_BLOCK as u64 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    println!("case                conc  who      ops/s (median of {reps})  p99 µs");
    let cases: &[(&str, usize, usize, bool, bool)] = &[
        // (name, concurrency, reads per reader, cold, sequential)
        ("warm random 4K", 1, 100_000, false, false),
        ("warm random 4K", 64, 2_000, false, false),
        ("warm random 4K", 1024, 200, false, false),
        ("cold random 4K", 1, 2_000, true, false),
        ("cold random 4K", 64, 100, true, false),
        ("cold random 4K", 1024, 10, true, false),
        ("warm seq 1M", 1, 256, false, true),
        ("cold seq 1M", 1, 256, true, true),
    ];
    let only = std::env::var("FIBRA_FS_BENCH_ONLY").unwrap_or_default();
    for &(name, conc, per, cold, seq) in cases {
        if !name.contains(only.as_str()) {
            continue;
        }
        for who in [Who::Fibra, Who::Threads, Who::Tokio] {
            let mut ops = Vec::new();
            let mut p99s = Vec::new();
            for _ in 0..reps {
                if cold {
                    evict(&path);
                } else {
                    warm(&path);
                }
                let (o, p) = measure(who, &path, conc, per, seq);
                ops.push(o);
                p99s.push(p);
            }
            let who = match who {
                Who::Fibra => "fibra",
                Who::Threads => "threads",
                Who::Tokio => "tokio",
            };
            println!(
                "{name:<18} {conc:>5}  {who:<8} {:>12.0}               {:>9.1}",
                median(ops),
                median(p99s)
            );
        }
    }
    std::fs::remove_file(&path).unwrap();
}
