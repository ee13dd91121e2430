//! The protocol driven by hand on one thread, and a contended run's clean end state.

use super::*;
use crate::sync::waiter::WAITING;
use crate::sync::Mutex;

/// Drives the protocol by hand on one thread: wake, barge, re-queue at the front, and the
/// switch to hand-off after MAX_BARGES barges.
#[test]
fn barges_are_bounded_then_the_lock_is_handed_off() {
    let m = RawMutex::new();
    assert!(m.try_lock());
    let a = Waiter::current();
    let mut ticket = m.enqueue(&a, true).expect("held: queues");
    let mut a = a;
    for barge in 1..=MAX_BARGES {
        m.unlock(); // frees the lock and wakes A to race for it
        assert_eq!(a.selected(), TRY_AGAIN);
        assert!(m.try_lock(), "barge {barge} refused");
        assert!(!m.spin(true, SPINS), "A lost the race");
        ticket.lost();
        a = Waiter::current();
        assert!(!m.requeue(&a, &ticket));
        if barge == 1 {
            // A newcomer queues behind A, which went back to the front.
            let c = Waiter::current();
            assert!(m.enqueue(&c, true).is_some());
        }
    }
    assert_ne!(m.state.load(Relaxed) & HANDOFF, 0, "barge limit reached");
    assert!(!m.try_lock(), "no barging in hand-off mode");
    m.unlock(); // hands the lock to A, the front
    assert_eq!(a.selected(), GRANTED);
    assert!(m.is_locked());
    assert!(!m.try_lock());
    // C queued after the first barge, so it has been overtaken fewer than MAX_BARGES
    // times: hand-off ends, and A's unlock wakes C to race for the lock.
    m.unlock();
    assert_eq!(m.state.load(Relaxed) & (HANDOFF | LOCKED), 0);
    assert_ne!(m.state.load(Relaxed) & WOKEN, 0);
    assert_eq!(m.queue.lock().len(), 0);
}

/// With nobody woken, waiters are claimed oldest first and the state word ends clean.
#[test]
fn state_is_clean_after_contention() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || *m.lock() += 1)
        })
        .collect();
    while m.raw.queue.lock().len() < 4 {
        std::thread::yield_now();
    }
    drop(g);
    ts.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(*m.lock(), 4);
    assert_eq!(m.raw.state.load(Relaxed), 0);
    let w = Waiter::current();
    assert_eq!(w.selected(), WAITING);
}
