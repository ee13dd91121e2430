//! 100k fibers each sleeping 100 ms, on one worker per core.
use std::time::{Duration, Instant};

#[fibra::main]
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            fibra::spawn(move || {
                fibra::sleep(Duration::from_millis(100));
                i
            })
        })
        .collect();
    let spawned = started.elapsed();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!(
        "spawned in {spawned:?}, joined after {:?}",
        started.elapsed()
    );
    assert_eq!(total, n * (n - 1) / 2);
    println!("{n} sleepers: {:?} in all", started.elapsed());
}
