//! 8 producers → 1 consumer through `bounded(128)`: time per item and the scheduler's counters
//! (for profiling the fan-in case of the lab's `chan` experiment).
//!
//! `cargo run --release -p fibra --example fan_in -- [ITEMS] [CAPACITY] [PRODUCERS] [HEAD_START_US]`

use std::time::Instant;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let n = args.next().unwrap_or(2_000_000);
    let cap = args.next().unwrap_or(128) as usize;
    let producers = args.next().unwrap_or(8);
    // Non-zero: the consumer starts this many µs after the spawns, letting idle workers steal.
    let head_start = std::time::Duration::from_micros(args.next().unwrap_or(0));
    let rt = fibra::Runtime::builder().build().expect("runtime");
    let (elapsed, metrics) = rt.run(move || {
        let before = fibra::debug::metrics();
        let t0 = Instant::now();
        let (tx, rx) = fibra::chan::bounded::<u64>(cap);
        let senders: Vec<_> = (0..producers)
            .map(|p| {
                let tx = tx.clone();
                fibra::spawn(move || {
                    for i in (p..n).step_by(producers as usize) {
                        tx.send(i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        if !head_start.is_zero() {
            fibra::sleep(head_start);
        }
        let sum: u64 = rx.iter().sum();
        senders.into_iter().for_each(|s| s.join().unwrap());
        assert_eq!(sum, n * (n - 1) / 2);
        let elapsed = t0.elapsed();
        (
            elapsed,
            (
                before.expect("in a runtime"),
                fibra::debug::metrics().expect("in a runtime"),
            ),
        )
    });
    println!(
        "{n} items, cap {cap}, {producers} producers: {:.1} ns/item",
        elapsed.as_nanos() as f64 / n as f64
    );
    let (before, after) = metrics;
    for (b, a) in before.workers.iter().zip(&after.workers) {
        println!(
            "worker {}: fibers run {} ({:.2}/item), steals {}, run-next hits {}, slept {}",
            a.index,
            a.fibers_run - b.fibers_run,
            (a.fibers_run - b.fibers_run) as f64 / n as f64,
            a.steals - b.steals,
            a.run_next_hits - b.run_next_hits,
            a.times_slept - b.times_slept
        );
    }
}
