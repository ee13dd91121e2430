//! Spare workers converge back: while a worker is stuck and the other is busy, the monitor
//! adds a spare thread; after the stall the runtime returns to its configured thread count.
//!
//! One `#[test]` in a binary of its own: it counts the process's threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fibra::Runtime;

mod common;
use common::watchdog;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn spare_workers_converge_back_after_a_stall() {
    let _watchdog = watchdog("spare_workers_converge_back_after_a_stall"); // its thread counts in the baseline
    let rt = Runtime::builder()
        .workers(2)
        .on_stall(|_| {}) // quiet
        // The blocker sleeps on purpose; in debug builds the watch of such calls would start
        // its reporter thread, which this test would count.
        .warn_blocking_calls(false)
        .build()
        .unwrap();
    let (baseline, peak, after) = rt.run(|| {
        fibra::sleep(Duration::from_millis(50));
        let baseline = threads(); // the workers, the monitor, this test's threads
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(baseline));
        // A spare is added only while movable work waits in the global queue and no worker
        // is free to take it. So: the other worker spins in a CPU loop (it never picks up
        // queued work), and the blocker leaves work queued behind it. `started` makes sure the
        // two run on different workers: each spins, without yielding, until both started.
        let started = Arc::new(AtomicUsize::new(0));
        let busy = {
            let (stop, started) = (stop.clone(), started.clone());
            vec![fibra::spawn(move || {
                started.fetch_add(1, SeqCst);
                while !stop.load(Relaxed) {
                    std::hint::spin_loop(); // a CPU loop: this worker takes no other work
                }
            })]
        };
        // The thread count is sampled from a plain thread, so the blocker can stay inside one
        // uninterrupted syscall (the monitor starts spares only for threads seen asleep in
        // the kernel on every sample).
        let sampling = Arc::new(AtomicBool::new(true));
        // Set by the sampler once a spare shows up: the blocker stays blocked (in a futex wait,
        // like any blocking syscall) until then, at most 5 s, so a loaded machine that delays
        // the monitor cannot make the stall end before the spare appears.
        let spare_seen = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let sampler = {
            let (peak, sampling, seen) = (peak.clone(), sampling.clone(), spare_seen.clone());
            thread::spawn(move || {
                while sampling.load(Relaxed) {
                    let now = threads() - 1; // minus the sampler itself
                    peak.fetch_max(now, Relaxed);
                    if now > baseline {
                        *seen.0.lock().unwrap() = true;
                        seen.1.notify_all();
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let stop_spinner = stop.clone();
        let blocker = fibra::spawn(move || {
            started.fetch_add(1, SeqCst);
            while started.load(SeqCst) < 2 {
                std::hint::spin_loop(); // the spinner must start on the other worker
            }
            // Movable work queued behind the blocker: the monitor hands it off.
            let late: Vec<_> = (0..50)
                .map(|_| fibra::spawn(|| fibra::sleep(Duration::from_millis(1))))
                .collect();
            let (lock, cvar) = &*spare_seen;
            let guard = lock.lock().unwrap();
            // Blocks this worker's thread (a std condvar, not a fibra one).
            let _ = cvar.wait_timeout_while(guard, Duration::from_secs(5), |seen| !*seen);
            thread::sleep(Duration::from_millis(100)); // the stall goes on a little longer
                                                       // The spinner stops here, not in the root fiber: the root may share its worker.
            stop_spinner.store(true, Relaxed);
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
    assert!(
        peak > baseline,
        "no spare worker was started ({peak} threads at most, {baseline} before)"
    );
    assert_eq!(
        after, baseline,
        "spare workers did not retire ({peak} at the peak)"
    );
}
