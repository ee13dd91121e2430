//! `fibra::chan::watch`: the latest value, `changed`, versions and closing, between fibers,
//! threads and async code.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fibra::chan::watch::{self, RecvError, RecvTimeoutError};
use fibra::ParkReason;

mod common;

/// Spawns `f` in a fiber and waits until it parks with `reason`.
fn parks_with<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    reason: ParkReason,
) -> fibra::JoinHandle<T> {
    let h = fibra::spawn(f);
    while h.fiber().park_reason() != reason {
        fibra::yield_now();
    }
    h
}

/// Follows the channel to its close; returns the values seen (strictly increasing: a watcher
/// may skip values, never go back).
fn follow(mut rx: watch::Receiver<u64>) -> Vec<u64> {
    let mut seen = vec![*rx.borrow_and_update()];
    while rx.changed().is_ok() {
        let v = *rx.borrow_and_update();
        assert!(v > *seen.last().unwrap(), "{v} after {seen:?}");
        seen.push(v);
    }
    seen
}

/// Fibers, threads and an `async` task follow a sender to its close: each sees increasing
/// values and, whatever it skipped, the last value sent.
#[test]
fn every_watcher_ends_on_the_last_value() {
    let _w = common::watchdog("every_watcher_ends_on_the_last_value");
    const N: u64 = 5_000;
    fibra::run(|| {
        let (tx, rx) = watch::channel(0u64);
        let fibers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                fibra::spawn(move || follow(rx))
            })
            .collect();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || follow(rx))
            })
            .collect();
        let mut arx = rx.clone();
        let task = fibra::spawn(move || {
            fibra::await_future(async move {
                let mut last = *arx.borrow_and_update();
                while arx.changed_async().await.is_ok() {
                    let v = *arx.borrow_and_update();
                    assert!(v > last);
                    last = v;
                }
                last
            })
        });
        drop(rx);
        for i in 1..=N {
            tx.send(i).unwrap();
            if i % 32 == 0 {
                fibra::yield_now();
            }
        }
        drop(tx);
        for seen in fibers.into_iter().map(|f| f.join().unwrap()) {
            assert_eq!(seen.last(), Some(&N));
        }
        for seen in threads.into_iter().map(|t| t.join().unwrap()) {
            assert_eq!(seen.last(), Some(&N));
        }
        assert_eq!(task.join().unwrap(), N);
    });
}

