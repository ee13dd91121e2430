//! Where a new fiber starts when its spawning worker carries more than its share.
//!
//! A started fiber never leaves its home worker (ARCHITECTURE.md §4), so where fibers first
//! run is the only load balancing there is. Stealing spreads bursts (`steal.rs`), but not
//! fibers spawned one at a time that each start at once: a server's accept loop spawns a
//! connection's fiber, parks in `accept`, and its worker runs the new fiber microseconds
//! later, before any idle worker could see it. Measured on `examples/http_hello` under `wrk`
//! with 2 workers: 101/0, 79/22 and 169/832 connections per worker (a round-robin test build
//! took p99 at 1,000 connections from 40.6 to 28.6 ms, 4 interleaved runs each).
//!
//! So each worker counts the started fibers it is home to (`Homed`), and a worker that spawns
//! while it is home to at least [`SPREAD_AT`] more than the least loaded configured worker
//! sends the new fiber to that worker's inbox instead of its own ring: it starts there and
//! stays. Small groups (a producer/consumer set, a fan-out that is joined at once) stay
//! together, since most of them have not started when the next one is spawned; long-lived
//! fibers started one by one even out to within `SPREAD_AT`.
//!
//! A fiber in an inbox cannot be stolen, so a worker that may be stuck in one long run is
//! never chosen twice in a row: it must have started a run since it was last sent one. A
//! worker stuck in one run therefore holds back at most one new fiber per spawning worker,
//! as it holds back the fibers woken for it (`monitor.rs`), until its run ends; the monitor
//! names the fiber that keeps it.
//!
//! # The `spread` hint
//! The rule above cannot see a *burst*: an accept loop that takes 10 or 30 connections at once
//! spawns all their fibers before any has started, so no worker is home to more than the
//! others yet; their worker is never slow to start them, so nothing is stolen either. They
//! all start next to the accept loop, and stay (`wrk -c10` and `-c30` on `http_hello`: one
//! worker busy, the other idle). [`Builder::spread`](crate::Builder::spread) asks for the
//! least loaded worker instead: the fewest started fibers plus the fibers this worker has sent
//! it that have not started yet, the spawning worker winning ties. A worker that starts none of
//! what it was sent is sent at most [`SPREAD_BURST`] more (it may be stuck in one run).
//!
//! Measured against the steal policy alone (`http_hello` under `wrk -t2`, 2 workers, 5
//! interleaved 3 s runs each): at 1,000 connections p99 35.5 ms vs 44.9 (req/s 52.5k vs
//! 51.5k); at 100 connections, which `wrk` opens in one burst that stealing spreads, no
//! difference (p99 7.79 vs 7.42 ms, req/s 63.8k vs 65.5k). Spawn and churn: 1.02× wall time.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::WorkerSlot;

/// Started fibers a worker may be home to beyond the least loaded one before it sends new
/// fibers there.
const SPREAD_AT: usize = 16;

/// Started, unfinished fibers whose home is one slot. Written by the slot's thread (a fiber is
/// adopted, and finishes, on its home); under the migration opt-in a fiber may finish
/// elsewhere, and then read-modify-writes keep the count exact.
#[repr(align(128))] // its own cache line: read by every spawning worker
#[derive(Default)]
pub(crate) struct Homed(AtomicUsize);

impl Homed {
    /// A fiber's first run made this slot its home.
    pub(crate) fn arrive(&self, migrate: bool) {
        if migrate {
            self.0.fetch_add(1, Relaxed);
        } else {
            // Only the home thread writes: a plain load and store (a `mov` pair on x86).
            self.0.store(self.0.load(Relaxed) + 1, Relaxed);
        }
    }

    /// A fiber homed here finished.
    pub(crate) fn leave(&self, migrate: bool) {
        if migrate {
            self.0.fetch_sub(1, Relaxed);
        } else {
            self.0
                .store(self.0.load(Relaxed).saturating_sub(1), Relaxed);
        }
    }

