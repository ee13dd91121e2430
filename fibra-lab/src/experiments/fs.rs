//! `fs`: 4 KiB random reads over a large file, warm (in the page cache) and cold (evicted
//! before each rep), at concurrency 1, 64 and 1,024, plus 1 MiB sequential reads: ops/s and
//! p99 latency.
//!
//! The parent writes the file once per lab run into a temp dir it removes afterwards
//! ([`Scratch`]), and before each child process either reads it through (warm) or evicts it with
//! `posix_fadvise(DONTNEED)` (cold), so every contender starts from the same page cache. The
//! child finds the file through [`FILE_ENV`] and reads it the contender's way; the offsets come
//! from [`offset`], the same sequence for every contender (Go's peer computes the same one).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::{Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str = "4 KiB random reads of a 256 MiB file, warm and cold, at \
concurrency 1, 64 and 1,024, and 1 MiB sequential reads: ops/s and p99 latency";

pub const NOTE: &str = "Each unit reads 4 KiB at 4 KiB-aligned random offsets (one xorshift \
sequence per unit, the same for every contender) until the row's reads are done or its time is up; \
sequential rows read the file front to back in 1 MiB reads. Warm: the lab reads the whole file \
through before each run; cold: it evicts the file with posix_fadvise(DONTNEED) before each run (a \
cold row's reads are fewer than the file's pages, so few of them hit a page an earlier read of \
the same run brought in). fibra: fibra::fs::File::read_at from fibers spawned with \
Builder::spread (RWF_NOWAIT on the worker, then the worker's io_uring). OS threads: std::fs::File::read_at (pread), one thread per unit. \
tokio: a tokio::fs::File per task, seek then read_exact (each a spawn_blocking hop, as tokio::fs \
does). Go: os.File.ReadAt from goroutines. fibra, tokio and Go: one worker per core. p99: over \
every read of the run, timed one by one.";

/// Figure: operations per second, thousands.
pub const KOPS: &str = "kops";
/// Figure: wall time per operation (the inverse of throughput), for the ratio column.
pub const US_PER_OP: &str = "us_per_op";
/// Figure: 99th percentile of one read's latency.
pub const P99_US: &str = "p99_us";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: KOPS,
        title: "throughput, thousand reads per second",
        cost: false,
    },
    Figure {
        key: US_PER_OP,
        title: "µs of wall time per read (1 / throughput)",
        cost: true,
    },
    Figure {
        key: P99_US,
        title: "p99 latency of one read, µs",
        cost: true,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "kops",
        key: KOPS,
        title: "fs: thousand reads per second",
        axis: "thousand reads/s (log)",
        shape: PlotShape::Bars { log: true },
    },
    PlotSpec {
        stem: "p99",
        key: P99_US,
        title: "fs: p99 latency of one read",
        axis: "µs (log)",
        shape: PlotShape::Bars { log: true },
    },
];

/// Where the child finds the file (set by the parent on each child's command).
pub const FILE_ENV: &str = "FIBRA_LAB_FS_FILE";

/// A random read.
pub const BLOCK: usize = 4096;
/// A sequential read.
pub const SEQ_BLOCK: usize = 1 << 20;

/// The file's size per profile. 256 MiB is the size; writing it takes ~1.5 s here and
/// a cold sequential pass ~0.8 s, which the quick profile affords. `tiny` (tests) uses 8 MiB.
pub fn file_size(size: Size) -> u64 {
    match size {
        Size::Tiny => 8 << 20,
        Size::Quick | Size::Full => 256 << 20,
    }
}

/// What one row measures; travels to the child as `--case`, e.g. `warm-rand-c64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// Evicted before the run (else read through before it).
    pub cold: bool,
    /// 1 MiB reads front to back (else 4 KiB at random offsets).
    pub seq: bool,
    /// Units reading at once.
    pub conc: u64,
}

impl Case {
    pub fn block(self) -> usize {
        if self.seq {
            SEQ_BLOCK
        } else {
            BLOCK
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-c{}",
            if self.cold { "cold" } else { "warm" },
            if self.seq { "seq" } else { "rand" },
            self.conc
        )
    }
}

