//! Spare workers converge back: while a worker is stuck and the other is busy, the monitor
//! adds a spare thread; after the stall the runtime returns to its configured thread count.
//!
//! One `#[test]` in a binary of its own: it counts the process's threads.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fibra::Runtime;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn spare_workers_converge_back_after_a_stall() {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: still running after 60 s; aborting"
            );
            std::process::abort();
        }
    });
    let rt = Runtime::builder()
        .workers(2)
        .on_stall(|_| {}) // quiet
        .build()
        .unwrap();
    let (baseline, peak, after) = rt.block_on(|| {
        fibra::sleep(Duration::from_millis(50));
        let baseline = threads(); // the workers, the monitor, this test's threads
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(baseline));
        // Keep both workers busy (yielding loops), so nobody is idle when one gets stuck: spawn
        // until busy fibers run on two different threads.
        let homes = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let mut busy = Vec::new();
        while homes.lock().unwrap().len() < 2 {
            for _ in 0..4 {
                let (stop, homes) = (stop.clone(), homes.clone());
                busy.push(fibra::spawn(move || {
                    homes.lock().unwrap().insert(thread::current().id());
                    while !stop.load(Relaxed) {
                        fibra::yield_now();
                    }
                }));
            }
            fibra::sleep(Duration::from_millis(5));
        }
        // The thread count is sampled from a plain thread, so the blocker can stay inside one
        // uninterrupted syscall (the monitor starts spares only for threads seen asleep in
        // the kernel on every sample).
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            thread::spawn(move || {
                while sampling.load(Relaxed) {
                    peak.fetch_max(threads() - 1, Relaxed); // minus the sampler itself
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let blocker = fibra::spawn(move || {
            // Movable work queued behind the blocker: the monitor hands it off.
            let late: Vec<_> = (0..50)
                .map(|_| fibra::spawn(|| fibra::sleep(Duration::from_millis(1))))
                .collect();
            thread::sleep(Duration::from_millis(500)); // blocks this worker
            late
        });
        let late = blocker.join().unwrap();
        sampling.store(false, Relaxed);
        sampler.join().unwrap();
        late.into_iter().for_each(|h| h.join().unwrap());
        stop.store(true, Relaxed);
        busy.into_iter().for_each(|h| h.join().unwrap());
        // Idle now: the spares retire after ~100 ms idle.
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads() > baseline && Instant::now() < deadline {
            fibra::sleep(Duration::from_millis(20));
        }
        (baseline, peak.load(Relaxed), threads())
    });
    let _ = tx.send(());
    assert!(
        peak > baseline,
        "no spare worker was started ({peak} threads at most, {baseline} before)"
    );
    assert_eq!(
        after, baseline,
        "spare workers did not retire ({peak} at the peak)"
    );
}
