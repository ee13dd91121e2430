//! What the tokio bridge adds to a call (the figures in `fibra::compat::tokio`'s docs):
//! `cargo bench -p fibra --bench compat --features tokio-compat`.
//!
//! Each call is timed on its own; medians and p99 of 10,000 calls after 1,000 warm-up calls,
//! on a fibra runtime of 2 workers and the bridge's default tokio runtime of 1 worker.

use std::time::{Duration, Instant};

const WARM_UP: usize = 1_000;
const CALLS: usize = 10_000;

/// Median and p99 of `f`'s duration over `CALLS` calls.
fn time_calls(mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..WARM_UP {
        f();
    }
    let mut d: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    d.sort();
    (d[CALLS / 2], d[CALLS * 99 / 100])
}

fn row(name: &str, (p50, p99): (Duration, Duration)) {
    println!(
        "{name:<52} p50 {:>7.2} µs   p99 {:>7.2} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

fn main() {
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let base = time_calls(|| {
            std::hint::black_box(fibra::await_future(async { std::hint::black_box(1) }));
        });
        row("fibra::await_future(ready future)", base);
        let bridged = time_calls(|| {
            std::hint::black_box(fibra::compat::tokio::run(async { std::hint::black_box(1) }));
        });
        row("fibra::compat::tokio::run(ready future)", bridged);
        let yielding = time_calls(|| {
            fibra::compat::tokio::run(async { tokio::task::yield_now().await });
        });
        row("fibra::compat::tokio::run(one tokio yield)", yielding);
        // The same call while the fiber's worker is busy with other fibers (it is not asleep
        // when tokio's wake-up arrives).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                fibra::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        fibra::yield_now();
                    }
                })
            })
            .collect();
        let busy = time_calls(|| {
            std::hint::black_box(fibra::compat::tokio::run(async { std::hint::black_box(1) }));
        });
        row("fibra::compat::tokio::run(ready), workers busy", busy);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
        let added = bridged.0.saturating_sub(base.0);
        println!(
            "the bridge adds {:.2} µs to a call (medians)",
            added.as_secs_f64() * 1e6
        );
    });
}
