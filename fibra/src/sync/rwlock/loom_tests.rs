//! loom models of `RawRwLock`: grants, timeouts and downgrades against unlocks.

#![allow(clippy::arc_with_non_send_sync)] // loom's cells are shared by loom threads on purpose

use super::*;
use crate::loom::cell::UnsafeCell;
use crate::sync::waiter::{TIMED_OUT, WAITING};
use loom::sync::atomic::AtomicUsize as Count;
use loom::thread;

/// The real slow path with the park replaced by a spin on the selection word (loom cannot
/// park a fiber); `give_up` makes the wait time out first, as its timer would.
fn lock(l: &RawRwLock, token: usize, give_up: bool) -> bool {
    let fast = if token == READ {
        l.try_read()
    } else {
        l.try_write()
    };
    fast || l.lock_queued(token, Waiter::spinning(), |w| {
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
    RawRwLock {
        state: AtomicUsize::new(0),
        queue: QueueLock::new(WaitList::new()),
    }
}

/// A writer and a reader race the main thread's write unlock (queue, grant, wake): the
/// writer's section is exclusive and the reader sees a whole write (loom's cell checks
/// both), and the state word ends clean.
#[test]
fn writer_and_reader_exclusive() {
    loom::model(|| {
        let l = Arc::new((raw(), UnsafeCell::new(0u32)));
        assert!(lock(&l.0, WRITE, false));
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, WRITE, false));
                // SAFETY: we hold the write lock.
                l.1.with_mut(|p| unsafe { *p += 1 });
                l.0.unlock(WRITE);
            })
        };
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, READ, false));
                // SAFETY: we hold a read lock: no writer holds it.
                let seen = l.1.with(|p| unsafe { *p });
                l.0.unlock(READ);
                seen
            })
        };
        l.0.unlock(WRITE);
        writer.join().unwrap();
        assert!(reader.join().unwrap() <= 1);
        assert_eq!(l.0.state.load(Relaxed), 0, "state left dirty");
    });
}

/// Two readers hold together; a writer queued behind them gets the lock from the last
/// one out, and the state word ends clean.
#[test]
fn last_reader_out_grants_the_writer() {
    loom::model(|| {
        let l = Arc::new(raw());
        assert!(lock(&l, READ, false));
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l, READ, false) || lock(&l, READ, false));
                l.unlock(READ);
            })
        };
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l, WRITE, false));
                l.unlock(WRITE);
            })
        };
        l.unlock(READ);
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
        assert!(lock(&l.0, WRITE, false));
        let reader = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, READ, false));
                // SAFETY: we hold a read lock: no writer holds it.
                let seen = l.1.with(|p| unsafe { *p });
                l.2.store(1, SeqCst);
                l.0.unlock(READ);
                seen
            })
        };
        // SAFETY: we hold the write lock.
        l.1.with_mut(|p| unsafe { *p = 7 });
        l.0.downgrade();
        while l.2.load(SeqCst) == 0 {
            thread::yield_now(); // the reader must get in while we still read
        }
        l.0.unlock(READ);
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
        assert!(lock(&l.0, WRITE, false));
        let writer = {
            let l = l.clone();
            thread::spawn(move || {
                assert!(lock(&l.0, WRITE, false));
                // SAFETY: we hold the write lock.
                l.1.with_mut(|p| unsafe { *p += 1 });
                l.0.unlock(WRITE);
            })
        };
        l.0.downgrade();
        // SAFETY: we hold a read lock: no writer holds it.
        let seen = l.1.with(|p| unsafe { *p });
        assert_eq!(seen, 0);
        l.0.unlock(READ);
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
        assert!(lock(&l, READ, false));
        let t = {
            let l = l.clone();
            thread::spawn(move || {
                if lock(&l, WRITE, true) {
                    l.unlock(WRITE);
                }
            })
        };
        l.unlock(READ);
        t.join().unwrap();
        assert_eq!(l.state.load(Relaxed), 0, "lock lost or state left dirty");
        assert!(l.try_write());
    });
}
