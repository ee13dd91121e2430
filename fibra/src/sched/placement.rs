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
//! # A burst is shared out evenly, and stays where it was put
//! A burst's placement is its fibers' home for life, so it must not depend on which worker
//! happens to get a core in the burst's first milliseconds. Two rules see to that:
//! - *Expected load.* A worker's load counts what this spawner placed there and has not
//!   started yet, judged by its homed count: placed at homed count `h`, `k` fibers are
//!   expected to bring it to `h + k` ([`Placed`]). The run counter alone undercounts: a
//!   target that starts one fiber resets "since its counter moved" while the rest of what it
//!   was sent still waits in its queue, and the target gets more than its share.
//! - *Kept fibers are placed too.* The spawner's own share goes to its pinned queue, where
//!   neither a thief nor the monitor's hand-off takes it: from the ring, an idle worker
//!   watching a spawner that is still in its spawning run (or lost its core) judged it stuck
//!   and stole half of its share, repeatedly.
//!
//! The burst cap still protects against a stuck target, relative to the spawner: a target
//! that has started nothing since it was last sent a fiber is sent at most [`SPREAD_BURST`]
//! more than the spawner itself holds unstarted. In one long spawning run the spawner starts
//! nothing either, and the target is no slower than it: the burst is split evenly, and a
//! target stuck in one run holds its half until the run ends (the monitor reports the run).
//! A spawner that parks between spawns (an accept loop) starts its own share, so a stuck
//! target gets at most [`SPREAD_BURST`], as before. The spawner's own share is not capped
//! (it was not before either, in its ring); the price of keeping it out of thieves' reach:
//! a spawner that goes on to run without parking holds it until it parks, as the monitor
//! reports.
//!
//! Measured on the lab's `fs` row (4 KiB warm reads, one spread fiber per reader, 2 workers,
//! a shared and loaded machine): with the ring and an absolute cap, 1,024 readers started
//! 960/64, 949/75, 614/410 or 570/454 (a worker that lost its core for 3-8 ms in the burst
//! was sent 64, and everything else started on the other; or its ring was stolen or handed
//! off), and 64 readers once started 64/0; the run then lasts as long as the busier worker's
//! reads: 960/64 leaves one core idle for ~90 % of it. Threads have no such problem: the
//! kernel balances them all along.
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
    /// Per slot: what this worker placed there under the `spread` hint that may not have
    /// started yet.
    placed: RefCell<Vec<Placed>>,
}

/// Where a fiber spawned with the `spread` hint goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Spot {
    /// Another worker's inbox.
    Inbox(usize),
    /// The spawner's own pinned queue: it starts here and is not stolen.
    Here,
    /// The spawner's ring, as a plain spawn (stealable): a spare spawner's fibers.
    Ring,
}

/// Fibers this worker placed on one slot under the `spread` hint, counted against that
/// slot's homed count: placed when it was `base`, they bring it to `base + count` once they
/// have started (fibers that finish meanwhile make it read low, so the estimate errs towards
/// "not started yet", which only sends the next fiber elsewhere).
#[derive(Clone, Copy, Default)]
struct Placed {
    base: usize,
    count: usize,
}

impl Placed {
    /// Of these, how many have not started, given the slot's homed count now.
    fn unstarted(self, homed: usize) -> usize {
        (self.base + self.count).saturating_sub(homed)
    }
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
            placed: RefCell::new(vec![Placed::default(); slots]),
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

    /// The `spread` hint: where a fiber spawned on worker `me` should start (module docs).
    pub(super) fn spread(&self, me: usize, slots: &[WorkerSlot], workers: usize) -> Spot {
        let n = workers.min(slots.len());
        self.pick(me, n, |i| slots[i].homed.get(), |i| slots[i].signal.runs())
    }

    /// `spread` on what it reads of the configured workers `0..n` and of `me` (which may be a
    /// spare, `n` or above: spares are never sent fibers, and keep none pinned, since they
    /// retire): homed counts and run counters.
    fn pick(
        &self,
        me: usize,
        n: usize,
        homed: impl Fn(usize) -> usize,
        runs: impl Fn(usize) -> u64,
    ) -> Spot {
        let unstarted = |i: usize| self.placed.borrow()[i].unstarted(homed(i));
        let load = |i: usize| homed(i) + unstarted(i);
        let target = (0..n)
            .chain((me >= n).then_some(me))
            .map(|i| (i, load(i)))
            // The least loaded; ties go to `me` (no hand-over), then to the lowest index.
            .min_by_key(|&(i, l)| (l, i != me, i))
            .map_or(me, |(i, _)| i);
        if target != me {
            // Stuck, or only not started yet, like the spawner's own share? (module docs)
            let limit = SPREAD_BURST.saturating_add(clamp_u32(unstarted(me)));
            if self.may_send(target, runs(target), limit) {
                self.place(target, homed(target));
                return Spot::Inbox(target);
            }
        }
        if me >= n {
            return Spot::Ring;
        }
        self.place(me, homed(me));
        Spot::Here
    }

