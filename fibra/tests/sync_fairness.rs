//! Mutex fairness: barging is bounded, so no fiber is overtaken by more than K + N
//! acquisitions (K = 128 barges before hand-off, N contenders).
//! Alone in its binary: a worker thread preempted by a parallel test's threads would stall
//! its fiber between reading the acquisition count and queuing, and skew the measure. The OS
//! can still preempt a worker (other processes), so a sample whose worker thread was
//! involuntarily switched out during the `lock` call is dropped (and counted).

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;

use fibra::sync::Mutex;

/// Involuntary context switches of the calling OS thread so far (the OS preempted it).
fn preemptions() -> libc::c_long {
    // SAFETY: `getrusage` only writes the `rusage` we pass, which is valid for writes and may
    // start zeroed (all-zero is a valid `rusage`).
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage.ru_nivcsw
    }
}

/// Runs `party` on `fibers` fibers, each recording how many acquisitions by others happened
/// between the start of each of its `lock` calls and its acquisition; returns the maximum and
/// how many samples were dropped because the OS preempted the worker meanwhile.
fn max_overtaken(fibers: usize, iters: usize, threads: usize) -> (usize, usize) {
    let m = Arc::new(Mutex::new(()));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let party = {
        let (m, acq, worst) = (m.clone(), acquisitions.clone(), worst.clone());
        let dropped = dropped.clone();
        move |i: usize, is_fiber: bool| {
            for k in 0..iters {
                let preempted = preemptions();
                let before = acq.load(SeqCst);
                let g = m.lock();
                let at = acq.fetch_add(1, SeqCst);
                // Fibers do not migrate, so this is still the thread measured above.
                if preemptions() == preempted {
                    worst.fetch_max(at - before, SeqCst);
                } else {
                    dropped.fetch_add(1, Relaxed);
                }
                if is_fiber && (k + i) % 3 == 0 {
                    fibra::yield_now(); // park-free hold: the others queue up meanwhile
                }
                drop(g);
            }
        }
    };
    let p = party.clone();
    let ts: Vec<_> = (0..threads)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || p(t, false))
        })
        .collect();
    fibra::run(move || {
        let fs: Vec<_> = (0..fibers)
            .map(|f| {
                let p = party.clone();
                fibra::spawn(move || p(f, true))
            })
            .collect();
        fs.into_iter().for_each(|f| f.join().unwrap());
    });
    ts.into_iter().for_each(|t| t.join().unwrap());
    (worst.load(SeqCst), dropped.load(Relaxed))
}

/// `MAX_BARGES` in `fibra/src/sync/mutex/raw.rs`: barges a queued waiter tolerates before the
/// lock is handed to it.
const K: usize = 128;

/// Bounded barging: a queued fiber is overtaken by at most K barges plus the N - 1 waiters
/// queued ahead of it; the one left over covers the acquisition it watched while spinning.
#[test]
fn mutex_barging_bounds_overtaking() {
    const N: usize = 8;
    let (worst, dropped) = max_overtaken(N, 3_000, 0);
    println!(
        "fibers only: worst overtaken {worst} (bound K + N = {}), {dropped} preempted samples \
         dropped",
        K + N
    );
    // The protocol bounds it by K + N - 1 (reached exactly here: 135); the measurement (from
    // just before `lock` to just after) also catches the odd acquisition that happens while
    // the worker thread itself is descheduled on a loaded CI machine (2 over the bound seen
    // once with K = 8), hence N of slack. Unbounded barging overtakes thousands of times here.
    assert!(
        worst <= K + 2 * N,
        "a fiber was overtaken {worst} times (K = {K}, N = {N})"
    );
    // With plain threads the OS scheduler joins in (4 threads on 2 cores here): a thread
    // preempted before it queues is overtaken by whatever runs meanwhile, so this figure is
    // reported, not asserted.
    let (worst, _) = max_overtaken(N - 2, 1_000, 2);
    println!("fibers + threads: worst overtaken {worst}");
}