/// A change not yet seen outlives the sender: `changed` reports it, then the error; the
/// value stays readable. A parked `changed` is woken by the close.
#[test]
fn close_reports_the_last_change_first() {
    let _w = common::watchdog("close_reports_the_last_change_first");
    fibra::run(|| {
        let (tx, mut rx) = watch::channel("a");
        let mut waiting = rx.clone();
        let h = parks_with(move || waiting.changed(), ParkReason::ChanRecv);
        let tx2 = tx.clone();
        tx2.send("b").unwrap();
        drop(tx2);
        assert_eq!(h.join().unwrap(), Ok(()));
        let mut idle = tx.subscribe();
        let h = parks_with(move || idle.changed(), ParkReason::ChanRecv);
        drop(tx);
        assert_eq!(h.join().unwrap(), Err(RecvError));
        assert_eq!(rx.has_changed(), Ok(true));
        assert_eq!(rx.changed(), Ok(()));
        assert_eq!(*rx.borrow(), "b");
        assert_eq!(rx.changed(), Err(RecvError));
        assert_eq!(rx.has_changed(), Err(RecvError));
        assert_eq!(
            rx.changed_timeout(Duration::from_secs(30)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
}

#[test]
fn send_needs_a_receiver_send_replace_does_not() {
    let (tx, rx) = watch::channel(1);
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(2).unwrap_err().into_inner(), 2);
    assert_eq!(*tx.borrow(), 1);
    assert_eq!(tx.send_replace(3), 1);
    let rx = tx.subscribe();
    assert_eq!(*rx.borrow(), 3);
    assert!(!rx.borrow().has_changed());
}

/// A panic inside `send_modify` still counts as a change: watchers must not keep a view of a
/// value that may have moved.
#[test]
fn a_panicking_modification_is_still_announced() {
    let (tx, mut rx) = watch::channel(vec![1]);
    let caught = catch_unwind(AssertUnwindSafe(|| {
        tx.send_modify(|v| {
            v.push(2);
            panic!("half done");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(rx.has_changed(), Ok(true));
    assert_eq!(*rx.borrow_and_update(), [1, 2]);
    assert!(!tx.send_if_modified(|_| false));
    assert_eq!(rx.has_changed(), Ok(false));
}

/// A held `Ref` read-locks the value: a sender on another fiber parks (not blocks its worker)
/// until the `Ref` goes, then its change is seen.
#[test]
fn a_held_borrow_parks_the_sender() {
    let _w = common::watchdog("a_held_borrow_parks_the_sender");
    fibra::run(|| {
        let (tx, mut rx) = watch::channel(0);
        let value = rx.borrow();
        let sender = parks_with(move || tx.send(1).is_ok(), ParkReason::RwLockWrite);
        assert_eq!(*value, 0);
        drop(value);
        assert!(sender.join().unwrap());
        rx.changed().unwrap();
        assert_eq!(*rx.borrow(), 1);
    });
}

#[test]
fn wait_for_returns_the_value_it_accepted() {
    let _w = common::watchdog("wait_for_returns_the_value_it_accepted");
    fibra::run(|| {
        let (tx, mut rx) = watch::channel(0);
        assert_eq!(
            *rx.wait_for(|v| *v == 0).unwrap(),
            0,
            "the current value counts"
        );
        let sender = fibra::spawn(move || {
            for i in 1..=20 {
                tx.send(i).unwrap();
                fibra::yield_now();
            }
        });
        let hit = *rx.wait_for(|v| *v >= 7).unwrap(); // values may be skipped, not missed
        assert!((7..=20).contains(&hit), "{hit}");
        sender.join().unwrap();
        assert_eq!(rx.wait_for(|v| *v > 100).unwrap_err(), RecvError);
    });
}

/// A clone starts with the same version seen; each receiver marks versions seen on its own.
#[test]
fn receivers_track_what_they_have_seen() {
    let (tx, mut a) = watch::channel(0);
    tx.send(1).unwrap();
    let mut b = a.clone();
    assert!(a.borrow_and_update().has_changed());
    assert_eq!(a.has_changed(), Ok(false));
    assert_eq!(b.has_changed(), Ok(true));
    assert!(b.borrow().has_changed(), "borrow does not mark seen");
    assert_eq!(b.changed_timeout(Duration::ZERO), Ok(()));
    assert_eq!(
        b.changed_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(tx.receiver_count(), 2);
    drop(b);
    assert_eq!(tx.receiver_count(), 1);
}

/// A pending `changed_async` that is dropped marks nothing seen.
#[test]
fn a_dropped_changed_future_loses_nothing() {
    let (tx, mut rx) = watch::channel(0);
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut fut = pin!(rx.changed_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    tx.send(1).unwrap();
    {
        let fut = rx.changed_async();
        drop(fut); // never polled
    }
    assert_eq!(rx.has_changed(), Ok(true));
    let mut fut = pin!(rx.changed_async());
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
}

/// A `changed` that finds a change and then yields for the coop budget holds no lock while
/// the other fibers of its worker run (as broadcast's `recv`): with a budget of 1 every such
/// call yields, and the sender on the same worker must still get the lock.
#[test]
fn a_changed_that_yields_for_the_budget_holds_no_lock() {
    let _w = common::watchdog("a_changed_that_yields_for_the_budget_holds_no_lock");
    const N: u64 = 200;
    let rt = fibra::Runtime::builder()
        .workers(1)
        .coop_budget(1)
        .build()
        .unwrap();
    let last = rt.run(|| {
        let (tx, mut rx) = watch::channel(0u64);
        tx.send(1).unwrap(); // the first `changed` finds a change at once
        let writer = {
            let tx = tx.clone();
            fibra::spawn(move || (2..=N).for_each(|i| tx.send(i).unwrap()))
        };
        let reader = fibra::spawn(move || {
            while rx.changed().is_ok() {
                if *rx.borrow() == N {
                    break;
                }
            }
            *rx.borrow()
        });
        writer.join().unwrap();
        drop(tx);
        reader.join().unwrap()
    });
    assert_eq!(last, N);
}