    /// A snapshot, from any thread.
    pub(crate) fn get(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// Fibers a spawning worker sends one worker under the `spread` hint while that worker
/// starts no run: enough for a burst of connections, few enough to hold back if it is stuck.
const SPREAD_BURST: u32 = 64;

/// One spawning worker's placement state. Owner-thread only.
pub(super) struct Placement {
    /// Per slot: what this worker sent it since its run counter last moved.
    sent: RefCell<Vec<Sent>>,
}

/// Fibers sent to one slot since its run counter was last seen to move.
#[derive(Clone, Copy, Default)]
struct Sent {
    /// The slot's run counter when it was last sent a fiber.
    runs: Option<u64>,
    /// Fibers sent while the counter stood there.
    since: u32,
}

impl Placement {
    pub(super) fn new(slots: usize) -> Placement {
        Placement {
            sent: RefCell::new(vec![Sent::default(); slots]),
        }
    }

    /// The configured worker (of `slots[..workers]`) a fiber spawned on worker `me` should
    /// start on instead, if any.
    pub(super) fn elsewhere(
        &self,
        me: usize,
        slots: &[WorkerSlot],
        workers: usize,
    ) -> Option<usize> {
        let mine = slots[me].homed.get();
        if mine < SPREAD_AT {
            return None; // the common case: one load of our own line
        }
        let (target, least) = (0..workers.min(slots.len()))
            .filter(|&i| i != me)
            .map(|i| (i, slots[i].homed.get()))
            .min_by_key(|&(_, homed)| homed)?;
        let runs = slots[target].signal.runs();
        self.choose(target, mine, least, runs)
    }

    /// The decision on what was read: `mine` and `least` homed fibers, the target's run
    /// counter `runs`.
    fn choose(&self, target: usize, mine: usize, least: usize, runs: u64) -> Option<usize> {
        if mine < least + SPREAD_AT {
            return None;
        }
        // No run started there since our last fiber: it may be stuck.
        self.may_send(target, runs, 1).then_some(target)
    }

    /// The `spread` hint: the configured worker a fiber spawned on worker `me` should start
    /// on, `None` for `me` itself (module docs).
    pub(super) fn spread(&self, me: usize, slots: &[WorkerSlot], workers: usize) -> Option<usize> {
        let n = workers.min(slots.len());
        self.pick(me, n, |i| slots[i].homed.get(), |i| slots[i].signal.runs())
    }

    /// `spread` on what it reads of the configured workers `0..n` and of `me` (which may be a
    /// spare, `n` or above: spares are never sent fibers): homed counts and run counters.
    fn pick(
        &self,
        me: usize,
        n: usize,
        homed: impl Fn(usize) -> usize,
        runs: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let load = |i: usize| homed(i) + self.pending(i, runs(i));
        let target = (0..n)
            .chain((me >= n).then_some(me))
            .map(|i| (i, load(i)))
            // The least loaded; ties go to `me` (no hand-over), then to the lowest index.
            .min_by_key(|&(i, l)| (l, i != me, i))
            .map_or(me, |(i, _)| i);
        if target != me && self.may_send(target, runs(target), SPREAD_BURST) {
            return Some(target);
        }
        // Kept here: counted like a sent one until this worker's counter moves.
        self.may_send(me, runs(me), u32::MAX);
        None
    }

    /// Fibers sent to `target` (or, for the spawning worker itself, kept under the hint)
    /// that have not started there yet, as far as its run counter `runs` tells: those since
    /// it last moved.
    fn pending(&self, target: usize, runs: u64) -> usize {
        let sent = self.sent.borrow()[target];
        if sent.runs == Some(runs) {
            sent.since as usize
        } else {
            0
        }
    }

    /// Records a fiber sent to `target` (run counter `runs`) unless `limit` have been sent
    /// since that counter last moved; true if it may be sent.
    fn may_send(&self, target: usize, runs: u64, limit: u32) -> bool {
        let mut sent = self.sent.borrow_mut();
        let s = &mut sent[target];
        if s.runs != Some(runs) {
            *s = Sent {
                runs: Some(runs),
                since: 0,
            };
        }
        if s.since >= limit {
            return false;
        }
        s.since += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_only_past_the_margin() {
        let p = Placement::new(2);
        assert_eq!(p.choose(1, SPREAD_AT + 3, 4, 10), None, "within the margin");
        assert_eq!(p.choose(1, SPREAD_AT + 4, 4, 10), Some(1));
    }

    #[test]
    fn never_twice_to_a_worker_that_has_not_run_since() {
        let p = Placement::new(2);
        assert_eq!(p.choose(1, 100, 0, 7), Some(1));
        assert_eq!(
            p.choose(1, 100, 0, 7),
            None,
            "still inside the same run: maybe stuck"
        );
        assert_eq!(p.choose(1, 100, 0, 8), Some(1), "it started a run since");
    }

    /// A burst of 10 hinted spawns on worker 0 (home to 2 started fibers; worker 1 idle,
    /// neither starting a run meanwhile) is shared out 4 here, 6 there: equal loads.
    #[test]
    fn spread_shares_a_burst_out() {
        let p = Placement::new(2);
        let homed = [2, 0];
        let sent: Vec<Option<usize>> = (0..10).map(|_| p.pick(0, 2, |i| homed[i], |_| 7)).collect();
        let there = sent.iter().filter(|t| **t == Some(1)).count();
        assert_eq!((10 - there, there), (4, 6), "{sent:?}");
        // Once worker 1 has started them (its counter moved, its homed count rose), the loads
        // are level and the next goes to the spawner.
        let homed = [2, 6];
        let runs = [7, 19];
        assert_eq!(p.pick(0, 2, |i| homed[i], |i| runs[i]), None);
    }

    /// A spare (slot 3 of 2 configured workers) spawning with the hint sends fibers to the
    /// configured workers only, never to another spare's slot (2), which may have no thread.
    #[test]
    fn spread_from_a_spare_targets_configured_workers_only() {
        let p = Placement::new(4);
        let homed = [5, 5, 0, 9];
        for _ in 0..20 {
            let t = p.pick(3, 2, |i| homed[i], |_| 1);
            assert!(matches!(t, None | Some(0) | Some(1)), "{t:?}");
        }
    }

    #[test]
    fn spread_sends_a_stuck_worker_at_most_a_burst() {
        let p = Placement::new(2);
        let homed = [1000, 0]; // worker 1 looks idle but never starts a run
        let sent = (0..200)
            .filter(|_| p.pick(0, 2, |i| homed[i], |_| 3).is_some())
            .count();
        assert_eq!(sent, SPREAD_BURST as usize);
    }

    #[test]
    fn homed_counts_arrivals_and_departures() {
        for migrate in [false, true] {
            let h = Homed::default();
            h.arrive(migrate);
            h.arrive(migrate);
            h.leave(migrate);
            assert_eq!(h.get(), 1);
        }
    }
}
