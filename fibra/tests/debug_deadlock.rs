//! `fibra::debug::dump` reports fibers that wait for each other's mutexes as a cycle.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::debug::FiberState;
use fibra::sync::Mutex;

#[test]
fn two_fiber_mutex_deadlock_is_reported_as_a_cycle() {
    let _w = common::watchdog("two_fiber_mutex_deadlock_is_reported_as_a_cycle");
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let a = Arc::new(Mutex::new(()));
        let b = Arc::new(Mutex::new(()));
        let holding = Arc::new(AtomicUsize::new(0));
        // Each takes one lock, waits until the other holds its own, then takes the other's.
        let cross = |first: Arc<Mutex<()>>, second: Arc<Mutex<()>>, name: &str| {
            let holding = holding.clone();
            fibra::Builder::new()
                .name(name)
                .spawn(move || {
                    let _g1 = first.lock();
                    holding.fetch_add(1, AcqRel);
                    while holding.load(Acquire) < 2 {
                        fibra::yield_now();
                    }
                    let _g2 = second.lock(); // never returns
                })
                .unwrap()
        };
        let f1 = cross(a.clone(), b.clone(), "first");
        let f2 = cross(b.clone(), a.clone(), "second");
        let (id1, id2) = (f1.fiber().id().as_u64(), f2.fiber().id().as_u64());
        let d = loop {
            let d = fibra::debug::dump();
            if !d.deadlocks.is_empty() {
                break d;
            }
            fibra::sleep(Duration::from_millis(1));
        };
        println!("{d}");
        assert_eq!(d.deadlocks.len(), 1, "{d}");
        let cycle = &d.deadlocks[0].links;
        assert_eq!(cycle.len(), 2);
        let (lo, hi) = (id1.min(id2), id1.max(id2));
        assert_eq!((cycle[0].fiber, cycle[0].held_by), (lo, hi));
        assert_eq!((cycle[1].fiber, cycle[1].held_by), (hi, lo));
        let addr = |m: &Arc<Mutex<()>>| Arc::as_ptr(m) as usize;
        let (wait1, wait2) = if lo == id1 {
            (addr(&b), addr(&a))
        } else {
            (addr(&a), addr(&b))
        };
        // The report names the mutex by the address of its lock word, inside the `Mutex`.
        let near = |x: usize, m: usize| x >= m && x < m + std::mem::size_of::<Mutex<()>>();
        assert!(
            near(cycle[0].mutex, wait1),
            "{:#x} vs {wait1:#x}",
            cycle[0].mutex
        );
        assert!(
            near(cycle[1].mutex, wait2),
            "{:#x} vs {wait2:#x}",
            cycle[1].mutex
        );
        let line = d.deadlocks[0].to_string();
        assert!(
            line.starts_with(&format!("fiber {lo} waits for Mutex@0x"))
                && line.contains(&format!("held by fiber {hi}, which waits for Mutex@0x"))
                && line.ends_with(&format!("held by fiber {lo}")),
            "{line}"
        );
        assert!(d.to_string().contains("DEADLOCK: fiber"));
        for f in [&f1, &f2] {
            let info = d
                .fibers
                .iter()
                .find(|x| x.id == f.fiber().id().as_u64())
                .unwrap();
            assert_eq!(info.state, FiberState::Parked);
        }
        // The session's end unwinds both (shutdown claims parked fibers).
        drop((f1, f2));
    });
}

#[test]
fn a_plain_wait_for_a_held_mutex_is_not_a_cycle() {
    let _w = common::watchdog("a_plain_wait_for_a_held_mutex_is_not_a_cycle");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let m2 = m.clone();
        let h = fibra::spawn(move || *m2.lock() += 1);
        let d = loop {
            let d = fibra::debug::dump();
            if d.fibers.iter().any(|f| f.waits_for.is_some()) {
                break d;
            }
            fibra::sleep(Duration::from_millis(1));
        };
        assert!(d.deadlocks.is_empty(), "{d}");
        drop(g);
        h.join().unwrap();
        assert_eq!(*m.lock(), 1);
    });
}
