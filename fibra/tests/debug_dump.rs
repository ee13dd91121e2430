//! `fibra::debug::dump`: fibers parked in each wait reason are listed with the right reason
//! and a backtrace through the function that waits; many identical fibers group.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::debug::{Dump, FiberDump, FiberState, Trace};
use fibra::ParkReason;

const FOREVER: Duration = Duration::from_secs(3600);

// Each waiting function does something after its wait (`black_box`), so the optimiser cannot
// turn the wait into a tail call: a tail-called frame is gone from every backtrace.

#[inline(never)]
fn waits_in_sleep() {
    fibra::sleep(FOREVER);
    std::hint::black_box(());
}

#[inline(never)]
fn waits_in_user_park(stop: &AtomicBool) {
    while !stop.load(Acquire) {
        fibra::park();
    }
    std::hint::black_box(());
}

#[inline(never)]
fn waits_in_join(h: fibra::JoinHandle<()>) {
    h.join().unwrap();
    std::hint::black_box(());
}

#[inline(never)]
fn waits_in_mutex(m: &fibra::sync::Mutex<u32>) {
    *m.lock() += 1;
    std::hint::black_box(());
}

#[inline(never)]
fn waits_in_recv(rx: &fibra::chan::Receiver<u32>) {
    std::hint::black_box(rx.recv()).ok();
}

fn named(d: &Dump, name: &str) -> Option<FiberDump> {
    d.fibers
        .iter()
        .find(|f| f.name.as_deref() == Some(name))
        .cloned()
}

fn frames_mention(f: &FiberDump, func: &str) -> bool {
    match &f.backtrace {
        Trace::Frames(fr) => fr.iter().any(|fr| fr.function.contains(func)),
        Trace::Unavailable(_) => false,
    }
}

/// Dumps until every fiber in `names` is parked (they park within microseconds; the loop
/// only orders the test without a sleep).
fn dump_when_parked(names: &[&str]) -> Dump {
    loop {
        let d = fibra::debug::dump();
        if names
            .iter()
            .all(|n| named(&d, n).is_some_and(|f| f.state == FiberState::Parked))
        {
            return d;
        }
        fibra::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dump_lists_each_wait_reason_with_its_backtrace() {
    let _w = common::watchdog("dump_lists_each_wait_reason_with_its_backtrace");
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            fibra::Builder::new().name(name).spawn(f).unwrap()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let m = Arc::new(fibra::sync::Mutex::new(0));
        let (tx, rx) = fibra::chan::unbounded::<u32>();
        let held = m.lock();

        let sleeper = spawn("sleeper", Box::new(waits_in_sleep));
        let s2 = stop.clone();
        let parker = spawn("parker", Box::new(move || waits_in_user_park(&s2)));
        let s3 = stop.clone();
        let target = spawn("join-target", Box::new(move || waits_in_user_park(&s3)));
        let target_fiber = target.fiber().clone();
        let joiner = spawn("joiner", Box::new(move || waits_in_join(target)));
        let m2 = m.clone();
        let locker = spawn("locker", Box::new(move || waits_in_mutex(&m2)));
        let receiver = spawn("receiver", Box::new(move || waits_in_recv(&rx)));

        let names = ["sleeper", "parker", "joiner", "locker", "receiver"];
        let d = dump_when_parked(&names);
        println!("{d}");
        let expect = [
            ("sleeper", ParkReason::Sleep, "waits_in_sleep"),
            ("parker", ParkReason::User, "waits_in_user_park"),
            ("join-target", ParkReason::User, "waits_in_user_park"),
            ("joiner", ParkReason::Join, "waits_in_join"),
            ("locker", ParkReason::MutexLock, "waits_in_mutex"),
            ("receiver", ParkReason::ChanRecv, "waits_in_recv"),
        ];
        for (name, reason, func) in expect {
            let f = named(&d, name).unwrap_or_else(|| panic!("{name} missing from\n{d}"));
            assert_eq!(f.state, FiberState::Parked, "{name}");
            assert_eq!(f.reason, Some(reason), "{name}");
            assert!(f.home.is_some(), "{name}");
            assert!(f.spawned_at.contains("debug_dump.rs"), "{}", f.spawned_at);
            assert!(
                frames_mention(&f, func),
                "{name}: no {func} in {:?}",
                f.backtrace
            );
        }
        let locker_info = named(&d, "locker").unwrap();
        let wait = locker_info.waits_for.expect("the locker records its mutex");
        assert_eq!(wait.holder, Some(fibra::current().id().as_u64()));
        assert_eq!(locker_info.channel, None);
        // The receiver records the channel it waits on, and the locker's group line names it.
        let receiver_info = named(&d, "receiver").unwrap();
        let chan = receiver_info
            .channel
            .expect("the receiver records its channel");
        assert!(d.to_string().contains(&format!("Chan@{chan:#x}")), "{d}");
        assert_eq!(receiver_info.waits_for, None);
        // The dumping fiber itself is running, with its own backtrace.
        let me = named(&d, "main").unwrap();
        assert!(
            matches!(me.state, FiberState::Running { .. }),
            "{:?}",
            me.state
        );
        assert!(
            frames_mention(&me, "dump_lists_each_wait_reason"),
            "{:?}",
            me.backtrace
        );
        assert!(d.deadlocks.is_empty());

        // The capture wake-ups were invisible: everyone still waits, and wakes normally.
        let d2 = fibra::debug::dump();
        for name in names {
            let f = named(&d2, name).unwrap();
            assert_eq!(f.state, FiberState::Parked, "{name} after a second dump");
        }
        stop.store(true, Release);
        parker.fiber().unpark();
        target_fiber.unpark();
        drop(held);
        tx.send(1).unwrap();
        parker.join().unwrap();
        joiner.join().unwrap();
        locker.join().unwrap();
        receiver.join().unwrap();
        assert_eq!(*m.lock(), 1);
        drop(sleeper); // unwound at the session's end
    });
}

