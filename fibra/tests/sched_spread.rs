//! `Builder::spread` (`sched/placement.rs`): a burst of long-lived fibers is shared out
//! between the workers. Alone in its binary: parallel tests on a 2-core machine take cores
//! from its workers (a spread fiber is no longer stolen from a worker that loses its core,
//! but the test should not depend on that alone).

mod common;
use common::{two_workers_without_monitor, watchdog};

/// `Builder::spread`: a burst of long-lived fibers spawned before any has started (an accept
/// loop taking a burst of connections) is shared out between the workers. Without the hint
/// the whole burst starts on the spawner's worker: none has run yet to count against it, and
/// it is never slow to start them.
#[test]
fn a_burst_spawned_with_spread_is_shared_out() {
    let _w = watchdog("a_burst_spawned_with_spread_is_shared_out");
    const N: usize = 20;
    let per_thread = spread_burst_per_worker(N);
    assert_eq!(per_thread.len(), 2, "all {N} fibers started on one worker");
    // The hint levels the loads (about 10 each, the root fiber counting on its worker); a
    // worker that loses its core meanwhile has some of its share stolen, hence the slack.
    let lo = *per_thread.iter().min().unwrap();
    assert!(lo >= N / 4, "{per_thread:?}: not shared out");
}

/// A burst of 1,024 (the lab's `fs` readers) is split evenly, whichever worker gets a core
/// first: the spawner's share stays on its pinned queue, where an idle worker cannot steal it,
/// and a worker that has not started what it was sent yet is not judged stuck while the
/// spawner, in the same run, has not started its own. Before, one worker woken late was sent
/// 64 and the other started the other 960.
#[test]
fn a_large_burst_is_split_evenly() {
    let _w = watchdog("a_large_burst_is_split_evenly");
    const N: usize = 1_024;
    let per_thread = spread_burst_per_worker(N);
    // 512 each (the root fiber counts on its worker, so 511/513 is as even): a worker's loss
    // of its core during the burst no longer moves fibers.
    let lo = per_thread.iter().copied().min().unwrap_or(0);
    assert!(per_thread.len() == 2 && lo >= N / 2 - 2, "{per_thread:?}");
}

/// Spawns `n` long-lived fibers with `Builder::spread` before any has started (an accept loop
/// taking a burst), on two workers; returns how many started on each worker.
fn spread_burst_per_worker(n: usize) -> Vec<usize> {
    two_workers_without_monitor().run(move || {
        let (stop_tx, stop_rx) = fibra::chan::bounded::<()>(0);
        let fibers: Vec<_> = (0..n)
            .map(|_| {
                let stop_rx = stop_rx.clone();
                let handler = move || {
                    let thread = std::thread::current().name().map(str::to_owned);
                    let _ = stop_rx.recv(); // lives until the end
                    thread
                };
                fibra::Builder::new().spread().spawn(handler).unwrap()
            })
            .collect();
        drop(stop_tx); // every receiver sees the disconnection
        let mut counts = std::collections::HashMap::new();
        for fiber in fibers {
            *counts.entry(fiber.join().unwrap()).or_insert(0usize) += 1;
        }
        counts.into_values().collect()
    })
}
