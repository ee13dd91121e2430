//! Which route `fibra::fs` should send writes and syncs down when they cannot finish on the
//! worker: the worker's io_uring, or the blocking pool (`cargo bench -p fibra --bench
//! fs_write`). The figures chose the routing in `fs/route.rs`; see `fs/mod.rs`.
//!
//! Rounds alternate the two routes (the pool forced with the hidden `__force_pool` hook), so a
//! machine shared with other work slows both alike; the medians and the median of the paired
//! ratios are printed. Cases, each with `conc` fibers on 2 workers, every fiber on a file of
//! its own in `FIBRA_FS_BENCH_DIR` (default: the temp dir):
//! - `append+fdatasync`: 4 KiB appended, then `sync_data` (a write-ahead log);
//! - `fdatasync`: `sync_data` of a file with nothing dirty (the syscall and the hand-off alone);
//! - `append`: 4 KiB appended, no sync (`pwritev2(RWF_NOWAIT)` serves most of them on the
//!   worker; the paths line says how many reached the ring or the pool).
//!
//! `FIBRA_FS_BENCH_ROUNDS` sets the rounds (default 5), `FIBRA_FS_BENCH_OPS` each fiber's
//! operations per round (default 200).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    AppendSync,
    Sync,
    Append,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::AppendSync => "append+fdatasync",
            Op::Sync => "fdatasync",
            Op::Append => "append",
        }
    }
}

/// One round: `conc` fibers doing `ops` operations each; returns (ops/s, the share of the
/// operations each path `[nowait, ring, pool]` served, in %). The path counters are per
/// thread, so each fiber's difference also holds its worker neighbours' operations: the
/// shares are right (every fiber does the same), the sums are not.
fn round(dir: &Path, op: Op, conc: usize, ops: usize, pool: bool) -> (f64, [u64; 3]) {
    fibra::fs::__force_pool(pool);
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    let dir = dir.to_path_buf();
    let r = rt.run(move || {
        let gate = Arc::new(fibra::sync::Barrier::new(conc + 1));
        let hs: Vec<_> = (0..conc)
            .map(|i| {
                let (gate, path) = (gate.clone(), dir.join(format!("w{i}")));
                fibra::Builder::new()
                    .spread()
                    .spawn(move || {
                        let f = fibra::fs::File::create(&path).unwrap();
                        if op == Op::Sync {
                            f.write_all_at(&[1; 4096], 0).unwrap();
                            f.sync_all().unwrap();
                        }
                        let before = fibra::fs::__paths();
                        let block = [7u8; 4096];
                        gate.wait();
                        let t = Instant::now();
                        for k in 0..ops {
                            match op {
                                Op::AppendSync => {
                                    f.write_all_at(&block, (k * 4096) as u64).unwrap();
                                    f.sync_data().unwrap();
                                }
                                Op::Sync => f.sync_data().unwrap(),
                                Op::Append => f.write_all_at(&block, (k * 4096) as u64).unwrap(),
                            }
                        }
                        let took = t.elapsed();
                        let after = fibra::fs::__paths();
                        drop(f);
                        std::fs::remove_file(&path).unwrap();
                        (took, [0, 1, 2].map(|j| after[j] - before[j]))
                    })
                    .unwrap()
            })
            .collect();
        gate.wait();
        let mut paths = [0u64; 3];
        let mut longest = std::time::Duration::ZERO;
        for h in hs {
            let (took, p) = h.join().unwrap();
            longest = longest.max(took);
            (0..3).for_each(|j| paths[j] += p[j]);
        }
        let all = paths.iter().sum::<u64>().max(1);
        let shares = paths.map(|p| p * 100 / all);
        ((conc * ops) as f64 / longest.as_secs_f64(), shares)
    });
    fibra::fs::__force_pool(false);
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list
    }
    if !fibra::fs::__uring_available() {
        println!("fs_write: io_uring is unavailable here; only the pool route exists, skipping");
        return;
    }
    let base =
        std::env::var_os("FIBRA_FS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("fibra-fs-write-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rounds = env("FIBRA_FS_BENCH_ROUNDS", 5);
    let ops = env("FIBRA_FS_BENCH_OPS", 200);
    println!("case              conc  ring ops/s  pool ops/s  ring/pool (paired median)  % of ops by path (ring run) [nowait, ring, pool]");
    for op in [Op::AppendSync, Op::Sync, Op::Append] {
        for conc in [1, 16] {
            let (mut ring, mut pool, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            let mut paths = [0; 3];
            for _ in 0..rounds {
                let (r, p) = round(&dir, op, conc, ops, false);
                let (q, _) = round(&dir, op, conc, ops, true);
                paths = p;
                ring.push(r);
                pool.push(q);
                ratio.push(r / q);
            }
            println!(
                "{:<17} {conc:>4}  {:>10.0}  {:>10.0}  {:>10.2}                 {paths:?}",
                op.name(),
                median(ring),
                median(pool),
                median(ratio),
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
