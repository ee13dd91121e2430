//! Stack pool costs: `cargo bench -p fibra --bench stack`. Prints the median of 5 runs, in
//! thread CPU time (the shared VMs are often oversubscribed; wall time then measures the
//! neighbours). Needs `[[bench]] name = "stack"` with `harness = false` in Cargo.toml; under
//! the default harness it compiles (hence the `allow`) but measures nothing.
#![cfg_attr(test, allow(dead_code))]

use std::hint::black_box;

use fibra::__stack_test_support::Pool;

const SIZE: usize = 64 * 1024;

/// Thread CPU time, so that time the VM spends running other processes is not counted.
struct Instant(u128);

impl Instant {
    fn now() -> Instant {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid out-pointer for `clock_gettime`.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Instant(ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128)
    }

    fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_nanos((Instant::now().0 - self.0) as u64)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // Hot path: take + give through a worker's cache.
    let pool = Pool::new();
    let mut cache = pool.cache();
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let n = 10_000_000;
            let t = Instant::now();
            for _ in 0..n {
                let s = cache.take(SIZE).unwrap();
                cache.give(black_box(s));
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    println!("cache take+give:             {:8.1} ns", median(runs));

    // Pool (mutex) path: take + give on the shared pool.
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let n = 2_000_000;
            let t = Instant::now();
            for _ in 0..n {
                let s = pool.take(SIZE).unwrap();
                pool.give(black_box(s));
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    println!("pool take+give:              {:8.1} ns", median(runs));

    // Fresh slot: carve + guard install (fresh pool each run; region mmap amortised).
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let pool = Pool::new();
            let n = 900; // fits one 64 MiB region (963 slots)
            let _first = pool.take(SIZE).unwrap(); // maps the region
            let t = Instant::now();
            let v: Vec<_> = (0..n).map(|_| pool.take(SIZE).unwrap()).collect();
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            v.into_iter().for_each(|s| pool.give(s));
            pool.give(_first);
            ns
        })
        .collect();
    println!("fresh slot take (guard):     {:8.1} ns", median(runs));

    // Fresh slot + first touch of its top page (what a spawn really pays).
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let pool = Pool::new();
            let n = 900;
            let _first = pool.take(SIZE).unwrap();
            let t = Instant::now();
            let v: Vec<_> = (0..n)
                .map(|_| {
                    let s = pool.take(SIZE).unwrap();
                    let top = (s.guard_start() + 4096 + s.size() - 8) as *mut u64;
                    // SAFETY: the top word of the usable range of a stack we own.
                    unsafe { top.write_volatile(1) };
                    s
                })
                .collect();
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            v.into_iter().for_each(|s| pool.give(s));
            pool.give(_first);
            ns
        })
        .collect();
    println!("fresh slot take + 1st touch: {:8.1} ns", median(runs));

    // Region map cost, for reference.
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let pool = Pool::new();
            let s = pool.take(SIZE).unwrap();
            let ns = t.elapsed().as_nanos() as f64;
            pool.give(s);
            ns
        })
        .collect();
    println!("new pool + first take (mmap): {:7.1} ns", median(runs));
}
