//! Issue 19's `Select::ready` family: readiness of every channel flavour and of timer
//! channels, on plain threads and on fibers; `ready` never performs (nor consumes) the
//! operation; a readiness watcher never takes a wake-up a blocked receiver or sender needs;
//! disconnection makes ready; the errors; and the choice is uniform among ready operations.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::chan::{self, ReadyTimeoutError, Receiver, Select, Sender, TryReadyError};
use fibra::sync::Barrier;

mod common;

/// Runs `f` on a plain thread, then in a runtime with one worker (where a party spawned
/// before a wait runs only once the waiter parks, so `ready` has queued its watchers before
/// the party acts), then with two.
fn on_thread_and_fibers(f: fn()) {
    std::thread::spawn(f).join().unwrap();
    for workers in [1, 2] {
        let rt = fibra::Runtime::builder().workers(workers).build().unwrap();
        rt.run(f);
    }
}

/// Another party: a fiber inside a runtime, else a thread. Returns its joiner.
fn party<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Box<dyn FnOnce() -> R> {
    if fibra::Handle::try_current().is_some() {
        let h = fibra::spawn(f);
        Box::new(move || h.join().unwrap())
    } else {
        let h = std::thread::spawn(f);
        Box::new(move || h.join().unwrap())
    }
}

/// Awaits `fut` on a fiber (`fibra::await_future`) or, on a plain thread, by parking the
/// thread until its waker unparks it.
fn await_anywhere<F: std::future::Future>(fut: F) -> F::Output {
    if fibra::Handle::try_current().is_some() {
        return fibra::await_future(fut);
    }
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The three flavours, by capacity (`None`: unbounded).
fn flavours() -> [(Option<usize>, &'static str); 3] {
    [
        (Some(2), "bounded(2)"),
        (Some(0), "bounded(0)"),
        (None, "unbounded"),
    ]
}

fn channel<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    match cap {
        Some(n) => chan::bounded(n),
        None => chan::unbounded(),
    }
}

/// A receive becomes ready when an item arrives (buffered, or a sender waiting on a
/// rendezvous); `ready` says so without taking it, as often as asked.
#[test]
fn recv_ready_on_each_flavour_does_not_consume() {
    let _w = common::watchdog("recv_ready_on_each_flavour_does_not_consume");
    on_thread_and_fibers(|| {
        for (cap, name) in flavours() {
            let (tx, rx) = channel::<u32>(cap);
            let (_idle_tx, idle) = chan::unbounded::<u32>();
            let mut sel = Select::new();
            sel.recv(&idle);
            let r = sel.recv(&rx);
            assert_eq!(sel.try_ready(), Err(TryReadyError), "{name}: empty");
            let sender = party(move || tx.send(7).unwrap()); // waits on a rendezvous
            assert_eq!(sel.ready(), r, "{name}");
            for _ in 0..3 {
                assert_eq!(
                    sel.try_ready(),
                    Ok(r),
                    "{name}: still ready: nothing consumed"
                );
            }
            assert_eq!(rx.recv(), Ok(7), "{name}");
            sender();
            assert_eq!(
                sel.try_ready(),
                Ok(r),
                "{name}: senders gone, a recv would not block"
            );
            assert_eq!(rx.try_recv(), Err(chan::TryRecvError::Disconnected));
        }
    });
}

/// A send becomes ready when there is room (a slot freed, or a receiver waiting on a
/// rendezvous); `ready` sends nothing.
#[test]
fn send_ready_on_each_flavour_does_not_send() {
    let _w = common::watchdog("send_ready_on_each_flavour_does_not_send");
    on_thread_and_fibers(|| {
        for (cap, name) in flavours() {
            let (tx, rx) = channel::<u32>(cap);
            let prefill = cap.unwrap_or(1); // full; unbounded: one item for the receiver
            for i in 0..prefill {
                tx.send(i as u32).unwrap();
            }
            let mut sel = Select::new();
            let s = sel.send(&tx, 100);
            if cap.is_some() {
                assert_eq!(sel.try_ready(), Err(TryReadyError), "{name}: full");
            }
            let receiver = party(move || {
                let first = rx.recv().unwrap(); // frees a slot, or waits on a rendezvous
                (first, rx)
            });
            assert_eq!(sel.ready(), s, "{name}");
            if cap == Some(0) {
                // The receiver still waits: ready sent nothing, so send our own.
                tx.send(42).unwrap();
            }
            let (first, rx) = receiver();
            assert_eq!(first, if cap == Some(0) { 42 } else { 0 }, "{name}");
            assert_eq!(rx.len(), prefill.saturating_sub(1), "{name}: 100 not sent");
            drop(rx);
            assert_eq!(
                sel.try_ready(),
                Ok(s),
                "{name}: receivers gone, a send would not block"
            );
            assert!(matches!(
                tx.try_send(1),
                Err(chan::TrySendError::Disconnected(1))
            ));
        }
    });
}

/// Disconnection wakes a waiting `ready` on either side, and the operation it names then
/// fails at once.
#[test]
fn disconnection_makes_ready() {
    let _w = common::watchdog("disconnection_makes_ready");
    on_thread_and_fibers(|| {
        let (tx, rx) = chan::bounded::<u8>(0);
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let dropper = party(move || drop(tx));
        assert_eq!(sel.ready(), r);
        dropper();
        assert_eq!(rx.recv(), Err(chan::RecvError));

        let (tx, rx) = chan::bounded::<u8>(1);
        tx.send(1).unwrap();
        let mut sel = Select::new();
        let s = sel.send(&tx, 2);
        let dropper = party(move || drop(rx));
        assert_eq!(sel.ready(), s);
        dropper();
        assert_eq!(tx.send(3).unwrap_err().into_inner(), 3);
    });
}

/// `try_ready` and `ready_timeout`/`ready_deadline` report what was not ready, as errors
/// with messages; an empty `Select` waits for nothing with a deadline and refuses to wait for
/// ever.
#[test]
fn try_ready_and_timeouts_report_errors() {
    let _w = common::watchdog("try_ready_and_timeouts_report_errors");
    on_thread_and_fibers(|| {
        let (_tx, rx) = chan::unbounded::<u8>();
        let (full_tx, _full_rx) = chan::bounded::<u8>(0);
        let mut sel = Select::new();
        sel.recv(&rx);
        sel.send(&full_tx, 1);
        assert_eq!(sel.try_ready(), Err(TryReadyError));
        let d = Duration::from_millis(3);
        let start = Instant::now();
        assert_eq!(sel.ready_timeout(d), Err(ReadyTimeoutError));
        assert!(start.elapsed() >= d);
        let deadline = Instant::now() + d;
        assert_eq!(sel.ready_deadline(deadline), Err(ReadyTimeoutError));
        assert!(Instant::now() >= deadline);
        assert_eq!(
            ReadyTimeoutError.to_string(),
            "no operation became ready before the deadline"
        );
        let e: &dyn std::error::Error = &TryReadyError;
        assert_eq!(e.to_string(), "no operation was ready");

        let mut empty = Select::new();
        assert_eq!(empty.try_ready(), Err(TryReadyError));
        assert_eq!(empty.ready_timeout(d), Err(ReadyTimeoutError));
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| empty.ready()));
        let msg = panic.unwrap_err();
        assert_eq!(
            msg.downcast_ref::<&str>(),
            Some(&"Select::ready with no operations")
        );
    });
}

