//! `fibra::chan` behaviour: the issue's example, each flavour, disconnection, timeouts,
//! `select!`, futures, and fibers mixed with OS threads.

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::chan::{self, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};

mod common;

/// The example of issue 3, verbatim (`b_tx` is unused there).
#[test]
#[rustfmt::skip]
#[allow(unused_variables)]
fn issue_example() {
    use fibra::chan;
    use std::time::Duration;

    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u64>(128);       // also chan::unbounded(), chan::bounded(0) = rendezvous
        let producers: Vec<_> = (0..8).map(|p| { let tx = tx.clone(); fibra::spawn(move || {
            for i in 0..10_000 { tx.send(p * 10_000 + i).unwrap(); }
        }) }).collect();
        drop(tx);
        let mut sum = 0;
        for v in rx.iter() { sum += v; }                  // ends when every sender is gone
        for p in producers { p.join().unwrap(); }
        assert_eq!(sum, (0..80_000u64).sum::<u64>());

        let (a_tx, a_rx) = chan::bounded::<&str>(1);
        let (b_tx, b_rx) = chan::unbounded::<u32>();
        fibra::select! {
            recv(a_rx) -> msg => println!("a: {msg:?}"),
            recv(b_rx) -> msg => println!("b: {msg:?}"),
            send(a_tx, "hi") -> res => res.unwrap(),
            default(Duration::from_millis(10)) => println!("timed out"),
        }
    });
}

/// Counts drops, to check that every value is dropped exactly once.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn buffered_items_survive_the_senders() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded(4);
        for i in 0..4 {
            tx.send(i).unwrap();
        }
        drop(tx);
        assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

/// A bound far beyond memory is a bound, not an up-front allocation (which would fail): the
/// buffer grows as items arrive, and the bound still holds.
#[test]
fn a_huge_bound_allocates_as_items_arrive() {
    let huge = usize::MAX / 4;
    let (tx, rx) = chan::bounded::<u64>(huge);
    assert_eq!(tx.capacity(), Some(huge));
    for i in 0..100_000 {
        tx.try_send(i).unwrap(); // grows past the preallocated part without waiting
    }
    assert_eq!(rx.len(), 100_000);
    assert!(rx.try_iter().eq(0..100_000));
    // Items larger than the preallocation: at least one slot, and the bound still applies.
    // On a thread with room for a few such values (debug and sanitizer builds copy them).
    const BIG: usize = 80 * 1024;
    let big = std::thread::Builder::new().stack_size(64 << 20).spawn(|| {
        let (tx, rx) = chan::bounded::<[u8; BIG]>(2);
        tx.try_send([1; BIG]).unwrap();
        tx.try_send([2; BIG]).unwrap();
        assert!(matches!(tx.try_send([3; BIG]), Err(TrySendError::Full(_))));
        rx.recv().unwrap()[0]
    });
    assert_eq!(big.unwrap().join().unwrap(), 1);
}

#[test]
fn dropping_the_receiver_drops_buffered_items_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    fibra::run(move || {
        let (tx, rx) = chan::bounded(8);
        for _ in 0..5 {
            tx.send(Counted(d.clone())).unwrap();
        }
        drop(rx);
        assert_eq!(d.load(SeqCst), 5);
        let back = tx.send(Counted(d.clone())).unwrap_err().into_inner();
        assert_eq!(d.load(SeqCst), 5);
        drop(back);
    });
    assert_eq!(drops.load(SeqCst), 6);
}

#[test]
fn rendezvous_send_waits_for_a_receiver() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded(0);
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        let t = Instant::now();
        let h = fibra::spawn(move || {
            fibra::sleep(Duration::from_millis(20));
            rx.recv().unwrap()
        });
        tx.send(7).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert_eq!(h.join().unwrap(), 7);
    });
}

#[test]
fn timeouts_hand_values_back() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<String>(0);
        let e = tx
            .send_timeout("x".into(), Duration::from_millis(5))
            .unwrap_err();
        assert_eq!(e, SendTimeoutError::Timeout("x".to_string()));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        drop(rx);
        let e = tx
            .send_timeout("y".into(), Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(e, SendTimeoutError::Disconnected("y".to_string()));
    });
}

#[test]
fn a_blocked_sender_gets_its_value_back_when_receivers_go() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded(1);
        tx.send(1).unwrap();
        let h = fibra::spawn(move || tx.send(2));
        fibra::sleep(Duration::from_millis(10));
        drop(rx);
        assert_eq!(h.join().unwrap().unwrap_err().into_inner(), 2);
    });
}

#[test]
fn fibers_and_threads_share_a_channel() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let (back_tx, back_rx) = chan::unbounded::<u32>();
        let thread = std::thread::spawn(move || {
            for v in rx.iter() {
                back_tx.send(v * 2).unwrap();
            }
        });
        for i in 0..100 {
            tx.send(i).unwrap();
            assert_eq!(back_rx.recv(), Ok(i * 2));
        }
        drop(tx);
        thread.join().unwrap();
        assert_eq!(back_rx.recv(), Err(chan::RecvError));
    });
}

#[test]
fn async_send_and_recv() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let h = fibra::spawn(move || {
            fibra::await_future(async {
                for i in 0..50 {
                    tx.send_async(i).await.unwrap();
                }
            })
        });
        let got: Vec<u32> = fibra::await_future(async {
            let mut v = Vec::new();
            while let Ok(x) = rx.recv_async().await {
                v.push(x);
            }
            v
        });
        h.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    });
}

#[test]
fn a_dropped_recv_future_loses_nothing() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut fut = pin!(rx.recv_async());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            // A sender hands the value straight to the registered future...
            tx.try_send(5).unwrap();
            // ...which is dropped without being polled again.
        }
        assert_eq!(rx.try_recv(), Ok(5));
        let mut fut = pin!(rx.recv_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        tx.try_send(6).unwrap();
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(6)));
    });
}

