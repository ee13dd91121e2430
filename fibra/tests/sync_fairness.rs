//! Mutex and RwLock fairness: barging is bounded, so no fiber is overtaken by more than K + N
//! acquisitions (K = 128 barges before hand-off, N contenders).
//! Alone in its binary, and its tests one at a time (`SERIAL`): a worker thread preempted by a
//! parallel test's threads would stall its fiber between reading the acquisition count and
//! queuing, and skew the measure. The OS
//! can still preempt a worker (other processes), so a sample whose worker thread was
//! involuntarily switched out during the `lock` call is dropped (and counted).

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;

use fibra::sync::{Mutex, RwLock};

/// Runs this file's tests one at a time (see above).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Runs `body` holding `lock` (`hold(lock, party, body)` acquires, runs it, releases).
type Hold<L> = fn(&L, usize, &mut dyn FnMut());

/// Runs a party on each of `fibers` fibers and `threads` threads, each taking `lock` with
/// `hold` `iters` times and recording how many acquisitions by others happened between the
/// start of each call and its acquisition; returns the maximum and how many samples were
/// dropped because the OS preempted the worker meanwhile.
fn max_overtaken<L: Send + Sync + 'static>(
    lock: L,
    hold: Hold<L>,
    fibers: usize,
    iters: usize,
    threads: usize,
) -> (usize, usize) {
    let m = Arc::new(lock);
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
                hold(&m, i, &mut || {
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
                });
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

const MUTEX: Hold<Mutex<()>> = |m, _, body| {
    let _g = m.lock();
    body();
};

/// `MAX_BARGES` in `fibra/src/sync/mutex/raw.rs`: barges a queued waiter tolerates before the
/// lock is handed to it.
const K: usize = 128;

/// Bounded barging: a queued fiber is overtaken by at most K barges plus the N - 1 waiters
/// queued ahead of it; the one left over covers the acquisition it watched while spinning.
#[test]
fn mutex_barging_bounds_overtaking() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 8;
    let (worst, dropped) = max_overtaken(Mutex::new(()), MUTEX, N, 3_000, 0);
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
    let (worst, _) = max_overtaken(Mutex::new(()), MUTEX, N - 2, 1_000, 2);
    println!("fibers + threads: worst overtaken {worst}");
}

/// The same bound for `RwLock` writers (`MAX_BARGES` in `fibra/src/sync/rwlock/raw.rs` is K
/// too): 8 writer fibers, then 6 writers with 2 readers among them. Readers never barge, and
/// a run of them at the front is admitted at once, so the writers' bound is unchanged; the
/// readers obey it too (barges only happen while an older writer races, so at most K while a
/// reader waits), and a reader admitted in a run with others counts them as acquisitions (at
/// most N).
#[test]
fn rwlock_writer_barging_bounds_overtaking() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 8;
    let write: Hold<RwLock<()>> = |l, _, body| {
        let _g = l.write();
        body();
    };
    let (worst, dropped) = max_overtaken(RwLock::new(()), write, N, 3_000, 0);
    println!(
        "writers: worst overtaken {worst} (bound K + N = {}), {dropped} dropped",
        K + N
    );
    assert!(
        worst <= K + 2 * N,
        "a writer was overtaken {worst} times (K = {K}, N = {N})"
    );
    let mixed: Hold<RwLock<()>> = |l, party, body| {
        if party < 2 {
            let _g = l.read();
            body();
        } else {
            let _g = l.write();
            body();
        }
    };
    let (worst, dropped) = max_overtaken(RwLock::new(()), mixed, N, 3_000, 0);
    println!("2 readers + 6 writers: worst overtaken {worst}, {dropped} dropped");
    assert!(
        worst <= K + 2 * N,
        "a fiber was overtaken {worst} times (K = {K}, N = {N})"
    );
}
