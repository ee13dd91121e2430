//! Shutdown with a fiber parked in `fibra::run_blocking` whose closure waits for another fiber.
//!
//! Fiber A runs `fibra::run_blocking(|| rx.recv())`; fiber B holds the sender and sleeps; the root
//! returns. The closure ends only when B is unwound (dropping the sender), so shutdown must
//! unwind B before it waits for A's closure: unwinding A first blocks A's worker in the
//! excursion's guard, and on one worker B can then never be unwound (a hang, caught by the
//! watchdog). Both spawn orders, one and two workers, a std and a fibra channel. On two
//! workers the fibers may land on different workers (where the old order happened to work);
//! the one-worker cases are the deterministic regressions.

use std::sync::atomic::{AtomicU8, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::{ParkReason, Runtime};

mod common;
use common::watchdog;

/// What A's closure saw: not finished, the sender gone (the expected end), or a value.
const PENDING: u8 = 0;
const DISCONNECTED: u8 = 1;
const GOT_VALUE: u8 = 2;

/// A fiber's body.
type Body = Box<dyn FnOnce() + Send>;

#[derive(Clone, Copy)]
enum Chan {
    Std,
    Fibra,
}

fn scenario(test: &'static str, workers: usize, a_first: bool, chan: Chan) {
    let _w = watchdog(test);
    let seen = Arc::new(AtomicU8::new(PENDING));
    let rt = Runtime::builder().workers(workers).build().unwrap();
    let s2 = seen.clone();
    rt.run(move || {
        // A's body and B's body, over either kind of channel.
        let (a_body, b_body): (Body, Body) = match chan {
            Chan::Std => {
                let (tx, rx) = std::sync::mpsc::channel::<u32>();
                (
                    Box::new(move || {
                        fibra::run_blocking(move || {
                            let r = rx.recv();
                            s2.store(if r.is_ok() { GOT_VALUE } else { DISCONNECTED }, SeqCst);
                        })
                    }),
                    Box::new(move || {
                        let _tx = tx; // dropped when shutdown unwinds this fiber
                        fibra::sleep(Duration::from_secs(3600));
                    }),
                )
            }
            Chan::Fibra => {
                let (tx, rx) = fibra::chan::bounded::<u32>(1);
                (
                    Box::new(move || {
                        fibra::run_blocking(move || {
                            let r = rx.recv(); // on a pool thread: blocks that thread
                            s2.store(if r.is_ok() { GOT_VALUE } else { DISCONNECTED }, SeqCst);
                        })
                    }),
                    Box::new(move || {
                        let _tx = tx;
                        fibra::sleep(Duration::from_secs(3600));
                    }),
                )
            }
        };
        let (a, b) = if a_first {
            let a = fibra::spawn(a_body);
            (a, fibra::spawn(b_body))
        } else {
            let b = fibra::spawn(b_body);
            (fibra::spawn(a_body), b)
        };
        while a.fiber().park_reason() != ParkReason::Blocking
            || b.fiber().park_reason() != ParkReason::Sleep
        {
            fibra::yield_now();
        }
        // The root returns with both parked: the session ends and unwinds them.
    });
    assert_eq!(
        seen.load(SeqCst),
        DISCONNECTED,
        "A's closure did not end by B's sender being dropped"
    );
}

#[test]
fn one_worker_receiver_spawned_first() {
    scenario("one_worker_receiver_spawned_first", 1, true, Chan::Std);
}

#[test]
fn one_worker_sender_spawned_first() {
    scenario("one_worker_sender_spawned_first", 1, false, Chan::Std);
}

#[test]
fn one_worker_fibra_channel_both_orders() {
    scenario("one_worker_fibra_channel_both_orders", 1, true, Chan::Fibra);
    scenario(
        "one_worker_fibra_channel_both_orders",
        1,
        false,
        Chan::Fibra,
    );
}

#[test]
fn two_workers_both_orders() {
    scenario("two_workers_both_orders", 2, true, Chan::Std);
    scenario("two_workers_both_orders", 2, false, Chan::Std);
    scenario("two_workers_both_orders", 2, true, Chan::Fibra);
    scenario("two_workers_both_orders", 2, false, Chan::Fibra);
}