impl FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Case, String> {
        let bad = || format!("unknown fs case {s:?} (e.g. warm-rand-c64, cold-seq-c1)");
        let mut parts = s.split('-');
        let cold = match parts.next() {
            Some("warm") => false,
            Some("cold") => true,
            _ => return Err(bad()),
        };
        let seq = match parts.next() {
            Some("rand") => false,
            Some("seq") => true,
            _ => return Err(bad()),
        };
        let conc = parts
            .next()
            .and_then(|c| c.strip_prefix('c'))
            .and_then(|c| c.parse::<u64>().ok())
            .filter(|&c| c >= 1)
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Case { cold, seq, conc })
    }
}

/// Reads per run: warm rows are bounded by [`time_cap`] rather than by their count; cold random
/// rows stay well under the file's 65,536 pages so that repeats (which hit the cache) are rare.
fn reads(size: Size, case: Case) -> u64 {
    match (size, case.seq, case.cold) {
        (Size::Tiny, true, _) => 16,
        (Size::Tiny, false, _) => 2_048,
        (_, true, _) => 256, // one pass over 256 MiB
        (Size::Quick, false, false) => 400_000,
        (Size::Full, false, false) => 2_000_000,
        (Size::Quick, false, true) => 8_192,
        (Size::Full, false, true) => 16_384,
    }
}

/// The longest a run reads; the units stop at it even if reads are left (tokio::fs at
/// concurrency 1 would otherwise take ~15 s for the quick profile's warm rows).
pub fn time_cap(size: Size) -> Duration {
    Duration::from_millis(match size {
        Size::Tiny => 300,
        Size::Quick => 1_500,
        Size::Full => 5_000,
    })
}

/// The cap travels in `n`'s high bits (ms), the reads in its low 40.
const READS_BITS: u32 = 40;

pub fn encode(reads: u64, cap: Duration) -> u64 {
    (cap.as_millis() as u64) << READS_BITS | reads
}

/// `(reads, time cap)` of a child's `n`.
pub fn decode(n: u64) -> (u64, Duration) {
    (
        n & ((1 << READS_BITS) - 1),
        Duration::from_millis(n >> READS_BITS),
    )
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let mut cases = Vec::new();
    for cold in [false, true] {
        for conc in [1, 64, 1_024] {
            cases.push(Case {
                cold,
                seq: false,
                conc,
            });
        }
    }
    for cold in [false, true] {
        cases.push(Case {
            cold,
            seq: true,
            conc: 1,
        });
    }
    let mib = file_size(size) >> 20;
    cases
        .into_iter()
        .map(|case| {
            let reads = reads(size, case);
            let label = format!(
                "{} {}, {} MiB file, {} unit{}, ≤ {} reads",
                if case.cold { "cold" } else { "warm" },
                if case.seq { "1 MiB seq" } else { "4 KiB rand" },
                mib,
                case.conc,
                if case.conc == 1 { "" } else { "s" },
                super::short_count(reads),
            );
            let params = Params {
                n: encode(reads, time_cap(size)),
                workers: cores.max(1),
                pin_one_cpu: false,
                case: Some(case.to_string()),
            };
            Row {
                label,
                cells: super::same_for_all(contenders, &params),
            }
        })
        .collect()
}

