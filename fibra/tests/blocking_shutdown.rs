//! A session's end joins every thread it started: workers, the monitor, spare workers and
//! blocking-pool threads (the pool's keep-alive is long, so its threads are still idle then).
//!
//! One `#[test]` in a binary of its own: it counts the process's threads.

use std::thread;
use std::time::Duration;

use fibra::Runtime;

mod common;
use common::watchdog;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn session_end_joins_pool_monitor_and_spare_threads() {
    let _watchdog = watchdog("session_end_joins_pool_monitor_and_spare_threads"); // its thread counts in the baseline
    let before = threads();
    let rt = Runtime::builder()
        .workers(2)
        .on_stall(|_| {})
        .build()
        .unwrap();
    for _ in 0..3 {
        let during = rt.run(|| {
            // Several pool threads at once (each task waits for the others).
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = barrier.clone();
                    fibra::spawn_blocking(move || {
                        b.wait();
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            fibra::run_blocking(|| thread::sleep(Duration::from_millis(5)));
            // A stall with both workers busy, so a spare may start too.
            let busy: Vec<_> = (0..2)
                .map(|_| {
                    fibra::spawn(|| {
                        let t = std::time::Instant::now();
                        while t.elapsed() < Duration::from_millis(100) {
                            fibra::yield_now();
                        }
                    })
                })
                .collect();
            let stuck = fibra::spawn(|| {
                let late: Vec<_> = (0..20).map(|_| fibra::spawn(|| ())).collect();
                thread::sleep(Duration::from_millis(100));
                late
            });
            stuck
                .join()
                .unwrap()
                .into_iter()
                .for_each(|h| h.join().unwrap());
            busy.into_iter().for_each(|h| h.join().unwrap());
            threads()
        });
        // 2 workers + monitor + 4 pool threads at least.
        assert!(
            during >= before + 7,
            "{during} threads during the session, {before} before"
        );
        assert_eq!(threads(), before, "threads left behind after the session");
    }
}
