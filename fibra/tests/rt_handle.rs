//! `fibra::Handle`: spawning into a runtime's running session from any thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;

use fibra::{Handle, JoinError, Runtime, SpawnError};

mod common;
use common::watchdog;

struct Tally(Arc<AtomicUsize>);

impl Drop for Tally {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn plain_threads_spawn_while_the_session_runs() {
    let _w = watchdog("plain_threads_spawn_while_the_session_runs");
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let total = rt.run(|| {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    let hs: Vec<_> = (0..100u64)
                        .map(|i| handle.spawn(move || t * 100 + i).unwrap())
                        .collect();
                    // Joined from the plain thread: it blocks.
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, (0..400).sum());
}

#[test]
fn between_sessions_a_handle_says_not_running_and_works_again_later() {
    let _w = watchdog("between_sessions_a_handle_says_not_running_and_works_again_later");
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle();
    let err = handle.spawn(|| ()).unwrap_err();
    assert!(matches!(err, SpawnError::NotRunning));
    assert!(err.to_string().contains("not running"), "{err}");
    for round in 0..2 {
        let h = handle.clone();
        let v = rt.run(move || {
            std::thread::spawn(move || h.spawn(move || round).unwrap().join().unwrap())
                .join()
                .unwrap()
        });
        assert_eq!(v, round);
        assert!(matches!(handle.spawn(|| ()), Err(SpawnError::NotRunning)));
    }
    // Another runtime's session is not this handle's.
    let other = Runtime::builder().workers(1).build().unwrap();
    let h = handle.clone();
    let r = other.run(move || {
        std::thread::spawn(move || h.spawn(|| ()).map(drop))
            .join()
            .unwrap()
    });
    assert!(matches!(r, Err(SpawnError::NotRunning)));
}

#[test]
fn current_inside_fibers_and_pool_threads_none_outside() {
    let _w = watchdog("current_inside_fibers_and_pool_threads_none_outside");
    assert!(Handle::try_current().is_none());
    let payload = std::panic::catch_unwind(Handle::current).unwrap_err();
    let msg = (payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("outside a fibra runtime"), "{msg}");
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let from_pool = fibra::spawn_blocking(|| Handle::try_current().is_some());
        assert!(from_pool.join().unwrap());
        let here = Handle::current();
        // From a fiber of its own session: a plain spawn.
        assert_eq!(here.spawn(|| 3).unwrap().join().unwrap(), 3);
    });
}

/// Plain threads spawn in a loop while the session ends: every spawn either gets in (its
/// fiber runs or is unwound, its `join` returns, its closure is dropped once) or is refused
/// with `ShuttingDown`/`NotRunning`. Nothing hangs, nothing leaks.
#[test]
fn spawns_racing_the_end_of_the_session_are_never_stranded() {
    let _w = watchdog("spawns_racing_the_end_of_the_session_are_never_stranded");
    for _ in 0..if cfg!(debug_assertions) { 20 } else { 100 } {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let handle = rt.handle();
        let dropped = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicBool::new(false));
        let spawner = {
            let (handle, dropped, started) = (handle.clone(), dropped.clone(), started.clone());
            std::thread::spawn(move || {
                let (mut accepted, mut refused) = (Vec::new(), 0usize);
                loop {
                    let t = Tally(dropped.clone());
                    match handle.spawn(move || drop(t)) {
                        Ok(h) => {
                            started.store(true, SeqCst);
                            accepted.push(h)
                        }
                        Err(SpawnError::ShuttingDown | SpawnError::NotRunning) => {
                            refused += 1;
                            if refused > 3 && started.load(SeqCst) {
                                break;
                            }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                accepted
            })
        };
        rt.run(|| {
            while !started.load(SeqCst) {
                fibra::yield_now();
            }
        });
        let accepted = spawner.join().unwrap();
        let n = accepted.len();
        for h in accepted {
            assert!(matches!(h.join(), Ok(()) | Err(JoinError::Cancelled)));
        }
        // Refused spawns dropped their closure too; accepted ones exactly once each.
        assert!(dropped.load(SeqCst) >= n);
    }
}