#[test]
fn parked_since_survives_a_capture_wake_up() {
    let _w = common::watchdog("parked_since_survives_a_capture_wake_up");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let h = fibra::Builder::new()
            .name("sleeper")
            .spawn(waits_in_sleep)
            .unwrap();
        let first = dump_when_parked(&["sleeper"]);
        let since = named(&first, "sleeper").unwrap().parked_for.unwrap();
        fibra::sleep(Duration::from_millis(30));
        let second = fibra::debug::dump();
        let later = named(&second, "sleeper").unwrap().parked_for.unwrap();
        // A re-park would have restarted the clock at ~0 ms after the first dump's wake-up.
        assert!(
            later >= since + Duration::from_millis(25),
            "{since:?} then {later:?}"
        );
        drop(h);
    });
}

#[test]
fn a_busy_worker_cannot_answer_and_is_reported() {
    let _w = common::watchdog("a_busy_worker_cannot_answer_and_is_reported");
    let rt = fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .build()
        .unwrap();
    let rt2 = rt.clone();
    rt.run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let parked = fibra::Builder::new()
            .name("parked")
            .spawn(move || waits_in_user_park(&s2))
            .unwrap();
        let _ = dump_when_parked(&["parked"]);
        // The only worker spins inside this fiber until the dump from a thread is done.
        let dumped = Arc::new(AtomicBool::new(false));
        let d2 = dumped.clone();
        let rt2 = rt2.clone();
        let t = std::thread::spawn(move || {
            // This runtime's sessions only: other tests' dumps would not touch ours, but a
            // process-wide dump from here would wake (and so unpark) their fibers.
            let d = rt2.dump_with_timeout(Duration::from_millis(50));
            d2.store(true, Release);
            d
        });
        while !dumped.load(Acquire) {
            std::hint::spin_loop();
        }
        let d = t.join().unwrap();
        let p = named(&d, "parked").unwrap();
        assert_eq!(p.state, FiberState::Parked);
        assert!(
            matches!(&p.backtrace, Trace::Unavailable(why) if why.contains("worker busy")),
            "{:?}",
            p.backtrace
        );
        assert!(d.to_string().contains("backtrace unavailable: worker busy"));
        stop.store(true, Release);
        parked.fiber().unpark();
        parked.join().unwrap();
    });
}

#[test]
fn ten_thousand_parked_fibers_group_into_one_entry() {
    let _w = common::watchdog("ten_thousand_parked_fibers_group_into_one_entry");
    const N: usize = 10_000;
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let (s, n) = (stop.clone(), started.clone());
                fibra::spawn(move || {
                    n.fetch_add(1, Relaxed);
                    waits_in_user_park(&s)
                })
            })
            .collect();
        while started.load(Relaxed) < N {
            fibra::sleep(Duration::from_millis(1));
        }
        let d = loop {
            // A generous capture timeout: on a loaded machine 10,000 captures may take a while,
            // and a timed-out one would split the group.
            let d = fibra::debug::dump_with_timeout(Duration::from_secs(30));
            let parked = d
                .fibers
                .iter()
                .filter(|f| f.state == FiberState::Parked)
                .count();
            if parked == N {
                break d;
            }
            fibra::sleep(Duration::from_millis(1));
        };
        let text = d.to_string();
        let entry = format!("{N} fibers [User");
        assert_eq!(
            text.matches(&entry).count(),
            1,
            "{}",
            &text[..2000.min(text.len())]
        );
        assert!(text.contains("waits_in_user_park"));
        println!("{}", &text[..3000.min(text.len())]);
        stop.store(true, Release);
        for h in &hs {
            h.fiber().unpark();
        }
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
}