    /// Records a fiber placed on `slot`, whose homed count is `homed`.
    fn place(&self, slot: usize, homed: usize) {
        let mut placed = self.placed.borrow_mut();
        let p = &mut placed[slot];
        if p.unstarted(homed) == 0 {
            // Everything placed there before has started: a new window from here.
            *p = Placed {
                base: homed,
                count: 0,
            };
        }
        p.count += 1;
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

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

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
        let spots: Vec<Spot> = (0..10).map(|_| p.pick(0, 2, |i| homed[i], |_| 7)).collect();
        let there = spots.iter().filter(|t| **t == Spot::Inbox(1)).count();
        let here = spots.iter().filter(|t| **t == Spot::Here).count();
        assert_eq!((here, there), (4, 6), "{spots:?}");
        // Once worker 1 has started its 6 (homed 6) and worker 0 none of its 4 (homed still
        // 2, 4 placed), the loads are level (6 and 6) and the next stays with the spawner.
        let homed = [2, 6];
        let runs = [7, 19];
        assert_eq!(p.pick(0, 2, |i| homed[i], |i| runs[i]), Spot::Here);
    }

    /// A burst of 1,024 from a spawner in one long run (its own share cannot start) while the
    /// other worker starts nothing either (it has not got a core yet): split evenly, nothing
    /// left stealable. With an absolute cap of 64 for the other, the spawner kept 960.
    #[test]
    fn a_burst_is_split_evenly_while_no_worker_starts_any() {
        let p = Placement::new(2);
        let homed = [1, 0]; // the spawner itself
        let spots: Vec<Spot> = (0..1_024)
            .map(|_| p.pick(0, 2, |i| homed[i], |_| 5))
            .collect();
        let there = spots.iter().filter(|t| **t == Spot::Inbox(1)).count();
        let here = spots.iter().filter(|t| **t == Spot::Here).count();
        assert_eq!((here, there), (512, 512));
    }

    /// The target starts what it was sent, but slower than the spawner spawns (one fiber per
    /// two spawns, its run counter moving at each): it still gets its share, not more. Counting
    /// only what was sent since its counter last moved, each start hid the rest of its queue
    /// and it was sent ~2/3 of the burst.
    #[test]
    fn a_slow_starter_is_not_sent_more_than_its_share() {
        let p = Placement::new(2);
        let (homed1, runs1, queued) = (Cell::new(0usize), Cell::new(0u64), Cell::new(0usize));
        let mut here = 0usize;
        for i in 0..1_000 {
            let homed = |w: usize| if w == 0 { 1 } else { homed1.get() };
            match p.pick(0, 2, homed, |w| if w == 0 { 3 } else { runs1.get() }) {
                Spot::Inbox(1) => queued.set(queued.get() + 1),
                Spot::Here => here += 1,
                other => panic!("{other:?}"),
            }
            if i % 2 == 1 && queued.get() > 0 {
                queued.set(queued.get() - 1);
                homed1.set(homed1.get() + 1);
                runs1.set(runs1.get() + 1);
            }
        }
        let there = homed1.get() + queued.get();
        assert!(here.abs_diff(there) <= 2, "{here} kept, {there} sent");
    }

    /// A spare (slot 3 of 2 configured workers) spawning with the hint sends fibers to the
    /// configured workers only, never to another spare's slot (2), which may have no thread,
    /// and keeps none pinned (it retires).
    #[test]
    fn spread_from_a_spare_targets_configured_workers_only() {
        let p = Placement::new(4);
        let homed = [5, 5, 0, 9];
        for _ in 0..20 {
            let t = p.pick(3, 2, |i| homed[i], |_| 1);
            assert!(
                matches!(t, Spot::Ring | Spot::Inbox(0) | Spot::Inbox(1)),
                "{t:?}"
            );
        }
    }

    /// Worker 1 looks idle but never starts a run; the spawner, home to 1,000 started fibers,
    /// parks between spawns (its counter moves, and what it keeps starts): worker 1 is sent
    /// one burst, the rest stays with the spawner.
    #[test]
    fn spread_sends_a_stuck_worker_at_most_a_burst() {
        let p = Placement::new(2);
        let (homed0, runs0) = (Cell::new(1_000usize), Cell::new(3u64));
        let mut sent = 0;
        for _ in 0..200 {
            let homed = |w: usize| if w == 0 { homed0.get() } else { 0 };
            match p.pick(0, 2, homed, |w| if w == 0 { runs0.get() } else { 9 }) {
                Spot::Inbox(1) => sent += 1,
                Spot::Here => {
                    homed0.set(homed0.get() + 1);
                    runs0.set(runs0.get() + 2);
                }
                other => panic!("{other:?}"),
            }
        }
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
