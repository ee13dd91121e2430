//! Issue 19's API: timer channels (`after`, `at`, `tick`, `never`), `select!` syntax
//! (`default()`, `default(Instant)`, trailing commas, nested temporaries, `Deref` receivers),
//! `select_biased!`, the `Select` builder, `same_channel`, and unwind safety; each on plain
//! threads and on fibers.

use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::chan::{self, Receiver, Select, Sender};

mod common;

/// Runs `f` on a plain thread, then inside a runtime with two workers.
fn on_thread_and_fiber(f: fn()) {
    std::thread::spawn(f).join().unwrap();
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(f);
}

#[test]
fn after_delivers_its_due_time_once() {
    let _w = common::watchdog("after_delivers_its_due_time_once");
    on_thread_and_fiber(|| {
        let start = Instant::now();
        let d = Duration::from_millis(5);
        let timer = chan::after(d);
        assert_eq!(timer.capacity(), Some(1));
        let at = timer.recv().unwrap();
        assert!(at >= start + d && Instant::now() >= at);
        assert_eq!(timer.try_recv(), Err(chan::TryRecvError::Empty)); // once, never closed
        assert_eq!(
            timer.recv_timeout(Duration::from_millis(2)),
            Err(chan::RecvTimeoutError::Timeout)
        );
        let when = Instant::now() + Duration::from_millis(1);
        assert_eq!(chan::at(when).recv(), Ok(when));
    });
}

#[test]
fn a_tick_that_falls_behind_drops_ticks() {
    let _w = common::watchdog("a_tick_that_falls_behind_drops_ticks");
    on_thread_and_fiber(|| {
        let period = Duration::from_millis(100);
        let ticks = chan::tick(period);
        let first = ticks.recv().unwrap();
        let first_taken = Instant::now();
        fibra::sleep(period * 4); // four periods late
        let late = ticks.try_recv().unwrap();
        // Due a period after the first was taken (between its due time and our reading).
        assert!(late >= first + period && late <= first_taken + period);
        // The missed ticks were dropped: the next is a whole period after the late receive.
        let taken = Instant::now();
        let next = ticks.recv().unwrap();
        assert!(next >= taken, "no burst of missed ticks");
    });
}

#[test]
fn never_is_never_ready_and_never_closed() {
    let _w = common::watchdog("never_is_never_ready_and_never_closed");
    on_thread_and_fiber(|| {
        let rx = chan::never::<String>();
        assert_eq!(rx.try_recv(), Err(chan::TryRecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(chan::RecvTimeoutError::Timeout)
        );
    });
}

/// Many receivers waiting on one `tick`: each tick goes to one of them, nobody hangs.
#[test]
fn a_tick_shared_by_waiting_fibers() {
    let _w = common::watchdog("a_tick_shared_by_waiting_fibers");
    fibra::run(|| {
        let ticks = chan::tick(Duration::from_millis(1));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let t = ticks.clone();
                fibra::spawn(move || (0..5).filter(|_| t.recv().is_ok()).count())
            })
            .collect();
        let got: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(got, 20);
    });
}

#[test]
fn timer_channels_in_select_and_async() {
    let _w = common::watchdog("timer_channels_in_select_and_async");
    on_thread_and_fiber(|| {
        let (_tx, rx) = chan::unbounded::<u8>();
        let timeout = chan::after(Duration::from_millis(3));
        let got = fibra::select! {
            recv(rx) -> _ => "message",
            recv(timeout) -> at => { assert!(at.is_ok()); "timer" }
        };
        assert_eq!(got, "timer");
        // Ticks in a select loop, beside a channel that stays empty.
        let ticks = chan::tick(Duration::from_millis(1));
        for _ in 0..3 {
            fibra::select! {
                recv(rx) -> _ => unreachable!(),
                recv(ticks) -> t => assert!(t.is_ok()),
            }
        }
    });
    fibra::run(|| {
        let t = chan::after(Duration::from_millis(2));
        assert!(fibra::await_future(t.recv_async()).is_ok());
        let ticks = chan::tick(Duration::from_millis(1));
        for _ in 0..3 {
            assert!(fibra::await_future(ticks.recv_async()).is_ok());
        }
    });
}

/// Dropping unfired timers costs no thread, fiber or timer: a loop of them stays cheap.
#[test]
fn unfired_timers_cost_nothing_when_dropped() {
    let _w = common::watchdog("unfired_timers_cost_nothing_when_dropped");
    fibra::run(|| {
        let (tx, rx) = chan::unbounded();
        for i in 0..10_000 {
            tx.send(i).unwrap();
            fibra::select! {
                recv(rx) -> v => assert_eq!(v, Ok(i)),
                recv(chan::after(Duration::from_secs(3600))) -> _ => unreachable!(),
            }
        }
        assert_eq!(
            fibra::debug::metrics().unwrap().live_fibers,
            1,
            "no helper fibers"
        );
    });
}

