//! `fibra::chan::broadcast`: every receiver gets every item, between fibers, threads and async
//! code; lagging, closing, value accounting and cancel safety.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use fibra::chan::broadcast::{self, RecvError, RecvTimeoutError, TryRecvError};
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

/// Drains a receiver to `Closed`, checking it sees strictly increasing items; returns how
/// many it received and how many it was told it missed.
fn drain(rx: &mut broadcast::Receiver<u64>) -> (u64, u64) {
    let (mut got, mut missed, mut last) = (0, 0, None);
    loop {
        match rx.recv() {
            Ok(v) => {
                assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
                last = Some(v);
                got += 1;
            }
            Err(RecvError::Lagged(n)) => missed += n,
            Err(RecvError::Closed) => return (got, missed),
        }
    }
}

/// A fiber, a plain thread and an `async` receiver each get all N items, in order, then
/// `Closed` (the capacity holds them all: nobody lags).
#[test]
fn every_kind_of_receiver_gets_every_item() {
    let _w = common::watchdog("every_kind_of_receiver_gets_every_item");
    const N: u64 = 2_000;
    fibra::run(|| {
        let (tx, mut in_fiber) = broadcast::channel(N as usize);
        let mut in_thread = tx.subscribe();
        let mut in_async = tx.subscribe();
        let fiber = fibra::spawn(move || in_fiber.iter().collect::<Vec<u64>>());
        let thread = std::thread::spawn(move || in_thread.iter().collect::<Vec<u64>>());
        let task = fibra::spawn(move || {
            fibra::await_future(async move {
                let mut got = Vec::new();
                while let Ok(v) = in_async.recv_async().await {
                    got.push(v);
                }
                got
            })
        });
        for i in 0..N {
            assert_eq!(tx.send(i), Ok(3));
            if i % 64 == 0 {
                fibra::yield_now();
            }
        }
        drop(tx);
        let all: Vec<u64> = (0..N).collect();
        assert_eq!(fiber.join().unwrap(), all);
        assert_eq!(thread.join().unwrap(), all);
        assert_eq!(task.join().unwrap(), all);
    });
}

/// A receiver that falls behind by more than the capacity is told exactly how many items it
/// missed, then reads on from the oldest kept.
#[test]
fn a_slow_receiver_lags_by_the_exact_count() {
    fibra::run(|| {
        let (tx, mut rx) = broadcast::channel(4);
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.len(), 4);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(6)));
        assert_eq!(rx.iter().take(4).collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(10).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(10));
        assert_eq!(rx.recv(), Err(RecvError::Closed));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    });
}

/// Under contention with a small capacity, every receiver accounts for every item exactly
/// once: received + reported missed == sent, in increasing order, whether it lagged or not.
#[test]
fn received_plus_missed_is_everything_sent() {
    let _w = common::watchdog("received_plus_missed_is_everything_sent");
    const N: u64 = 20_000;
    fibra::run(|| {
        let (tx, rx) = broadcast::channel(8);
        let fibers: Vec<_> = (0..3)
            .map(|_| {
                let mut rx = tx.subscribe();
                fibra::spawn(move || drain(&mut rx))
            })
            .collect();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let mut rx = tx.subscribe();
                std::thread::spawn(move || drain(&mut rx))
            })
            .collect();
        drop(rx);
        for i in 0..N {
            tx.send(i).unwrap();
            if i % 16 == 0 {
                fibra::yield_now();
            }
        }
        drop(tx);
        for (got, missed) in fibers.into_iter().map(|f| f.join().unwrap()) {
            assert_eq!(got + missed, N);
        }
        for (got, missed) in threads.into_iter().map(|t| t.join().unwrap()) {
            assert_eq!(got + missed, N);
        }
    });
}

