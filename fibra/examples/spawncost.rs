//! Spawn phase cost (debug aid): N fibers on W workers.
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let w: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let rt = fibra::Runtime::builder().workers(w).build().unwrap();
    let t = Instant::now();
    rt.run(|| {
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
        let s: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        println!(
            "spawned in {spawned:?}, joined after {:?}, sum {s}",
            started.elapsed()
        );
    });
    println!("total {:?}", t.elapsed());
}
