//! loom models of `RawRwLock`: wakes, barges, grants, timeouts, abandons and downgrades against
//! unlocks.

#![allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose

use super::*;
use crate::loom::cell::UnsafeCell;
use crate::sync::waiter::{TIMED_OUT, WAITING};
use loom::sync::atomic::AtomicUsize as Count;
use loom::thread;

/// The real contended path with the park replaced by a spin on the selection word (loom
/// cannot park a fiber); `give_up` makes the wait time out first, as its timer would.
fn lock(l: &RawRwLock, kind: Kind, give_up: bool) -> bool {
    let fast = match kind {
        Kind::Read => l.try_read(),
        Kind::Write => l.try_write_fast(),
    };
    fast || l.lock_contended(kind, None, Waiter::spinning, |w| {
        if give_up && w.try_select(TIMED_OUT) {
            return TIMED_OUT;
        }
        while w.selected() == WAITING {
            thread::yield_now();
        }
        w.selected()
    })
}

fn raw() -> RawRwLock {
    RawRwLock::new()
}

/// A writer and a reader race the main thread's write unlock (queue, grant, wake): the
/// writer's section is exclusive and the reader sees a whole write (loom's cell checks
/// both), and the state word ends clean.
#[test]
fn writer_and_reader_exclusive() {
    loom::model(|| {
        let l = Arc::new((raw(), UnsafeCell::new(0u32)));
        assert!(lock(&l.0, Kind::Write, false));
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Write, false));
                // SAFETY: we hold the write lock.
                l.1.with_mut(|p| unsafe { *p += 1 });
                l.0.unlock(Kind::Write);
            })
        };
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Read, false));
                // SAFETY: we hold a read lock: no writer holds it.
                let seen = l.1.with(|p| unsafe { *p });
                l.0.unlock(Kind::Read);
                seen
            })
        };
        l.0.unlock(Kind::Write);
        writer.join().unwrap();
        assert!(reader.join().unwrap() <= 1);
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// Two readers hold together; a writer queued behind them is woken (or handed the lock) by
/// the last one out, and the state word ends clean.
#[test]
fn last_reader_out_wakes_the_writer() {
    loom::model(|| {
        let l = Arc::new(raw());
        assert!(lock(&l, Kind::Read, false));
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l, Kind::Read, false) || lock(&l, Kind::Read, false));
                l.unlock(Kind::Read);
            })
        };
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l, Kind::Write, false));
                l.unlock(Kind::Write);
            })
        };
        l.unlock(Kind::Read);
        reader.join().unwrap();
        writer.join().unwrap();
        assert_eq!(l.state.load(Relaxed), 0, "state left dirty");
    });
}

/// The writer downgrades while a reader queues (or barges in on the fast path): the
/// reader gets in while the downgraded hold is still held, so it is admitted by the
/// downgrade itself, never by an unlock; it sees the write, and the state ends clean.
#[test]
fn downgrade_admits_a_waiting_reader() {
    loom::model(|| {
        let l = Arc::new((raw(), UnsafeCell::new(0u32), Count::new(0)));
        assert!(lock(&l.0, Kind::Write, false));
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Read, false));
                // SAFETY: we hold a read lock: no writer holds it.
                let seen = l.1.with(|p| unsafe { *p });
                l.2.store(1, SeqCst);
                l.0.unlock(Kind::Read);
                seen
            })
        };
        // SAFETY: we hold the write lock.
        l.1.with_mut(|p| unsafe { *p = 7 });
        l.0.downgrade();
        while l.2.load(SeqCst) == 0 {
            thread::yield_now(); // the reader must get in while we still read
        }
        l.0.unlock(Kind::Read);
        assert_eq!(reader.join().unwrap(), 7);
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// A writer queued while the lock is held for writing still waits after a downgrade (it
/// is exclusive with the downgraded reader: loom's cell checks it) and gets the lock when
/// that reader leaves.
#[test]
fn downgrade_keeps_a_waiting_writer_out() {
    loom::model(|| {
        let l = Arc::new((raw(), UnsafeCell::new(0u32)));
        assert!(lock(&l.0, Kind::Write, false));
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Write, false));
                // SAFETY: we hold the write lock.
                l.1.with_mut(|p| unsafe { *p += 1 });
                l.0.unlock(Kind::Write);
            })
        };
        l.0.downgrade();
        // SAFETY: we hold a read lock: no writer holds it.
        let seen = l.1.with(|p| unsafe { *p });
        assert_eq!(seen, 0);
        l.0.unlock(Kind::Read);
        writer.join().unwrap();
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// A waiting writer times out while the unlock grants it: either it got the lock (and
/// releases it) or it left and the lock is free and clean, never held by nobody.
#[test]
fn timeout_races_grant() {
    loom::model(|| {
        let l = Arc::new(raw());
        assert!(lock(&l, Kind::Read, false));
        let t = {
            let l = l.clone();
            thread::spawn(move || {
                if lock(&l, Kind::Write, true) {
                    l.unlock(Kind::Write);
                }
            })
        };
        l.unlock(Kind::Read);
        t.join().unwrap();
        assert_eq!(l.state.load(Relaxed), 0, "lock lost or state left dirty");
        assert!(l.try_write());
    });
}

