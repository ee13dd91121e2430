//! A fiber's packet (its closure, then its result) lives in the header when it is small and in
//! a box when it is not (`fiber/join.rs`): both kinds run, hand their result to `join`, and
//! drop what they hold exactly once, whether the fiber is joined, detached or never runs.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use fibra::{JoinError, Runtime};

mod common;
use common::watchdog;

/// Counts its drops; `PAD` words make the packet small (inline) or big (boxed).
struct Tally<const PAD: usize> {
    drops: Arc<AtomicUsize>,
    pad: [u64; PAD],
}

impl<const PAD: usize> Tally<PAD> {
    fn new(drops: &Arc<AtomicUsize>, word: u64) -> Self {
        Tally {
            drops: drops.clone(),
            pad: [word; PAD],
        }
    }
}

impl<const PAD: usize> Drop for Tally<PAD> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// Joined, detached and cancelled-before-its-first-run fibers carrying a `Tally<PAD>`.
fn each_fate<const PAD: usize>() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        // Joined: the closure's value comes back as the result.
        let t = Tally::<PAD>::new(&drops, 7);
        let back = fibra::spawn(move || t).join().unwrap();
        assert_eq!(back.pad, [7; PAD]);
        drop(back);
        assert_eq!(drops.load(SeqCst), 1);
        // Detached: the fiber's side drops the result nobody takes.
        let t = Tally::<PAD>::new(&drops, 8);
        let (tx, rx) = fibra::chan::bounded(1);
        drop(fibra::spawn(move || {
            tx.send(t.pad[0]).unwrap();
            t
        }));
        assert_eq!(rx.recv().unwrap(), 8);
        // Cancelled before it ran (one worker: it cannot have started): its closure is dropped.
        let t = Tally::<PAD>::new(&drops, 9);
        let h = fibra::spawn(move || t.pad[0]);
        h.cancel();
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    });
    assert_eq!(drops.load(SeqCst), 3, "each value dropped exactly once");
}

#[test]
fn inline_packets_run_join_and_drop_once() {
    let _w = watchdog("inline_packets_run_join_and_drop_once");
    each_fate::<2>();
}

#[test]
fn boxed_packets_run_join_and_drop_once() {
    let _w = watchdog("boxed_packets_run_join_and_drop_once");
    each_fate::<32>();
}
