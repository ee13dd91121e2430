//! `sleep` and `sleep_until`: never early, and they park only the fiber.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::Runtime;

mod common;
use common::watchdog;

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sleep_lasts_at_least_its_duration() {
    let _w = watchdog("sleep_lasts_at_least_its_duration");
    fibra::run(|| {
        for ms in [1, 5, 20] {
            let start = Instant::now();
            fibra::sleep(Duration::from_millis(ms));
            assert!(
                start.elapsed() >= Duration::from_millis(ms),
                "sleep({ms} ms) returned early"
            );
        }
        let deadline = Instant::now() + Duration::from_millis(5);
        fibra::sleep_until(deadline);
        assert!(Instant::now() >= deadline);
        fibra::sleep(Duration::ZERO);
    });
}

/// A deadline already past returns without waiting for anything.
#[test]
fn sleep_until_a_past_instant_returns_promptly() {
    let _w = watchdog("sleep_until_a_past_instant_returns_promptly");
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        let start = Instant::now();
        for _ in 0..1000 {
            fibra::sleep_until(past);
        }
        // Generous: a thousand timer round trips through a sleeping worker would not fit.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    });
}

#[test]
fn sleep_outside_a_runtime_sleeps_the_thread() {
    let start = Instant::now();
    fibra::sleep(Duration::from_millis(5));
    assert!(start.elapsed() >= Duration::from_millis(5));
    let deadline = Instant::now() + Duration::from_millis(3);
    fibra::sleep_until(deadline);
    assert!(Instant::now() >= deadline);
    fibra::sleep_until(Instant::now() - Duration::from_millis(1)); // past: returns
}

/// 1000 fibers sleep random 0–20 ms (deadlines out of order, some equal); none wakes early.
#[test]
fn many_random_sleepers_wake_after_their_deadlines() {
    let _w = watchdog("many_random_sleepers_wake_after_their_deadlines");
    let early = fibra::run(|| {
        let mut rng = Rng(0x5eed_0001);
        let hs: Vec<_> = (0..1000)
            .map(|i| {
                let micros = rng.next() % 20_001;
                fibra::spawn(move || {
                    let dur = Duration::from_micros(micros);
                    let deadline = Instant::now() + dur;
                    if i % 2 == 0 {
                        fibra::sleep(dur);
                    } else {
                        fibra::sleep_until(deadline);
                    }
                    Instant::now() < deadline
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum::<usize>()
    });
    assert_eq!(early, 0, "{early} fibers woke before their deadline");
}

/// Timers fire while the worker is busy with a fiber that only yields (one worker).
#[test]
fn timers_fire_while_the_worker_is_busy() {
    let _w = watchdog("timers_fire_while_the_worker_is_busy");
    let rt = Runtime::builder().workers(1).build().unwrap();
    let spins = rt.run(|| {
        let woke = Arc::new(AtomicBool::new(false));
        let w = woke.clone();
        let sleeper = fibra::spawn(move || {
            fibra::sleep(Duration::from_millis(5));
            w.store(true, Release);
        });
        let spinner = fibra::spawn(move || {
            let mut spins = 0u64;
            while !woke.load(Acquire) {
                fibra::yield_now();
                spins += 1;
            }
            spins
        });
        sleeper.join().unwrap();
        spinner.join().unwrap()
    });
    assert!(spins > 0);
}

/// Sleepers on every worker, with and without other work around: exact count of wake-ups.
#[test]
fn sleeping_fibers_all_wake_on_a_multi_worker_runtime() {
    let _w = watchdog("sleeping_fibers_all_wake_on_a_multi_worker_runtime");
    let rt = Runtime::builder().workers(3).build().unwrap();
    let woke = AtomicUsize::new(0);
    rt.run(|| {
        fibra::scope(|s| {
            for i in 0..300u64 {
                let woke = &woke;
                s.spawn(move || {
                    for k in 0..3 {
                        fibra::sleep(Duration::from_micros((i * 7 + k * 13) % 2000));
                    }
                    woke.fetch_add(1, Relaxed);
                });
            }
        });
    });
    assert_eq!(woke.into_inner(), 300);
}
