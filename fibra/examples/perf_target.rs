//! A CPU-bound fiber workload for the profiler gate (scripts/perf.sh): 4 fibers on 2 workers
//! spin in `fiber_spins`, yielding now and then, for about `ARG` milliseconds (default 1500).
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn fiber_spins(until: Instant) -> u64 {
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
        fibra::yield_now();
    }
    x
}

fn main() {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1500);
    let until = Instant::now() + Duration::from_millis(ms);
    fibra::Runtime::builder()
        .workers(2)
        .build()
        .expect("runtime")
        .run(move || {
            let spinners: Vec<_> = (0..4)
                .map(|_| fibra::spawn(move || fiber_spins(until)))
                .collect();
            let sum = spinners
                .into_iter()
                .map(|h| h.join().expect("spinner"))
                .fold(0, u64::wrapping_add);
            println!("done {sum:x}");
        });
}
