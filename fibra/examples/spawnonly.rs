//! Debug aid: cost of the spawn call alone.
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        for round in 0..3 {
            let t = Instant::now();
            let hs: Vec<_> = (0..n).map(|_| fibra::spawn(|| ())).collect();
            let spawn = t.elapsed();
            for h in hs {
                h.join().unwrap();
            }
            println!(
                "round {round}: spawn {:.0} ns/fiber, spawn+run+join {:.0} ns/fiber",
                spawn.as_nanos() as f64 / n as f64,
                t.elapsed().as_nanos() as f64 / n as f64
            );
        }
    });
}