/// The file the lab reads, in a temp dir of its own, removed when dropped.
pub struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    /// Writes a file of `size` bytes of varying content (so no file system can elide it).
    pub fn create(size: u64) -> io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("fibra-lab-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let scratch = Scratch {
            file: dir.join("data"),
            dir,
        };
        let mut f = File::create(&scratch.file)?;
        let mut chunk = vec![0u8; SEQ_BLOCK];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut left = size;
        while left > 0 {
            for w in chunk.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        Ok(scratch)
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Before one child's run: the page cache as `case` wants it.
    pub fn prepare(&self, case: Case) -> io::Result<()> {
        if case.cold {
            evict(&self.file)
        } else {
            let mut f = File::open(&self.file)?;
            let mut b = vec![0u8; SEQ_BLOCK];
            while f.read(&mut b)? > 0 {}
            Ok(())
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Drops the file's clean pages from the page cache.
pub fn evict(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: a plain syscall on an fd `f` owns for the call's duration; no memory is passed.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Child side: the file to read, and its size.
pub fn child_file() -> Result<(PathBuf, u64), String> {
    let path = std::env::var_os(FILE_ENV)
        .map(PathBuf::from)
        .ok_or_else(|| format!("fs: {FILE_ENV} is not set (the lab sets it)"))?;
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("fs: {}: {e}", path.display()))?
        .len();
    if len < SEQ_BLOCK as u64 {
        return Err(format!("fs: {} is too small ({len} bytes)", path.display()));
    }
    Ok((path, len))
}

/// The offset of unit `unit`'s `i`th read: 4 KiB-aligned xorshift for random rows, front to
/// back (wrapping) for sequential ones. Go's peer (`go/main.go`, `offset`) is the same.
#[inline]
pub fn offset(case: Case, file_len: u64, unit: u64, i: u64) -> u64 {
    if case.seq {
        let blocks = file_len / SEQ_BLOCK as u64;
        return (i % blocks) * SEQ_BLOCK as u64;
    }
    let mut x =
        (unit + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % (file_len / BLOCK as u64)) * BLOCK as u64
}

/// Reads unit `unit` makes of `reads` in all among `conc` units (the first takes the rest).
pub fn share(unit: u64, conc: u64, reads: u64) -> u64 {
    reads / conc + if unit == 0 { reads % conc } else { 0 }
}

/// What one unit did: each read's latency (ns), and when it started and stopped reading. The
/// run's time is from the first unit's start to the last one's end, measured by the units
/// themselves: the thread that released them may well be descheduled while they read.
pub struct UnitRun {
    pub lat: Vec<u32>,
    pub start: Instant,
    pub end: Instant,
}

/// One unit's loop: `read_at(buf, off)` as `pread`, a read being as many calls as fill the
/// buffer; stops after its share of the reads or at `job.cap` from its start.
pub fn unit_loop(
    job: &Job,
    unit: u64,
    mut read_at: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
) -> Result<UnitRun, String> {
    let reads = share(unit, job.case.conc, job.reads);
    let mut buf = vec![0u8; job.case.block()];
    let mut lat = Vec::with_capacity(reads.min(1 << 20) as usize);
    let start = Instant::now();
    let until = start + job.cap;
    let mut end = start;
    for i in 0..reads {
        let off = offset(job.case, job.file_len, unit, i);
        let t = Instant::now();
        let mut done = 0;
        while done < buf.len() {
            match read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => return Err(format!("fs: end of file at {}", off + done as u64)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("fs: read at {off}: {e}")),
            }
        }
        end = Instant::now();
        lat.push(nanos(end - t));
        if end >= until {
            break;
        }
    }
    Ok(UnitRun { lat, start, end })
}

/// A latency sample, in ns (saturating at ~4.3 s).
pub fn nanos(d: Duration) -> u32 {
    d.as_nanos().min(u128::from(u32::MAX)) as u32
}

/// The figures of one run: its units' reads.
pub fn figures(units: Vec<UnitRun>) -> Result<Figures, String> {
    let start = units.iter().map(|u| u.start).min();
    let end = units.iter().map(|u| u.end).max();
    let mut lat: Vec<u32> = units.into_iter().flat_map(|u| u.lat).collect();
    let (Some(start), Some(end)) = (start, end) else {
        return Err("fs: no unit ran".into());
    };
    if lat.is_empty() {
        return Err("fs: no read completed".into());
    }
    lat.sort_unstable();
    let p99 = lat[((lat.len() - 1) as f64 * 0.99).round() as usize];
    let secs = (end - start).as_secs_f64().max(1e-9);
    let ops = lat.len() as f64;
    Ok(Figures::from([
        (KOPS.to_string(), ops / secs / 1e3),
        (US_PER_OP.to_string(), secs * 1e6 / ops),
        (P99_US.to_string(), f64::from(p99) / 1e3),
        ("reads".to_string(), ops),
        ("elapsed_ms".to_string(), secs * 1e3),
    ]))
}

/// The child's view of its params: the case, the reads, the deadline's distance, the file.
#[derive(Clone, Debug)]
pub struct Job {
    pub case: Case,
    pub reads: u64,
    pub cap: Duration,
    pub path: PathBuf,
    pub file_len: u64,
}

impl Job {
    pub fn from_child(n: u64, case: Option<&str>) -> Result<Job, String> {
        let case: Case = case.ok_or("fs needs --case")?.parse()?;
        let (reads, cap) = decode(n);
        let (path, file_len) = child_file()?;
        Ok(Job {
            case,
            reads,
            cap,
            path,
            file_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip() {
        for cold in [false, true] {
            for seq in [false, true] {
                for conc in [1, 64, 1_024] {
                    let c = Case { cold, seq, conc };
                    assert_eq!(c.to_string().parse::<Case>(), Ok(c));
                }
            }
        }
        for bad in [
            "",
            "warm",
            "hot-rand-c1",
            "warm-rand-c0",
            "warm-rand-c1-x",
            "warm-seq-1",
        ] {
            assert!(bad.parse::<Case>().is_err(), "{bad}");
        }
    }

    #[test]
    fn n_carries_reads_and_cap() {
        let n = encode(400_000, Duration::from_millis(1_500));
        assert_eq!(decode(n), (400_000, Duration::from_millis(1_500)));
    }

    #[test]
    fn offsets_are_aligned_inside_the_file_and_spread() {
        let len = 8 << 20;
        let rand = Case {
            cold: false,
            seq: false,
            conc: 64,
        };
        // 1,000 draws from 65,536 blocks: ~992 distinct expected (birthday collisions).
        let big = 256 << 20;
        let offs: std::collections::HashSet<u64> =
            (0..1_000).map(|i| offset(rand, big, 3, i)).collect();
        assert!(offs
            .iter()
            .all(|o| o % BLOCK as u64 == 0 && o + BLOCK as u64 <= big));
        assert!(offs.len() > 950, "only {} distinct offsets", offs.len());
        assert!((0..1_000).all(|i| offset(rand, len, 7, i) + BLOCK as u64 <= len));
        assert_ne!(offset(rand, len, 0, 5), offset(rand, len, 1, 5));
        let seq = Case { seq: true, ..rand };
        let seq_offs: Vec<u64> = (0..10).map(|i| offset(seq, len, 0, i)).collect();
        assert_eq!(seq_offs[1], SEQ_BLOCK as u64);
        assert_eq!(seq_offs[8], 0, "wraps at the end of the file");
    }

    #[test]
    fn shares_add_up() {
        for (conc, reads) in [(1, 10), (64, 8_192), (1_024, 2_048), (1_024, 100)] {
            let total: u64 = (0..conc).map(|u| share(u, conc, reads)).sum();
            assert_eq!(total, reads);
        }
    }

    #[test]
    fn scratch_file_is_prepared_and_removed() {
        let s = Scratch::create(2 * SEQ_BLOCK as u64 + 100).unwrap();
        let path = s.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 << 20 | 100);
        let data = std::fs::read(&path).unwrap();
        assert_ne!(data[..4096], data[4096..8192], "the content varies");
        let case = Case {
            cold: true,
            seq: false,
            conc: 1,
        };
        s.prepare(case).unwrap();
        s.prepare(Case {
            cold: false,
            ..case
        })
        .unwrap();
        drop(s);
        assert!(!path.exists());
        assert!(!path.parent().unwrap().exists());
    }

    #[test]
    fn figures_of_a_run() {
        // Two units, 50 reads each, the second starting 2 ms after the first and ending last.
        let t = Instant::now();
        let unit = |from: u32, start_ms: u64| UnitRun {
            lat: (from..from + 50).map(|i| i * 1_000).collect(),
            start: t + Duration::from_millis(start_ms),
            end: t + Duration::from_millis(start_ms + 8),
        };
        let f = figures(vec![unit(1, 0), unit(51, 2)]).unwrap();
        assert!(
            (f[KOPS] - 10.0).abs() < 1e-9,
            "100 reads in 10 ms: {}",
            f[KOPS]
        );
        assert!((f[US_PER_OP] - 100.0).abs() < 1e-9);
        assert_eq!(f[P99_US], 99.0);
        assert!(figures(Vec::new()).is_err());
        let idle = UnitRun {
            lat: Vec::new(),
            start: t,
            end: t,
        };
        assert!(figures(vec![idle]).is_err());
    }
}
