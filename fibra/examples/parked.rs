//! N fibers parked at once: resident memory per parked fiber and memory maps used.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Instant;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    fibra::run(move || {
        let go = Arc::new(AtomicBool::new(false));
        let parked = Arc::new(AtomicUsize::new(0));
        let before = rss_kib();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (go, parked) = (go.clone(), parked.clone());
                fibra::spawn(move || {
                    parked.fetch_add(1, Relaxed);
                    while !go.load(Acquire) {
                        fibra::park();
                    }
                })
            })
            .collect();
        while parked.load(Relaxed) < n {
            fibra::yield_now();
        }
        let during = rss_kib();
        let maps = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count();
        println!(
            "{n} parked fibers after {:?}: {:.0} bytes resident each, {maps} memory maps in the process",
            t.elapsed(),
            (during - before) as f64 * 1024.0 / n as f64
        );
        go.store(true, Release);
        for h in &handles {
            h.fiber().unpark();
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    println!("all joined, runtime shut down after {:?}", t.elapsed());
}