/// Timer channels: `after` becomes ready at its due time (and its item is still there),
/// `never` never does, a `tick` wakes a waiting `ready` each period.
#[test]
fn timer_channels_become_ready_when_due() {
    let _w = common::watchdog("timer_channels_become_ready_when_due");
    on_thread_and_fibers(|| {
        let start = Instant::now();
        let d = Duration::from_millis(4);
        let after = chan::after(d);
        let never = chan::never::<Instant>();
        let mut sel = Select::new();
        sel.recv(&never);
        let a = sel.recv(&after);
        assert_eq!(sel.ready(), a);
        assert!(start.elapsed() >= d);
        assert!(
            after.try_recv().unwrap() >= start + d,
            "the item was not taken by ready"
        );
        assert_eq!(
            sel.ready_timeout(Duration::from_millis(2)),
            Err(ReadyTimeoutError)
        );

        let tick = chan::tick(Duration::from_millis(1));
        let mut sel = Select::new();
        let t = sel.recv(&tick);
        for _ in 0..3 {
            assert_eq!(sel.ready(), t);
            tick.try_recv().unwrap();
        }
    });
}

/// Partners queued by `select!` arms and by futures make a rendezvous ready too.
#[test]
fn partners_from_select_and_futures_make_a_rendezvous_ready() {
    let _w = common::watchdog("partners_from_select_and_futures_make_a_rendezvous_ready");
    on_thread_and_fibers(|| {
        let (tx, rx) = chan::bounded::<u8>(0);
        let mut sel = Select::new();
        let r = sel.recv(&rx);
        let tx2 = tx.clone();
        let selector = party(move || {
            let (_o, other) = chan::unbounded::<u8>();
            fibra::select! {
                send(tx2, 5) -> res => res.unwrap(),
                recv(other) -> _ => unreachable!(),
            }
        });
        assert_eq!(sel.ready(), r);
        assert_eq!(rx.recv(), Ok(5));
        selector();
        let sender = party(move || await_anywhere(tx.send_async(6)).unwrap());
        assert_eq!(sel.ready(), r);
        assert_eq!(rx.recv(), Ok(6));
        sender();

        let (tx, rx) = chan::bounded::<u8>(0);
        let mut sel = Select::new();
        let s = sel.send(&tx, 0);
        let receiver = party(move || await_anywhere(rx.recv_async()).unwrap());
        assert_eq!(sel.ready(), s);
        tx.send(9).unwrap();
        assert_eq!(receiver(), 9);
    });
}

