//! `fibra::Sleep`: the timer future, on a worker's timers and off them.

mod common;

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use fibra::Sleep;

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder().workers(workers).build().unwrap()
}

/// A waker of another executor's kind wrapping the fiber's: the timer must wake it from the
/// scheduler (not from a running fiber), and the fiber it wakes must then run even though
/// nothing else is runnable on its only worker.
struct Proxy(Waker);

impl Wake for Proxy {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }
}

fn with_proxy<F: Future + Unpin>(mut fut: F) -> F::Output {
    fibra::await_future(std::future::poll_fn(move |cx| {
        let proxy = Waker::from(Arc::new(Proxy(cx.waker().clone())));
        Pin::new(&mut fut).poll(&mut Context::from_waker(&proxy))
    }))
}

#[test]
fn a_sleep_wakes_a_foreign_waker_on_an_idle_worker() {
    let _w = common::watchdog("a_sleep_wakes_a_foreign_waker_on_an_idle_worker");
    rt(1).run(|| {
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_millis(1);
            with_proxy(Sleep::until(deadline));
            assert!(Instant::now() >= deadline);
        }
    });
}

#[test]
fn reset_moves_the_deadline_both_ways() {
    let _w = common::watchdog("reset_moves_the_deadline_both_ways");
    rt(1).run(|| {
        // Armed for an hour, then pulled in while pending: the earlier deadline wakes it.
        let mut s = Sleep::after(Duration::from_secs(3600));
        let mut polled = false;
        fibra::await_future(std::future::poll_fn(|cx| {
            if !polled {
                polled = true;
                assert!(Pin::new(&mut s).poll(cx).is_pending());
                s.reset(Instant::now() + Duration::from_millis(2));
                return Poll::Pending; // no further poll until the timer wakes us
            }
            Pin::new(&mut s).poll(cx)
        }));
        assert!(s.is_elapsed());
        // Completed, then pushed out: it waits again.
        let later = Instant::now() + Duration::from_millis(3);
        s.reset(later);
        assert!(!s.is_elapsed());
        fibra::await_future(&mut s);
        assert!(Instant::now() >= later);
    });
}

/// Of two sleeps polled together, the earlier completes first; dropping the other disarms
/// it (its stale entry wakes nobody).
#[test]
fn the_earlier_of_two_sleeps_wins() {
    let _w = common::watchdog("the_earlier_of_two_sleeps_wins");
    rt(2).run(|| {
        let mut short = pin!(Sleep::after(Duration::from_millis(2)));
        let mut long = pin!(Sleep::after(Duration::from_secs(3600)));
        let winner = fibra::await_future(std::future::poll_fn(|cx| {
            if long.as_mut().poll(cx).is_ready() {
                return Poll::Ready("long");
            }
            short.as_mut().poll(cx).map(|()| "short")
        }));
        assert_eq!(winner, "short");
    });
}

/// Polled on a plain thread, a `Sleep` is woken by a helper thread.
#[test]
fn a_sleep_polled_off_the_runtime_completes() {
    let _w = common::watchdog("a_sleep_polled_off_the_runtime_completes");
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let deadline = Instant::now() + Duration::from_millis(2);
    let mut s = pin!(Sleep::until(deadline));
    while s
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending()
    {
        std::thread::park();
    }
    assert!(Instant::now() >= deadline);
}
