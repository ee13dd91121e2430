//! loom models of the contended paths (`raw.rs`).
#![allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose

use super::*;
use crate::loom::cell::UnsafeCell;
use crate::sync::waiter::{TIMED_OUT, WAITING};
use loom::sync::atomic::AtomicUsize;
use loom::thread;

/// The real contended path with the park replaced by a spin on the selection word (loom
/// cannot park a fiber); `give_up` makes each wait time out first, as its timer would.
fn lock(m: &RawMutex, give_up: bool) -> bool {
    if m.try_lock_fast() {
        return true;
    }
    let new_waiter = || Waiter::spinning();
    m.lock_contended(None, new_waiter, |w| {
        if give_up && w.try_select(TIMED_OUT) {
            return TIMED_OUT;
        }
        while w.selected() == WAITING {
            thread::yield_now();
        }
        w.selected()
    })
}

fn wait_for(m: &RawMutex, pred: impl Fn(u32, usize) -> bool) {
    while !pred(m.state.load(Relaxed), m.queue.lock().len()) {
        thread::yield_now();
    }
}

/// Two lockers race the main thread's unlock (wake, barge, re-queue, hand-off): every
/// critical section is exclusive (loom's cell checks it), the count is exact, and the
/// state word ends clean (no flag or counter left behind).
#[test]
fn exclusive_access() {
    loom::model(|| {
        let m = Arc::new((RawMutex::new(), UnsafeCell::new(0u32)));
        assert!(m.0.try_lock());
        let lockers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    assert!(lock(&m.0, false));
                    // SAFETY: we hold the lock.
                    m.1.with_mut(|p| unsafe { *p += 1 });
                    m.0.unlock();
                })
            })
            .collect();
        m.0.unlock();
        lockers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(m.0.state.load(Relaxed), 0, "state left dirty");
        assert!(m.0.try_lock());
        // SAFETY: we hold the lock and every other thread is joined.
        assert_eq!(m.1.with(|p| unsafe { *p }), 2);
    });
}

/// A waiter that times out races the unlock that wakes it: either it gets the lock, or it
/// leaves and the lock ends up free and clean, never held by nobody.
#[test]
fn timeout_races_wake() {
    loom::model(|| {
        let m = Arc::new(RawMutex::new());
        assert!(m.try_lock());
        let t = {
            let m = m.clone();
            thread::spawn(move || {
                if lock(&m, true) {
                    m.unlock();
                }
            })
        };
        m.unlock();
        t.join().unwrap();
        assert_eq!(m.state.load(Relaxed), 0, "lock lost or state left dirty");
    });
}

/// T queues, then the main thread queues a hand-driven waiter C behind it, frees the lock
/// (waking T) and barges straight back in. If T loses, it re-queues at the *front*: C is
/// claimed only after T got the lock.
#[test]
fn bypassed_waiter_requeued_at_front() {
    loom::model(|| {
        let m = Arc::new((RawMutex::new(), AtomicUsize::new(0)));
        assert!(m.0.try_lock());
        let t = {
            let m = m.clone();
            thread::spawn(move || {
                assert!(lock(&m.0, false));
                m.1.store(1, Relaxed); // under the lock: C reads it under the lock
                m.0.unlock();
            })
        };
        wait_for(&m.0, |_, len| len == 1);
        let c = Waiter::spinning();
        assert!(m.0.enqueue(&c, true).is_some());
        m.0.unlock();
        if m.0.try_lock() {
            m.0.unlock(); // barged past the woken T
        }
        while c.selected() == WAITING {
            thread::yield_now();
        }
        // C was claimed: it owns the lock (GRANTED) or may race for it (TRY_AGAIN).
        if c.selected() == GRANTED || m.0.give_up_woken() {
            assert_eq!(m.1.load(Relaxed), 1, "C was claimed before T got the lock");
            m.0.unlock();
        }
        t.join().unwrap();
        assert_eq!(m.1.load(Relaxed), 1);
        assert_eq!(m.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// The main thread keeps re-locking while T waits: after MAX_BARGES barges the lock is
/// handed to T, so the main thread acquires at most MAX_BARGES times ahead of it.
#[test]
fn hand_off_after_max_barges() {
    loom::model(|| {
        let m = Arc::new((RawMutex::new(), AtomicUsize::new(0)));
        assert!(m.0.try_lock());
        let t = {
            let m = m.clone();
            thread::spawn(move || {
                assert!(lock(&m.0, false));
                let overtaken = m.1.load(Relaxed);
                m.0.unlock();
                overtaken
            })
        };
        wait_for(&m.0, |s, _| s & QUEUED != 0);
        for _ in 0..=MAX_BARGES {
            m.0.unlock();
            assert!(lock(&m.0, false));
            m.1.fetch_add(1, Relaxed); // under the lock: T reads it under the lock
        }
        m.0.unlock();
        let overtaken = t.join().unwrap();
        assert!(
            overtaken <= usize::from(MAX_BARGES),
            "overtaken {overtaken} times"
        );
        assert_eq!(m.0.state.load(Relaxed), 0, "state left dirty");
    });
}
