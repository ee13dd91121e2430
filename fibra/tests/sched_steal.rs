//! Idle workers steal fibers queued behind a busy one (`sched/steal.rs`): a fiber spawned by
//! one that then never yields must run elsewhere. The monitor is off, so nothing but a steal
//! can move it; a watchdog turns a missed steal into an abort with a message.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

mod common;
use common::{two_workers_without_monitor, watchdog};

#[test]
fn a_fiber_queued_behind_a_spinning_one_is_stolen() {
    let _w = watchdog("a_fiber_queued_behind_a_spinning_one_is_stolen");
    let rt = two_workers_without_monitor();
    let steals = rt.run(|| {
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

/// Many short fibers queued at once spread over both workers. Which rule moves them depends on
/// timing (the spawner's run may last past `STUCK_AFTER`, and 250 queued runs of ~10 µs are
/// far past `MAX_BACKLOG`); the unit tests in `sched/steal.rs` check each rule on its own.
/// 250 stay in the 256-slot ring, so none reaches the global queue, which idle workers take
/// from freely. A batch is 2.5 ms of work; on a machine so loaded that the idle worker's
/// thread gets no core for that long, the batch is repeated (up to 5 times).
#[test]
fn a_long_queue_of_short_fibers_is_shared() {
    let _w = watchdog("a_long_queue_of_short_fibers_is_shared");
    let rt = two_workers_without_monitor();
    let shared = (0..5).any(|_| rt.run(batch_of_short_fibers) == 2);
    assert!(
        shared,
        "5 batches of 250 queued fibers of 10 µs each ran on one worker only"
    );
}

/// Runs 250 fibers of ~10 µs each (2.5 ms of queue, far past `MAX_BACKLOG`); returns on how
/// many threads they ran.
fn batch_of_short_fibers() -> usize {
    let handles: Vec<_> = (0..250)
        .map(|_| {
            fibra::spawn(|| {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_micros(10) {
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
}

/// Long-lived fibers spawned one at a time, each started before the next is spawned (a
/// server's accept loop): no idle worker ever sees them queued, yet they even out over the
/// workers, because a spawning worker that is home to `SPREAD_AT` (16) more started fibers than
/// another sends new ones there (`sched/placement.rs`).
#[test]
fn long_lived_fibers_started_one_by_one_even_out() {
    let _w = watchdog("long_lived_fibers_started_one_by_one_even_out");
    const N: usize = 64;
    let per_thread = two_workers_without_monitor().run(|| {
        let (started_tx, started_rx) = fibra::chan::unbounded();
        let (stop_tx, stop_rx) = fibra::chan::bounded::<()>(0);
        let fibers: Vec<_> = (0..N)
            .map(|_| {
                let (started_tx, stop_rx) = (started_tx.clone(), stop_rx.clone());
                let fiber = fibra::spawn(move || {
                    started_tx.send(std::thread::current().id()).unwrap();
                    let _ = stop_rx.recv(); // lives until the end
                });
                (started_rx.recv().unwrap(), fiber)
            })
            .collect();
        drop(stop_tx); // every receiver sees the disconnection
        let mut counts = std::collections::HashMap::new();
        for (thread, fiber) in fibers {
            fiber.join().unwrap();
            *counts.entry(thread).or_insert(0usize) += 1;
        }
        counts.into_values().collect::<Vec<_>>()
    });
    assert_eq!(per_thread.len(), 2, "all {N} fibers started on one worker");
    let (lo, hi) = (
        per_thread.iter().min().unwrap(),
        per_thread.iter().max().unwrap(),
    );
    assert!(
        hi - lo <= 16 + 1,
        "{per_thread:?}: more than the margin apart"
    );
}
