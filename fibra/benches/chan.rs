//! `fibra::chan` micro-benchmarks. `cargo bench -p fibra --bench chan` prints the median of
//! 5 runs of each scenario, in ns per operation (peers are in the lab: `fibra-lab run chan`).
//!
//! - `uncontended send+recv pair, fiber`: one fiber sends a `u64` into a `bounded(128)` and
//!   receives it back (never waits); ns per pair. `..., thread`: the same on a plain thread.
//! - `ping-pong bounded(1), 1 worker`: two fibers bounce a `u64` over two `bounded(1)`
//!   channels (each side waits every time); ns per round trip.
//! - `park/unpark ping-pong, no channel`: the same hand-over with `fibra::park` and
//!   `Fiber::unpark` (the floor a channel round trip builds on).
//! - `1->1` / `8->1 through <flavour>`: producers send `N` items in total to one consumer
//!   fiber on a 2-worker runtime; ns per item. `FIBRA_BENCH_WORKERS` overrides the workers.
//!
//! `FIBRA_BENCH_FILTER=substring` runs only the scenarios whose name contains it;
//! `FIBRA_BENCH_RUNS=1` runs each once (for `perf` / `valgrind --tool=callgrind`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Instant;

use fibra::chan;

/// Runs per scenario (the median is printed); `FIBRA_BENCH_RUNS` overrides it (1 for profiling).
fn runs() -> usize {
    std::env::var("FIBRA_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}
const PAIRS: u64 = 5_000_000;
const ROUND_TRIPS: u64 = 200_000;
const ITEMS: u64 = 1_000_000;

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let runs = runs().max(1);
    let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[runs / 2]
}

fn runtime(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// ns per send+recv pair on one `bounded(128)`, never waiting.
fn pair_loop() -> f64 {
    let (tx, rx) = chan::bounded::<u64>(128);
    let t = Instant::now();
    for i in 0..PAIRS {
        tx.send(black_box(i)).unwrap();
        black_box(rx.recv().unwrap());
    }
    t.elapsed().as_nanos() as f64 / PAIRS as f64
}

/// ns per round trip between two fibers over two `bounded(1)` channels.
fn ping_pong() -> f64 {
    let (ping_tx, ping_rx) = chan::bounded::<u64>(1);
    let (pong_tx, pong_rx) = chan::bounded::<u64>(1);
    let echo = fibra::spawn(move || {
        for v in ping_rx.iter() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    for i in 0..ROUND_TRIPS {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let ns = t.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
    drop(ping_tx);
    echo.join().unwrap();
    ns
}

/// The floor under `ping_pong`: the same two fibers hand the turn over with `park`/`unpark`
/// and an atomic, no channel. ns per round trip.
fn park_pong() -> f64 {
    let turn = Arc::new(AtomicU64::new(0)); // odd: the echo's turn
    let main = fibra::current();
    let t2 = turn.clone();
    let echo = fibra::spawn(move || {
        for i in 0..ROUND_TRIPS {
            while t2.load(Acquire) != 2 * i + 1 {
                fibra::park();
            }
            t2.store(2 * i + 2, Release);
            main.unpark();
        }
    });
    let t = Instant::now();
    for i in 0..ROUND_TRIPS {
        turn.store(2 * i + 1, Release);
        echo.fiber().unpark();
        while turn.load(Acquire) != 2 * i + 2 {
            fibra::park();
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64;
    echo.join().unwrap();
    ns
}

/// Makes the channel a throughput scenario runs over.
type Make = fn() -> (chan::Sender<u64>, chan::Receiver<u64>);

/// ns per item: `producers` fibers send `ITEMS` in total to this fiber.
fn throughput(producers: u64, make: Make) -> f64 {
    let (tx, rx) = make();
    let per = ITEMS / producers;
    let t = Instant::now();
    let hs: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            fibra::spawn(move || {
                for i in 0..per {
                    tx.send(p * per + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let sum: u64 = rx.iter().sum();
    let ns = t.elapsed().as_nanos() as f64 / (per * producers) as f64;
    for h in hs {
        h.join().unwrap();
    }
    let n = per * producers;
    assert_eq!(sum, n * (n - 1) / 2);
    ns
}

fn main() {
    let filter = std::env::var("FIBRA_BENCH_FILTER").unwrap_or_default();
    let workers: usize = std::env::var("FIBRA_BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let run = |name: &str, f: &mut dyn FnMut() -> f64| {
        if name.contains(&filter) {
            println!("{name:<44} {:>9.1} ns", median(f));
        }
    };
    let one = runtime(1);
    run("uncontended send+recv pair, fiber", &mut || {
        one.run(pair_loop)
    });
    run("uncontended send+recv pair, thread", &mut pair_loop);
    run("ping-pong bounded(1), 1 worker (per trip)", &mut || {
        one.run(ping_pong)
    });
    run("park/unpark ping-pong, no channel, 1 worker", &mut || {
        one.run(park_pong)
    });
    drop(one);
    let rt = runtime(workers);
    let flavours: [(&str, Make); 3] = [
        ("bounded(128)", || chan::bounded(128)),
        ("bounded(0)", || chan::bounded(0)),
        ("unbounded", chan::unbounded),
    ];
    for producers in [1, 8] {
        for (fname, make) in flavours {
            let name = format!("{producers}->1 through {fname}, {workers} workers");
            run(&name, &mut || rt.run(move || throughput(producers, make)));
        }
    }
}
