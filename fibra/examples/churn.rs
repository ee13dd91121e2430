//! Debug aid: spawn-and-join of empty fibers, in batches.
use std::time::Instant;
fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let w: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let rt = fibra::Runtime::builder().workers(w).build().unwrap();
    rt.run(|| {
        let t = Instant::now();
        for _ in 0..n / 10_000 {
            let hs: Vec<_> = (0..10_000).map(|_| fibra::spawn(|| ())).collect();
            for h in hs {
                h.join().unwrap();
            }
        }
        println!(
            "{w} workers: {:.0} ns per fiber",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    });
}