/// Receivers blocked in `recv` and watchers blocked in `ready` on the same channel, in every
/// arrival order: each item reaches a receiver (a watcher queued in front of one is passed
/// over, never handed the receiver's wake-up: the receiver would sleep for ever beside a
/// buffered item), and every watcher returns by the close at the latest.
#[test]
fn watchers_never_take_a_receivers_wake_up() {
    let _w = common::watchdog("watchers_never_take_a_receivers_wake_up");
    const RECEIVERS: usize = 4;
    const WATCHERS: usize = 4;
    let rounds = common::scaled(200, 10);
    on_thread_and_fibers_with(rounds, |rounds| {
        for round in 0..rounds {
            let cap = [Some(0), Some(1), None][round % 3];
            let (tx, rx) = channel::<usize>(cap);
            // Everybody is about to wait when the sends start; some are already waiting.
            let start = Arc::new(Barrier::new(RECEIVERS + WATCHERS + 1));
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let (rx, start) = (rx.clone(), start.clone());
                    party(move || {
                        start.wait();
                        rx.recv().unwrap()
                    })
                })
                .collect();
            let watchers: Vec<_> = (0..WATCHERS)
                .map(|_| {
                    let (rx, start) = (rx.clone(), start.clone());
                    party(move || {
                        start.wait();
                        let mut sel = Select::new();
                        sel.recv(&rx);
                        sel.ready() // takes nothing
                    })
                })
                .collect();
            drop(rx);
            start.wait();
            for i in 0..RECEIVERS {
                tx.send(i).unwrap(); // each returns once taken or buffered
            }
            let mut got: Vec<usize> = receivers.into_iter().map(|r| r()).collect();
            got.sort_unstable();
            assert_eq!(
                got,
                (0..RECEIVERS).collect::<Vec<_>>(),
                "round {round} ({cap:?})"
            );
            drop(tx);
            for w in watchers {
                assert_eq!(w(), 0, "round {round}");
            }
        }
    });
}

/// `on_thread_and_fibers` for a closure that takes a count.
fn on_thread_and_fibers_with(n: usize, f: fn(usize)) {
    std::thread::spawn(move || f(n)).join().unwrap();
    for workers in [1, 4] {
        let rt = fibra::Runtime::builder().workers(workers).build().unwrap();
        rt.run(move || f(n));
    }
}