/// Counts clones and drops of the items.
struct Tracked {
    clones: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, SeqCst);
        Tracked {
            clones: self.clones.clone(),
            drops: self.drops.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// One receiver moves each item out without cloning; with two, the item is cloned once and
/// the kept copy is dropped as soon as both have read it; a receiver that leaves releases its
/// share; lagged items are dropped once. Every value created is dropped exactly once.
#[test]
fn items_are_cloned_only_when_shared_and_dropped_once() {
    let clones = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let item = || Tracked {
        clones: clones.clone(),
        drops: drops.clone(),
    };
    let (tx, mut a) = broadcast::channel(2);
    tx.send(item()).unwrap();
    drop(a.try_recv().unwrap());
    assert_eq!((clones.load(SeqCst), drops.load(SeqCst)), (0, 1));
    assert!(tx.is_empty());

    let mut b = tx.subscribe();
    tx.send(item()).unwrap();
    drop(a.try_recv().unwrap());
    assert_eq!(tx.len(), 1, "kept for `b`");
    drop(b.try_recv().unwrap());
    assert!(tx.is_empty(), "dropped once both have read it");
    assert_eq!((clones.load(SeqCst), drops.load(SeqCst)), (1, 3));

    tx.send(item()).unwrap();
    drop(a.try_recv().unwrap());
    drop(b); // leaves without reading: its share goes
    assert!(tx.is_empty());
    for _ in 0..5 {
        tx.send(item()).unwrap(); // 3 of these are dropped unread by `a`
    }
    assert!(matches!(a.try_recv(), Err(TryRecvError::Lagged(3))));
    drop((a, tx));
    let created = 1 + 1 + 1 + 5;
    assert_eq!(drops.load(SeqCst), created + clones.load(SeqCst));
}

#[test]
fn sending_without_receivers_hands_the_value_back() {
    let (tx, rx) = broadcast::channel::<String>(1);
    drop(rx);
    let err = tx.send("kept".into()).unwrap_err();
    assert_eq!(err.into_inner(), "kept");
    let mut late = tx.subscribe();
    assert_eq!(tx.receiver_count(), 1);
    tx.send("new".into()).unwrap();
    assert_eq!(late.try_recv().as_deref(), Ok("new"));
}

/// A parked receiver is woken by a send, or by the last sender leaving; a thread too.
#[test]
fn parked_receivers_wake_on_send_and_on_close() {
    let _w = common::watchdog("parked_receivers_wake_on_send_and_on_close");
    fibra::run(|| {
        let (tx, mut rx) = broadcast::channel(4);
        let mut rx2 = tx.subscribe();
        let h = parks_with(move || (rx.recv(), rx.recv()), ParkReason::ChanRecv);
        let t = std::thread::spawn(move || (rx2.recv(), rx2.recv()));
        tx.send(1).unwrap();
        let tx2 = tx.clone();
        drop(tx);
        fibra::yield_now();
        drop(tx2);
        assert_eq!(h.join().unwrap(), (Ok(1), Err(RecvError::Closed)));
        assert_eq!(t.join().unwrap(), (Ok(1), Err(RecvError::Closed)));
    });
}

#[test]
fn recv_timeout_gives_up_then_receives() {
    let _w = common::watchdog("recv_timeout_gives_up_then_receives");
    fibra::run(|| {
        let (tx, mut rx) = broadcast::channel(4);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(2)),
            Err(RecvTimeoutError::Timeout)
        );
        let sender = fibra::spawn(move || {
            fibra::sleep(Duration::from_millis(1));
            tx.send(5).unwrap();
            tx
        });
        let far = Instant::now() + Duration::from_secs(30);
        assert_eq!(rx.recv_deadline(far), Ok(5));
        drop(sender.join().unwrap());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)),
            Err(RecvTimeoutError::Closed)
        );
    });
}

/// A pending `recv_async` that is dropped takes nothing: the item goes to the next receive.
#[test]
fn a_dropped_recv_future_loses_nothing() {
    let (tx, mut rx) = broadcast::channel(4);
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut fut = pin!(rx.recv_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "re-poll keeps waiting"
        );
    }
    tx.send(1).unwrap();
    {
        let mut fut = pin!(rx.recv_async());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    }
    tx.send(2).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
}

/// `resubscribe` starts at the next item, `is_closed` turns on when the senders go, and the
/// channel works with no runtime at all.
#[test]
fn resubscribe_and_close_without_a_runtime() {
    let (tx, mut rx) = broadcast::channel(4);
    tx.send(1).unwrap();
    let mut fresh = rx.resubscribe();
    assert!(fresh.is_empty());
    assert!(!rx.is_closed());
    let t = std::thread::spawn(move || fresh.recv());
    std::thread::sleep(Duration::from_millis(1)); // let it block (either order passes)
    tx.send(2).unwrap();
    assert_eq!(t.join().unwrap(), Ok(2));
    drop(tx);
    assert!(rx.is_closed());
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
}

/// A `recv` that finds an item and then yields for the coop budget holds no lock while the
/// other fibers of its worker run: with a budget of 1 every such `recv` yields, and the
/// sender on the same worker must still get the channel's lock (it used to block the worker
/// thread for good: the guard lived through the yield).
#[test]
fn a_recv_that_yields_for_the_budget_holds_no_lock() {
    let _w = common::watchdog("a_recv_that_yields_for_the_budget_holds_no_lock");
    const N: u64 = 200;
    let rt = fibra::Runtime::builder()
        .workers(1)
        .coop_budget(1)
        .build()
        .unwrap();
    let sum = rt.run(|| {
        let (tx, mut rx) = broadcast::channel(N as usize);
        tx.send(0).unwrap(); // the first recv finds an item at once
        let reader = fibra::spawn(move || (0..N).map(|_| rx.recv().unwrap()).sum::<u64>());
        let writer = fibra::spawn(move || (1..N).for_each(|i| assert!(tx.send(i).is_ok())));
        writer.join().unwrap();
        reader.join().unwrap()
    });
    assert_eq!(sum, (0..N).sum::<u64>());
}
