//! The epoll hooks (feature `hooks`, `RuntimeBuilder::hooks_epoll(true)`): a wait on an epoll
//! instance made in a fiber parks the fiber, honours its timeout and keeps `errno`; every
//! other instance, and every wait without the opt-in, is libc's. A blocked worker shows as a
//! hang (the watchdog aborts): the fiber that makes the event ready is pinned to the one
//! worker, started and parked before the wait.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::watchdog;

fn rt_epoll() -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(1)
        .hooks_epoll(true)
        .build()
        .unwrap()
}

/// A pipe (never managed: `pipe2` is not hooked) as (read end, write end).
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

/// An epoll instance watching `fd` for input, with `data` as its event's data.
fn epoll_on(fd: i32, data: u64) -> i32 {
    // SAFETY: plain calls; `ev` is live for the call.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(ep >= 0);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
        ep
    }
}

/// `epoll_wait` for one event: (return value, its data).
fn wait_one(ep: i32, timeout: i32) -> (i32, u64) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one live event slot.
    let n = unsafe { libc::epoll_wait(ep, &mut ev, 1, timeout) };
    (n, ev.u64)
}

fn write_byte(fd: i32) {
    // SAFETY: one byte from a live buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

fn close(fd: i32) {
    // SAFETY: an fd this test owns, closed once.
    unsafe { libc::close(fd) };
}

/// A fiber that starts now (and so stays on this worker), sleeps in fibra and then writes a
/// byte to `fd`; it is parked in its sleep when this returns.
fn writer_after_a_sleep(fd: i32) -> fibra::JoinHandle<()> {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let h = fibra::spawn(move || {
        s.store(true, SeqCst);
        fibra::sleep(Duration::from_millis(5));
        write_byte(fd);
    });
    while !started.load(SeqCst) {
        fibra::yield_now();
    }
    h
}

#[test]
fn a_wait_parks_only_its_fiber_also_through_a_dup() {
    let _w = watchdog("a_wait_parks_only_its_fiber_also_through_a_dup");
    rt_epoll().run(|| {
        let (r, w) = pipe();
        let ep = epoll_on(r, 7);
        // SAFETY: dup of an fd we own.
        let ep2 = unsafe { libc::dup(ep) };
        assert!(ep2 >= 0);
        for (round, fd) in [ep, ep2].into_iter().enumerate() {
            let writer = writer_after_a_sleep(w);
            // Blocking the one worker here would keep the writer from ever running.
            assert_eq!(wait_one(fd, -1), (1, 7), "round {round}");
            writer.join().unwrap();
            let mut b = [0u8; 1];
            // SAFETY: one byte into a live buffer; the pipe holds one.
            assert_eq!(unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) }, 1);
        }
        // Drained: nothing ready, a zero timeout returns at once.
        assert_eq!(wait_one(ep2, 0).0, 0);
        for fd in [ep2, ep, r, w] {
            close(fd);
        }
    });
}

#[test]
fn the_timeout_is_kept_and_so_is_errno() {
    let _w = watchdog("the_timeout_is_kept_and_so_is_errno");
    rt_epoll().run(|| {
        let (r, w) = pipe();
        let ep = epoll_on(r, 1);
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = fibra::spawn(move || loop {
            fibra::sleep(Duration::from_millis(1));
            t.fetch_add(1, SeqCst);
        });
        fibra::yield_now(); // the ticker starts (pinned here) and parks
                            // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOTCONN };
        let start = Instant::now();
        assert_eq!(wait_one(ep, 30).0, 0, "nothing was ready");
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "returned early"
        );
        // SAFETY: as above.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::ENOTCONN);
        assert!(
            ticks.load(SeqCst) > 0,
            "the ticker did not run during the wait"
        );
        ticker.cancel();
        for fd in [ep, r, w] {
            close(fd);
        }
    });
}

#[test]
fn other_instances_and_the_default_go_to_libc() {
    let _w = watchdog("other_instances_and_the_default_go_to_libc");
    // A plain thread.
    let (r, w) = pipe();
    let ep = epoll_on(r, 3);
    assert_eq!(wait_one(ep, 1).0, 0);
    write_byte(w);
    assert_eq!(wait_one(ep, -1), (1, 3));
    // An instance made outside a fiber, waited on in one: libc's (it is ready, so no block).
    rt_epoll().run(|| assert_eq!(wait_one(ep, -1), (1, 3)));
    // Without the opt-in an instance made in a fiber is libc's: a ready one answers, an
    // empty one times out (blocking the worker for 1 ms).
    let got = fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(move || {
            let (ep2, ep3) = (epoll_on(r, 4), epoll_on(w, 5));
            let got = (wait_one(ep2, -1), wait_one(ep3, 1).0);
            close(ep2);
            close(ep3);
            got
        });
    assert_eq!(got, ((1, 4), 0));
    for fd in [ep, r, w] {
        close(fd);
    }
}