#[test]
fn select_send_and_recv_on_the_same_channel_does_not_pair_with_itself() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let r = fibra::select! {
            recv(rx) -> _ => "recv",
            send(tx, 1) -> _ => "send",
            default(Duration::from_millis(5)) => "timeout",
        };
        assert_eq!(r, "timeout");
    });
}

#[test]
fn select_waits_for_the_first_ready_arm() {
    fibra::run(|| {
        let (a_tx, a_rx) = chan::bounded::<u32>(0);
        let (b_tx, b_rx) = chan::bounded::<u32>(0);
        let h = fibra::spawn(move || {
            fibra::sleep(Duration::from_millis(5));
            b_tx.send(9).unwrap();
        });
        let got = fibra::select! {
            recv(a_rx) -> m => ("a", m.unwrap()),
            recv(b_rx) -> m => { ("b", m.unwrap()) }
        };
        assert_eq!(got, ("b", 9));
        h.join().unwrap();
        drop(a_tx);
        // A disconnected arm is ready with its error.
        fibra::select! {
            recv(a_rx) -> m => assert!(m.is_err()),
        }
    });
}

#[test]
fn select_send_arm_to_a_waiting_receiver() {
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u32>(0);
        let (_keep, never) = chan::unbounded::<u32>();
        let h = fibra::spawn(move || rx.recv().unwrap());
        let which = fibra::select! {
            send(tx, 3) -> r => { r.unwrap(); 1 }
            recv(never) -> _ => 2,
        };
        assert_eq!(which, 1);
        assert_eq!(h.join().unwrap(), 3);
    });
}

#[test]
fn select_default_runs_when_nothing_is_ready() {
    fibra::run(|| {
        let (_tx, rx) = chan::unbounded::<u8>();
        let r = fibra::select! {
            recv(rx) -> _ => false,
            default => true,
        };
        assert!(r);
    });
}

#[test]
fn oneshot_in_select_and_on_threads() {
    let (tx, rx) = chan::oneshot::<u32>();
    let t = std::thread::spawn(move || rx.recv());
    tx.send(1).unwrap();
    assert_eq!(t.join().unwrap(), Ok(1));
    fibra::run(|| {
        let (tx, rx) = chan::oneshot::<u32>();
        fibra::spawn(move || tx.send(2).unwrap());
        fibra::select! {
            recv(&rx) -> v => assert_eq!(v, Ok(2)),
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    });
}

#[test]
fn waits_record_their_park_reason() {
    use fibra::ParkReason;
    fibra::run(|| {
        let (tx, rx) = chan::bounded::<u8>(0);
        let (tx2, rx2) = (tx.clone(), rx.clone());
        let sender = fibra::spawn(move || tx2.send(1));
        while sender.fiber().park_reason() != ParkReason::ChanSend {
            fibra::yield_now();
        }
        assert_eq!(rx.recv(), Ok(1));
        let receiver = fibra::spawn(move || rx2.recv());
        while receiver.fiber().park_reason() != ParkReason::ChanRecv {
            fibra::yield_now();
        }
        tx.send(2).unwrap();
        let (_keep, never) = chan::unbounded::<u8>();
        let (tx3, rx3) = (tx.clone(), rx.clone());
        let selector = fibra::spawn(move || {
            fibra::select! {
                recv(never) -> _ => 0,
                recv(rx3) -> v => v.unwrap(),
            }
        });
        while selector.fiber().park_reason() != ParkReason::Select {
            fibra::yield_now();
        }
        tx3.send(3).unwrap();
        assert_eq!(sender.join().unwrap(), Ok(()));
        assert_eq!(receiver.join().unwrap(), Ok(2));
        assert_eq!(selector.join().unwrap(), 3);
    });
}

#[test]
fn lengths_and_capacities() {
    let (tx, rx) = chan::bounded::<u8>(2);
    assert_eq!((tx.capacity(), rx.capacity()), (Some(2), Some(2)));
    tx.send(1).unwrap();
    assert_eq!((tx.len(), rx.is_empty(), tx.is_full()), (1, false, false));
    tx.send(1).unwrap();
    assert!(rx.is_full());
    let (tx, _rx) = chan::unbounded::<u8>();
    assert_eq!(tx.capacity(), None);
    assert!(!tx.is_full());
}

/// A receiver that frees a slot of a full channel moves the oldest waiting sender's value
/// into it and wakes that sender when the receiver next switches out. Here the receiver then
/// waits for that very sender, on another channel: its park must deliver the wake (a wake
/// kept past it would hang this test), and the sender must find its send complete, in order.
#[test]
fn a_sender_refilled_into_the_buffer_runs_once_the_receiver_parks() {
    let _w = common::watchdog("a_sender_refilled_into_the_buffer_runs_once_the_receiver_parks");
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    for _ in 0..200 {
        rt.run(|| {
            let (tx, rx) = chan::bounded::<u32>(1);
            let (done_tx, done_rx) = chan::bounded::<()>(0);
            let sender = fibra::spawn(move || {
                tx.send(1).unwrap();
                tx.send(2).unwrap(); // the buffer is full: parks until a receive frees it
                done_tx.send(()).unwrap();
            });
            while rx.is_empty() {
                fibra::yield_now();
            }
            fibra::sleep(Duration::from_micros(200)); // the sender parks in its second send (mostly)
            assert_eq!(rx.recv().unwrap(), 1); // moves 2 into the buffer, completing that send
            done_rx.recv().unwrap(); // parks: the sender must run to get here
            assert_eq!(rx.recv().unwrap(), 2);
            sender.join().unwrap();
        });
    }
}