#[test]
fn select_syntax() {
    let _w = common::watchdog("select_syntax");
    on_thread_and_fiber(|| {
        let (tx, rx) = chan::unbounded::<i32>();
        // `default()` with empty parentheses, and a trailing comma.
        let v = fibra::select! { recv(rx) -> _ => 1, default() => 2, };
        assert_eq!(v, 2);
        // A deadline arm.
        let deadline = Instant::now() + Duration::from_millis(2);
        let v = fibra::select! { recv(rx) -> _ => 1, default(deadline) => 3 };
        assert_eq!(v, 3);
        assert!(Instant::now() >= deadline);
        // Nested temporaries: an optional receiver switched off with `never()`.
        let off: Option<&Receiver<i32>> = std::hint::black_box(None);
        let on = std::hint::black_box(Some(&rx));
        tx.send(4).unwrap();
        let v = fibra::select! {
            recv(off.unwrap_or(&chan::never())) -> _ => unreachable!(),
            recv(on.unwrap_or(&chan::never())) -> v => v.unwrap(),
        };
        assert_eq!(v, 4);
        // Receivers and senders reached through Deref.
        let boxed: Box<Receiver<i32>> = Box::new(rx.clone());
        let shared: Arc<Sender<i32>> = Arc::new(tx.clone());
        fibra::select! { send(shared, 5) -> r => r.unwrap(), }
        let v = fibra::select! { recv(boxed) -> v => v.unwrap(), default => 0 };
        assert_eq!(v, 5);
        // Block bodies without commas between arms.
        tx.send(6).unwrap();
        let got;
        fibra::select! {
            recv(rx) -> v => { got = v.unwrap() }
            default => { got = -1 }
        }
        assert_eq!(got, 6);
    });
}

#[test]
fn select_biased_prefers_the_first_ready_arm() {
    let _w = common::watchdog("select_biased_prefers_the_first_ready_arm");
    on_thread_and_fiber(|| {
        let (a_tx, a) = chan::unbounded();
        let (b_tx, b) = chan::unbounded();
        for i in 0..100 {
            a_tx.send(i).unwrap();
            b_tx.send(i).unwrap();
        }
        for i in 0..100 {
            fibra::select_biased! {
                recv(a) -> v => assert_eq!(v, Ok(i)),
                recv(b) -> _ => unreachable!(),
            }
        }
        assert_eq!(b.len(), 100);
    });
}

#[test]
fn select_builder_over_a_dynamic_number_of_channels() {
    let _w = common::watchdog("select_builder_over_a_dynamic_number_of_channels");
    on_thread_and_fiber(|| {
        let chans: Vec<_> = (0..20).map(|_| chan::bounded::<usize>(1)).collect();
        let senders: Vec<_> = chans.iter().map(|(tx, _)| tx.clone()).collect();
        let feeder = std::thread::spawn(move || {
            for (i, tx) in senders.iter().enumerate().rev() {
                tx.send(i).unwrap();
            }
        });
        let mut sel = Select::new();
        for (_, rx) in &chans {
            sel.recv(rx);
        }
        let mut seen = [false; 20];
        for _ in 0..20 {
            let op = sel.select(); // the same Select, reused
            let i = op.index();
            assert_eq!(op.recv(&chans[i].1), Ok(i));
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
        feeder.join().unwrap();
        assert!(sel.try_select().is_err());
        assert!(sel.select_timeout(Duration::from_millis(1)).is_err());
    });
}

#[test]
fn select_builder_send_operations() {
    let _w = common::watchdog("select_builder_send_operations");
    on_thread_and_fiber(|| {
        let (full_tx, full_rx) = chan::bounded(1);
        full_tx.send("old").unwrap();
        let (tx, rx) = chan::bounded(1);
        let mut sel = Select::new();
        let blocked = sel.send(&full_tx, "stuck");
        let open = sel.send(&tx, "sent");
        let op = sel.select();
        assert_eq!(op.index(), open);
        op.send(&tx).unwrap();
        assert_eq!(rx.recv(), Ok("sent"));
        // The spent operation is never chosen again; the other still holds its value.
        assert_eq!(full_rx.recv(), Ok("old"));
        let op = sel.select();
        assert_eq!(op.index(), blocked);
        op.send(&full_tx).unwrap();
        assert_eq!(full_rx.recv(), Ok("stuck"));
        assert!(sel.try_select().is_err());
    });
}

#[test]
#[should_panic(expected = "not the channel of operation")]
fn a_selected_operation_checks_its_channel() {
    let (tx, rx) = chan::unbounded::<u8>();
    let (_tx2, other) = chan::unbounded::<u8>();
    tx.send(1).unwrap();
    let mut sel = Select::new();
    sel.recv(&rx);
    let _ = sel.select().recv(&other);
}

#[test]
fn same_channel_and_unwind_safety() {
    fn unwind_safe<T: UnwindSafe + RefUnwindSafe>(_: &T) {}
    let (tx, rx) = chan::unbounded::<Vec<u8>>();
    let (tx2, rx2) = chan::unbounded::<Vec<u8>>();
    unwind_safe(&tx);
    unwind_safe(&rx);
    assert!(tx.same_channel(&tx.clone()) && !tx.same_channel(&tx2));
    assert!(rx.same_channel(&rx.clone()) && !rx.same_channel(&rx2));
    // A panic caught around a channel leaves it usable.
    let r = std::panic::catch_unwind(|| {
        tx.send(vec![1]).unwrap();
        panic!("after a send");
    });
    assert!(r.is_err());
    assert_eq!(rx.recv(), Ok(vec![1]));
}
