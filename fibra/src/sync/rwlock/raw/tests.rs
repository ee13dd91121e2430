//! The protocol driven by hand on one thread: barging, hand-off after the bound, reader runs,
//! downgrade and withdraw; each ends with the state word clean.

use super::*;
use crate::sync::waiter::{TIMED_OUT, WAITING};

fn state(l: &RawRwLock) -> u64 {
    l.state.load(Relaxed)
}

/// Wake, barge, re-queue at the front, and the switch to hand-off after MAX_BARGES barges;
/// a reader queued behind the writer is admitted by the writer's unlock.
#[test]
fn barges_are_bounded_then_the_lock_is_handed_off() {
    let l = RawRwLock::new();
    assert!(l.try_write());
    let a = Waiter::current();
    let ticket = l.enqueue(&a, Kind::Write, true).expect("held: queues");
    let mut a = a;
    let c = Waiter::current();
    for barge in 1..=MAX_BARGES {
        l.write_unlock(); // frees the lock and wakes A to race for it
        assert_eq!(a.selected(), TRY_AGAIN);
        assert!(!l.try_read(), "a reader joined past the woken writer");
        assert!(l.try_write(), "barge {barge} refused");
        assert!(!l.spin(true, SPINS), "A lost the race");
        a = Waiter::current();
        assert!(!l.requeue(&a, &ticket));
        if barge == 1 {
            // A reader queues behind A, which went back to the front.
            assert!(l.enqueue(&c, Kind::Read, true).is_some());
        }
    }
    assert_ne!(state(&l) & HANDOFF, 0, "barge limit reached");
    l.write_unlock(); // hands the lock to A, the front: it is due
    assert_eq!(a.selected(), GRANTED);
    assert_eq!(c.selected(), WAITING);
    assert!(!l.try_write(), "no barging past a granted writer");
    assert!(!l.try_read());
    l.write_unlock(); // A's: admits the reader C
    assert_eq!(c.selected(), GRANTED);
    assert_eq!(state(&l), READER, "C holds; nothing else is left");
    l.read_unlock();
    assert_eq!(state(&l), 0);
}

/// The readers at the front are admitted together, up to the first writer; that writer is
/// woken to race when the last of them leaves; readers behind it wait for it.
#[test]
fn reader_runs_are_admitted_together_in_fifo_order() {
    let l = RawRwLock::new();
    assert!(l.try_write());
    let [r1, r2, w, r3] = [(); 4].map(|_| Waiter::current());
    for (waiter, kind) in [
        (&r1, Kind::Read),
        (&r2, Kind::Read),
        (&w, Kind::Write),
        (&r3, Kind::Read),
    ] {
        assert!(l.enqueue(waiter, kind, true).is_some());
    }
    l.write_unlock();
    assert_eq!([r1.selected(), r2.selected()], [GRANTED; 2]);
    assert_eq!([w.selected(), r3.selected()], [WAITING; 2]);
    assert_eq!(readers(state(&l)), 2);
    assert!(!l.try_read(), "a reader joined past a queued writer");
    assert!(!l.try_write());
    l.read_unlock();
    assert_eq!(w.selected(), WAITING);
    l.read_unlock(); // the last one out wakes W
    assert_eq!(w.selected(), TRY_AGAIN);
    assert_eq!(state(&l) & (WRITER | WOKEN), WOKEN, "free, W on its way");
    assert!(!l.try_read(), "readers wait for the woken writer");
    assert!(l.spin(true, SPINS));
    assert_eq!(r3.selected(), WAITING);
    l.write_unlock();
    assert_eq!(r3.selected(), GRANTED);
    l.read_unlock();
    assert_eq!(state(&l), 0);
}

/// A barger that downgrades while a writer is woken does not admit the readers queued behind
/// that writer (it is older); the writer re-queues at the front and goes before them.
#[test]
fn downgrade_keeps_readers_behind_a_woken_writer() {
    let l = RawRwLock::new();
    assert!(l.try_write());
    let w = Waiter::current();
    let ticket = l.enqueue(&w, Kind::Write, true).unwrap();
    let r = Waiter::current();
    assert!(l.enqueue(&r, Kind::Read, true).is_some());
    l.write_unlock();
    assert_eq!(w.selected(), TRY_AGAIN);
    assert!(l.try_write(), "barge");
    l.downgrade();
    assert_eq!(r.selected(), WAITING, "admitted past the woken writer");
    assert!(!l.spin(true, SPINS), "a reader holds");
    let w = Waiter::current();
    assert!(!l.requeue(&w, &ticket));
    l.read_unlock(); // the downgraded hold, last out: wakes W again
    assert_eq!(w.selected(), TRY_AGAIN);
    assert!(l.spin(true, SPINS));
    l.write_unlock();
    assert_eq!(r.selected(), GRANTED);
    l.read_unlock();
    assert_eq!(state(&l), 0);
}

/// A queued writer times out while readers hold: the readers queued behind it are admitted at
/// once rather than waiting for the holders to leave.
#[test]
fn withdrawn_writer_lets_the_readers_behind_it_in() {
    let l = RawRwLock::new();
    assert!(l.try_read());
    let w = Waiter::current();
    assert!(l.enqueue(&w, Kind::Write, true).is_some());
    let r = Waiter::current();
    assert!(l.enqueue(&r, Kind::Read, true).is_some());
    assert!(w.try_select(TIMED_OUT));
    l.withdraw(&w);
    assert_eq!(r.selected(), GRANTED);
    assert_eq!(state(&l), 2 * READER, "two readers, QUEUED cleared");
    l.read_unlock();
    l.read_unlock();
    assert_eq!(state(&l), 0);
}