/// Stress: receivers, and watchers that `ready` then `try_recv`, drain producers through one
/// channel of each flavour; every item arrives exactly once, nobody hangs. On the send side,
/// watchers `ready` on a full channel, then `try_send` their own items.
#[test]
fn stress_receivers_and_watchers_count_exactly() {
    let _w = common::watchdog("stress_receivers_and_watchers_count_exactly");
    let n = common::scaled(20_000, 100);
    on_thread_and_fibers_with(n, |n| {
        for (cap, name) in flavours() {
            let (tx, rx) = channel::<usize>(cap);
            let seen: Arc<Vec<AtomicBool>> = Arc::new((0..2 * n).map(|_| false.into()).collect());
            let by_watchers = Arc::new(AtomicUsize::new(0));
            let mark = |seen: &[AtomicBool], v: usize| {
                assert!(!seen[v].swap(true, Relaxed), "{v} received twice");
            };
            // Two plain producers and two send-watchers, n/2 items each.
            let mut producers = Vec::new();
            for p in 0..4 {
                let tx = tx.clone();
                producers.push(party(move || {
                    let items = (p * n / 2)..((p + 1) * n / 2);
                    if p < 2 {
                        items.for_each(|i| tx.send(i).unwrap());
                        return;
                    }
                    let mut sel = Select::new();
                    sel.send(&tx, usize::MAX); // watched, never sent
                    for mut i in items {
                        loop {
                            sel.ready();
                            match tx.try_send(i) {
                                Ok(()) => break,
                                Err(e) => i = e.into_inner(), // raced: wait again
                            }
                        }
                    }
                }));
            }
            drop(tx);
            let mut consumers = Vec::new();
            for c in 0..4 {
                let (rx, seen, by_watchers) = (rx.clone(), seen.clone(), by_watchers.clone());
                consumers.push(party(move || {
                    if c < 2 {
                        rx.iter().for_each(|v| mark(&seen, v));
                        return;
                    }
                    let mut sel = Select::new();
                    sel.recv(&rx);
                    loop {
                        sel.ready();
                        match rx.try_recv() {
                            Ok(v) => {
                                mark(&seen, v);
                                by_watchers.fetch_add(1, Relaxed);
                            }
                            Err(chan::TryRecvError::Empty) => {} // raced: wait again
                            Err(chan::TryRecvError::Disconnected) => return,
                        }
                    }
                }));
            }
            drop(rx);
            producers.into_iter().for_each(|p| p());
            consumers.into_iter().for_each(|c| c());
            let count = seen.iter().filter(|s| s.load(Relaxed)).count();
            assert_eq!(count, 2 * n, "{name}: every item exactly once");
            common::note(&format!(
                "{name}: {} of {} items taken after a ready",
                by_watchers.load(Relaxed),
                2 * n
            ));
        }
    });
}

/// Rounds of the fairness count; each operation's share is binomial.
const ROUNDS: u64 = 12_000;

/// Operations [never ready, A, B], A and B always ready (`ready` takes nothing, so they
/// stay so): A is named about half the time, within 8 standard deviations (a false failure
/// about once in 10^15 runs). Biased, A every time.
fn count_ready_a(biased: bool) -> u64 {
    let (_idle_tx, idle) = chan::unbounded::<u8>();
    let (a_tx, a) = chan::unbounded();
    let (b_tx, b) = chan::bounded(1);
    a_tx.send(()).unwrap();
    b_tx.send(()).unwrap();
    let mut sel = if biased {
        Select::new_biased()
    } else {
        Select::new()
    };
    sel.recv(&idle);
    let ia = sel.recv(&a);
    let ib = sel.recv(&b);
    let wins = AtomicU64::new(0);
    for _ in 0..ROUNDS {
        let i = sel.ready();
        assert!(i == ia || i == ib);
        if i == ia {
            wins.fetch_add(1, Relaxed);
        }
    }
    wins.load(Relaxed)
}

#[test]
fn ready_is_uniform_among_ready_operations() {
    let _w = common::watchdog("ready_is_uniform_among_ready_operations");
    let check = |wins: u64, what: &str| {
        let n = ROUNDS as f64;
        let sd = (n * 0.25).sqrt();
        assert!(
            (wins as f64 - n / 2.0).abs() < 8.0 * sd,
            "{what}: A named {wins} of {ROUNDS} times, expected {:.0} ± {:.0}",
            n / 2.0,
            8.0 * sd
        );
    };
    check(count_ready_a(false), "thread");
    check(fibra::run(|| count_ready_a(false)), "fiber");
    assert_eq!(count_ready_a(true), ROUNDS, "biased: the first ready one");
}
