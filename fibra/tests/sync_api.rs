//! `fibra::sync` behaviour: fairness, wait reasons, shutdown, threads without a runtime.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::sync::{Barrier, Condvar, Mutex, Notify, OnceCell, RwLock, Semaphore, WaitGroup};
use fibra::ParkReason;

mod common;

/// Spawns `block` in a fiber and waits until it parks with `reason`; returns its handle.
fn parks_with(block: impl FnOnce() + Send + 'static, reason: ParkReason) -> fibra::JoinHandle<()> {
    let h = fibra::spawn(block);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.fiber().park_reason() != reason {
        assert!(Instant::now() < deadline, "never parked with {reason:?}");
        fibra::sleep(Duration::from_millis(1));
    }
    h
}

#[test]
fn every_wait_shows_its_own_park_reason() {
    fibra::run(|| {
        let m = Arc::new(Mutex::new(()));
        let g = m.lock();
        let m2 = m.clone();
        let h = parks_with(move || drop(m2.lock()), ParkReason::MutexLock);
        drop(g);
        h.join().unwrap();

        let rw = Arc::new(RwLock::new(()));
        let w = rw.write();
        let r2 = rw.clone();
        let h1 = parks_with(move || drop(r2.read()), ParkReason::RwLockRead);
        let r3 = rw.clone();
        let h2 = parks_with(move || drop(r3.write()), ParkReason::RwLockWrite);
        drop(w);
        h1.join().unwrap();
        h2.join().unwrap();

        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        let h = parks_with(
            move || drop(p2.1.wait_while(p2.0.lock(), |go| !*go)),
            ParkReason::Condvar,
        );
        *pair.0.lock() = true;
        pair.1.notify_all();
        h.join().unwrap();

        let sem = Arc::new(Semaphore::new(0));
        let s2 = sem.clone();
        let h = parks_with(move || drop(s2.acquire()), ParkReason::Semaphore);
        sem.release(1);
        h.join().unwrap();

        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let h = parks_with(
            move || {
                b2.wait();
            },
            ParkReason::Barrier,
        );
        b.wait();
        h.join().unwrap();

        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        let wg2 = wg.clone();
        let h = parks_with(move || wg2.wait(), ParkReason::WaitGroup);
        wg.done();
        h.join().unwrap();

        let cell = Arc::new(OnceCell::new());
        let c2 = cell.clone();
        let h = parks_with(
            move || {
                c2.wait();
            },
            ParkReason::OnceInit,
        );
        cell.set(1).unwrap();
        h.join().unwrap();

        let n = Arc::new(Notify::new());
        let n2 = n.clone();
        let h = parks_with(move || n2.notified(), ParkReason::Notify);
        n.notify_one();
        h.join().unwrap();
    });
}

/// Shutdown unwinds a fiber parked while holding a lock and one queued behind it: the lock
/// (and a semaphore permit) come back, whatever order the two are unwound in.
#[test]
fn shutdown_unwinds_holders_and_waiters_without_losing_the_lock() {
    for _ in 0..20 {
        let m = Arc::new(Mutex::new(0));
        let sem = Arc::new(Semaphore::new(1));
        let (m2, s2) = (m.clone(), sem.clone());
        fibra::run(move || {
            let (m3, s3) = (m2.clone(), s2.clone());
            let _holder = fibra::spawn(move || {
                let _g = m3.lock();
                let _p = s3.acquire();
                loop {
                    fibra::park(); // parked holding both until shutdown unwinds it
                }
            });
            while !m2.is_locked() || s2.available_permits() != 0 {
                fibra::yield_now();
            }
            let m4 = m2.clone();
            let _w1 = parks_with(move || *m4.lock() += 1, ParkReason::MutexLock);
            let s4 = s2.clone();
            let _w2 = parks_with(move || drop(s4.acquire()), ParkReason::Semaphore);
            // Returning starts shutdown with all three parked.
        });
        assert!(m.try_lock().is_some(), "lock lost at shutdown");
        assert_eq!(sem.available_permits(), 1, "permit lost at shutdown");
    }
}

