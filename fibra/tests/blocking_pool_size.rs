//! The blocking pool's size follows its load: threads beyond what a steady load keeps busy
//! retire after their keep-alive, even while that load goes on (found by `scripts/soak.sh`:
//! three fibers making one excursion at a time each kept 25 pool threads alive).

use std::time::{Duration, Instant};

fn pool_threads() -> usize {
    fibra::debug::metrics()
        .expect("inside a fiber")
        .blocking_threads
}

#[test]
fn surplus_threads_retire_under_a_steady_load() {
    const BURST: usize = 16;
    let keep_alive = Duration::from_millis(200);
    let rt = fibra::Runtime::builder()
        .workers(2)
        .blocking_keep_alive(keep_alive)
        .build()
        .unwrap();
    let (peak, end) = rt.run(|| {
        // A burst: BURST jobs at once start BURST threads.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(BURST));
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let b = barrier.clone();
                fibra::spawn_blocking(move || {
                    b.wait();
                })
            })
            .collect();
        burst.into_iter().for_each(|h| h.join().unwrap());
        let peak = pool_threads();
        // Then a steady load of one job at a time, for several keep-alives: one thread (two,
        // if a job's waiter resubmits before its thread is idle again) is enough.
        let until = Instant::now() + keep_alive * 5;
        while Instant::now() < until {
            fibra::run_blocking(|| std::thread::sleep(Duration::from_micros(100)));
        }
        (peak, pool_threads())
    });
    assert_eq!(peak, BURST);
    assert!(
        end <= 4,
        "{end} pool threads still alive under a load of one job at a time"
    );
}
