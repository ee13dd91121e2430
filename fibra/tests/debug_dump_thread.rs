//! A dump from a plain thread: `fibra::debug::dump()` sees every running session of the
//! process, `Runtime::dump()` its own. (Its own test binary: a process-wide dump wakes the
//! parked fibers of every test running beside it.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::debug::{FiberState, Trace};
use fibra::ParkReason;

#[inline(never)]
fn waits_in_user_park(stop: &AtomicBool) {
    while !stop.load(Acquire) {
        fibra::park();
    }
}

#[test]
fn dump_from_a_plain_thread_sees_the_running_session() {
    let _w = common::watchdog("dump_from_a_plain_thread_sees_the_running_session");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    let rt2 = rt.clone();
    rt.run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = fibra::Builder::new()
            .name("parker")
            .spawn(move || waits_in_user_park(&s2))
            .unwrap();
        while h.fiber().park_reason() != ParkReason::User {
            fibra::yield_now();
        }
        let id = h.fiber().id().as_u64();
        let t = std::thread::spawn(move || (rt2.dump(), fibra::debug::dump()));
        while !t.is_finished() {
            fibra::sleep(Duration::from_millis(1)); // the worker stays free to answer
        }
        let (own, any) = t.join().unwrap();
        for d in [own, any] {
            let p = d.fibers.iter().find(|f| f.id == id).unwrap();
            assert_eq!(p.state, FiberState::Parked);
            assert_eq!(p.reason, Some(ParkReason::User));
            assert_eq!(p.name.as_deref(), Some("parker"));
            let Trace::Frames(frames) = &p.backtrace else {
                panic!("{:?}", p.backtrace)
            };
            assert!(frames
                .iter()
                .any(|f| f.function.contains("waits_in_user_park")));
        }
        stop.store(true, Release);
        h.fiber().unpark();
        h.join().unwrap();
    });
    assert_eq!(rt.dump().sessions, 0);
}