/// A plain thread waits on a lock held by a fiber parked at shutdown: the unwind releases it.
#[test]
fn a_thread_gets_a_lock_released_by_shutdown() {
    let m = Arc::new(Mutex::new(0));
    let locked = Arc::new(AtomicBool::new(false));
    let (m2, l2) = (m.clone(), locked.clone());
    let thread = std::thread::spawn(move || {
        while !l2.load(Acquire) {
            std::thread::yield_now();
        }
        *m2.lock() += 1;
    });
    let (m3, l3) = (m.clone(), locked.clone());
    fibra::run(move || {
        let l4 = l3.clone();
        let _holder = fibra::spawn(move || {
            let _g = m3.lock();
            l4.store(true, Release);
            loop {
                fibra::park();
            }
        });
        while !l3.load(Acquire) {
            fibra::yield_now();
        }
    });
    thread.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

/// Without any runtime, the primitives block and wake plain threads.
#[test]
fn plain_threads_without_a_runtime() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let sem = Arc::new(Semaphore::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (pair, sem) = (pair.clone(), sem.clone());
            std::thread::spawn(move || {
                let _p = sem.acquire();
                *pair.0.lock() += 1;
                pair.1.notify_all();
            })
        })
        .collect();
    sem.release(4);
    let g = pair.1.wait_while(pair.0.lock(), |n| *n < 4);
    assert_eq!(*g, 4);
    drop(g);
    threads.into_iter().for_each(|t| t.join().unwrap());
}

/// Readers that keep the lock busy do not starve a writer: once it queues, new readers queue
/// behind it.
#[test]
fn rwlock_writer_is_not_starved_by_readers() {
    fibra::run(|| {
        let lock = Arc::new(RwLock::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..6)
            .map(|_| {
                let (lock, stop) = (lock.clone(), stop.clone());
                fibra::spawn(move || {
                    while !stop.load(Relaxed) {
                        let g = lock.read();
                        fibra::yield_now(); // overlapping read holds
                        drop(g);
                    }
                })
            })
            .collect();
        fibra::sleep(Duration::from_millis(5));
        for _ in 0..50 {
            *lock.write() += 1;
        }
        stop.store(true, Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        assert_eq!(*lock.read(), 50);
    });
}

#[test]
fn condvar_notify_one_wakes_in_fifo_order() {
    fibra::run(|| {
        let pair = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let p = pair.clone();
                let h = parks_with(
                    move || {
                        let g = p.1.wait(p.0.lock());
                        let mut g = g;
                        g.push(i);
                    },
                    ParkReason::Condvar,
                );
                h
            })
            .collect();
        for _ in 0..4 {
            pair.1.notify_one();
        }
        hs.into_iter().for_each(|h| h.join().unwrap());
        let order = pair.0.lock().clone();
        assert_eq!(order.len(), 4);
        let (_, res) = pair.1.wait_timeout(pair.0.lock(), Duration::from_millis(2));
        assert!(res.timed_out());
    });
}

#[test]
fn notify_stores_one_permit_and_notify_waiters_none() {
    let n = Notify::new();
    n.notify_waiters(); // nobody waits: nothing stored
    assert!(!n.notified_timeout(Duration::from_millis(1)));
    n.notify_one();
    n.notify_one();
    assert!(n.notified_timeout(Duration::ZERO));
    assert!(!n.notified_timeout(Duration::from_millis(1)));
}

/// Owned permits are taken in one fiber and released in another fiber or a plain thread; the
/// bound holds throughout, a parked `acquire_owned` is woken by such a release, and every
/// permit comes back.
#[test]
fn owned_permits_travel_between_fibers_and_threads() {
    let _w = common::watchdog("owned_permits_travel_between_fibers_and_threads");
    fibra::run(|| {
        let sem = Arc::new(Semaphore::new(2));
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let holders: Vec<_> = (0..16)
            .map(|i| {
                let permit = sem.clone().acquire_owned();
                assert!(inside.fetch_add(1, SeqCst) < 2, "more holders than permits");
                let inside = inside.clone();
                let release = move || {
                    inside.fetch_sub(1, SeqCst);
                    drop(permit);
                };
                if i % 2 == 0 {
                    fibra::spawn(release).join().unwrap();
                    None
                } else {
                    Some(std::thread::spawn(release))
                }
            })
            .collect();
        holders
            .into_iter()
            .flatten()
            .for_each(|t| t.join().unwrap());
        assert_eq!(sem.available_permits(), 2);

        let all = sem
            .clone()
            .acquire_owned_timeout(Duration::from_secs(5))
            .unwrap();
        let last = sem.clone().try_acquire_owned().unwrap();
        let s2 = sem.clone();
        let waiter = parks_with(move || drop(s2.acquire_owned()), ParkReason::Semaphore);
        std::thread::spawn(move || drop(last)).join().unwrap();
        waiter.join().unwrap();
        drop(all);
        assert_eq!(sem.available_permits(), 2);
        assert_eq!(Arc::strong_count(&sem), 1, "a permit kept its Arc");
    });
}