/// The main thread's write unlock wakes the queued writer T and the main thread barges
/// straight back in: whoever wins, every critical section is exclusive (loom's cell checks
/// it), the count is exact, and the state word ends clean.
#[test]
fn barge_races_the_woken_writer() {
    loom::model(|| {
        let l = Arc::new((raw(), UnsafeCell::new(0u32)));
        assert!(l.0.try_write());
        let t = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Write, false));
                // SAFETY: we hold the write lock.
                l.1.with_mut(|p| unsafe { *p += 1 });
                l.0.write_unlock();
            })
        };
        l.0.write_unlock();
        let barged = l.0.try_write();
        if barged {
            // SAFETY: we hold the write lock.
            l.1.with_mut(|p| unsafe { *p += 1 });
            l.0.write_unlock();
        }
        t.join().unwrap();
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
        assert!(l.0.try_write());
        // SAFETY: we hold the write lock and T is joined.
        assert_eq!(l.1.with(|p| unsafe { *p }), 1 + u32::from(barged));
    });
}

/// The main thread keeps re-locking while T waits: after MAX_BARGES barges the lock is
/// handed to T, so the main thread acquires at most MAX_BARGES times ahead of it.
#[test]
fn hand_off_after_max_barges() {
    loom::model(|| {
        let l = Arc::new((raw(), Count::new(0)));
        assert!(l.0.try_write());
        let t = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, Kind::Write, false));
                let overtaken = l.1.load(Relaxed);
                l.0.write_unlock();
                overtaken
            })
        };
        while l.0.state.load(Relaxed) & QUEUED == 0 {
            thread::yield_now();
        }
        for _ in 0..=MAX_BARGES {
            l.0.write_unlock();
            assert!(lock(&l.0, Kind::Write, false));
            l.1.fetch_add(1, Relaxed); // under the lock: T reads it under the lock
        }
        l.0.write_unlock();
        let overtaken = t.join().unwrap();
        assert!(
            overtaken <= usize::from(MAX_BARGES),
            "overtaken {overtaken} times"
        );
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// A queued writer T is unwound (abandon) while the main thread's unlock wakes it, with a
/// reader C queued behind: T withdraws, or gives the free lock back, and either way the lock
/// passes on to C and the state ends clean.
#[test]
fn abandon_during_the_race_passes_the_lock_on() {
    loom::model(|| {
        let l = Arc::new(raw());
        assert!(l.try_write());
        let w = Waiter::spinning();
        assert!(l.enqueue(&w, Kind::Write, true).is_some());
        let c = Waiter::spinning();
        assert!(l.enqueue(&c, Kind::Read, true).is_some());
        let t = {
            let l = l.clone();
            thread::spawn(move || l.abandon(&w, Kind::Write))
        };
        l.write_unlock();
        while c.selected() == WAITING {
            thread::yield_now();
        }
        assert_eq!(c.selected(), GRANTED);
        l.read_unlock();
        t.join().unwrap();
        assert_eq!(l.state.load(Relaxed), 0, "lock lost or state left dirty");
    });
}
