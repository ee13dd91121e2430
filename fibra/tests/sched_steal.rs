//! Idle workers steal fibers queued behind a busy one (`sched/steal.rs`): a fiber spawned by
//! one that then never yields must run elsewhere. The monitor is off, so nothing but a steal
//! can move it; a watchdog turns a missed steal into an abort with a message.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

mod common;
use common::watchdog;

/// Two workers and nothing else that could move a fiber: no monitor, no spare workers.
fn two_workers_without_monitor() -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(2)
        .max_spare_workers(0)
        .monitor(false)
        .build()
        .unwrap()
}

#[test]
fn a_fiber_queued_behind_a_spinning_one_is_stolen() {
    let _w = watchdog("a_fiber_queued_behind_a_spinning_one_is_stolen");
    let rt = two_workers_without_monitor();
    let steals = rt.block_on(|| {
        let spinner = fibra::spawn(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let f = flag.clone();
            // Queued on this worker's ring, which the loop below never lets it leave.
            let setter = fibra::spawn(move || f.store(true, Release));
            while !flag.load(Acquire) {
                std::hint::spin_loop();
            }
            setter
        });
        spinner.join().unwrap().join().unwrap();
        let m = fibra::debug::metrics().unwrap();
        m.workers.iter().map(|w| w.steals).sum::<u64>()
    });
    assert!(steals >= 1, "the setter ran, so some worker stole it");
}

/// Many short fibers queued at once spread over both workers: the backlog rule, not the stuck
/// one (each run ends within 40 µs). 250 stay in the 256-slot ring, so none reaches the global
/// queue, which idle workers take from freely.
#[test]
fn a_long_queue_of_short_fibers_is_shared() {
    let _w = watchdog("a_long_queue_of_short_fibers_is_shared");
    let rt = two_workers_without_monitor();
    let threads = rt.block_on(|| {
        let handles: Vec<_> = (0..250)
            .map(|_| {
                fibra::spawn(|| {
                    // ~40 µs of work each: 10 ms of queue, far past MAX_BACKLOG.
                    let t = std::time::Instant::now();
                    while t.elapsed() < std::time::Duration::from_micros(40) {
                        std::hint::spin_loop();
                    }
                    std::thread::current().id()
                })
            })
            .collect();
        let mut ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        ids.len()
    });
    assert_eq!(
        threads, 2,
        "250 queued fibers of 40 µs ran on one worker only"
    );
}
