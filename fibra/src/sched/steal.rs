//! When an idle worker should steal from a busy one.
//!
//! Stealing a fiber that has not run yet is the only way work spreads (a started fiber stays
//! on its home worker, ARCHITECTURE.md §4), and a wrong steal is permanent: fibers that talk
//! to each other end up pinned on different threads, and every message between them crosses
//! cores for the rest of their lives. Measured with 8 producers → 1 consumer on 2 workers: an
//! item through `bounded(0)` takes 117–170 ns when all run on one worker and 200–300 ns when
//! an idle worker stole half the producers at startup, which happened in 40–60 % of runs while
//! thieves stole whenever they saw a queue: their victim would have run those producers
//! within microseconds anyway.
//!
//! So a thief steals from a victim's ring only when waiting is the slower choice:
//! - the victim has not started a new run for [`STUCK_AFTER`] (one long run, or its thread
//!   lost its core): its queue is not moving;
//! - or, judged over at least that long, the queue holds more than [`MAX_BACKLOG`] of work at
//!   the pace the victim runs fibers.
//!
//! Judging needs two sightings of the victim at least [`STUCK_AFTER`] apart, so a steal waits
//! that long after the thief first saw the victim's queue non-empty, but once per busy
//! period: a sighting lasts while the queue stays non-empty and, across searches, while the
//! victim stays in the same run, so a spawner that keeps filling its queue in one long run is
//! stolen from again at once. (A plain "queue made no progress for 50 µs" rule was measured
//! first: a steal itself moves the queue, so the thief waited again after each steal, and
//! spawning 100k fibers got 1.3–1.8× slower.)
//!
//! Why 50 µs: a runtime's first runs are slow (a new stack region, its first guard batch,
//! page faults: 20–70 µs for the first fiber here), and a 20 µs watch still split the fan-in
//! in ~1 run of 10 on reading that as a stuck worker. The cost is at most 50 µs more before a
//! long-running fiber's queued neighbours move to an idle core.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::WorkerSlot;

/// How long a victim's queue must be watched before a steal is judged.
const STUCK_AFTER: Duration = Duration::from_micros(50);
/// Queued work (fibers × the victim's time per run) worth moving to another core.
const MAX_BACKLOG: Duration = Duration::from_micros(50);
/// A queue seen non-empty this long is stolen from whatever its pace: the ring holds only
/// fibers that never ran, so a queue that never drains is a victim that keeps spawning. It
/// also bounds how long a thief keeps searching past `SEARCH_FOR` to finish a judgement.
pub(super) const MAX_WAIT: Duration = Duration::from_micros(200);

/// What a thief last saw of one victim whose ring held fibers.
#[derive(Clone, Copy)]
struct Sighting {
    /// The victim's run counter at the start of the window being judged (`RunSignal::runs`).
    runs: u64,
    /// When that window began.
    at: Instant,
    /// Since when the queue has been seen non-empty.
    since: Instant,
}

/// One thief's sightings, by victim slot. Owner-thread only.
pub(super) struct StealPolicy {
    sightings: RefCell<Vec<Option<Sighting>>>,
}

impl StealPolicy {
    pub(super) fn new(slots: usize) -> StealPolicy {
        StealPolicy {
            sightings: RefCell::new(vec![None; slots]),
        }
    }

    /// A new search begins: for victims that have started a run since they were seen, the
    /// window being judged restarts now, because the time between covers this thief's own runs
    /// and sleep, not the victim's pace. A victim still inside the run it was seen in keeps its
    /// window: a spawner that fills its queue in one long run is stolen from again at once.
    pub(super) fn begin_search(&self, slots: &[WorkerSlot]) {
        if self.watching() {
            let runs = slots.iter().map(|slot| slot.signal.runs());
            self.restart_moved(runs, Instant::now());
        }
    }

    fn restart_moved(&self, runs: impl Iterator<Item = u64>, now: Instant) {
        for (seen, runs) in self.sightings.borrow_mut().iter_mut().zip(runs) {
            if let Some(s) = seen.as_mut().filter(|s| s.runs != runs) {
                s.runs = runs;
                s.at = now;
            }
        }
    }

    /// Whether to steal from the worker in slot `index` now. Reads the clock only when the
    /// victim's ring holds fibers, so an idle runtime's search loop stays cheap.
    pub(super) fn worth_stealing(&self, index: usize, victim: &WorkerSlot) -> bool {
        let queued = victim.stealer.len();
        self.judge(index, queued, || (victim.signal.runs(), Instant::now()))
    }

    /// `worth_stealing` on what was read of the victim: its queue length, then (only if the
    /// queue holds fibers) its run counter and the time.
    fn judge(&self, index: usize, queued: usize, read: impl FnOnce() -> (u64, Instant)) -> bool {
        let mut sightings = self.sightings.borrow_mut();
        let seen = &mut sightings[index];
        if queued == 0 {
            *seen = None;
            return false;
        }
        let (runs, now) = read();
        let Some(first) = *seen else {
            *seen = Some(Sighting {
                runs,
                at: now,
                since: now,
            });
            return false;
        };
        let watched = now.saturating_duration_since(first.at);
        if watched < STUCK_AFTER {
            return false;
        }
        let ran = runs.saturating_sub(first.runs);
        if ran == 0 || backlog_exceeds(queued, watched, ran) || now - first.since >= MAX_WAIT {
            return true;
        }
        // The victim keeps its queue moving: judge the next window on its own.
        *seen = Some(Sighting {
            runs,
            at: now,
            ..first
        });
        false
    }

    /// Whether some victim's queue is being watched: the search goes on for up to `MAX_WAIT`
    /// more, so a judgement of the victim's pace can finish within one search (`worker.rs`).
    pub(super) fn watching(&self) -> bool {
        self.sightings.borrow().iter().any(Option::is_some)
    }
}

/// `queued` fibers, at `ran` runs in `watched`, take longer than `MAX_BACKLOG` to drain.
fn backlog_exceeds(queued: usize, watched: Duration, ran: u64) -> bool {
    // queued × (watched / ran) > MAX_BACKLOG, without the division.
    watched.as_nanos() * queued as u128 > MAX_BACKLOG.as_nanos() * u128::from(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: usize = 1; // the victim's slot

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn an_empty_queue_is_never_stolen_from_and_forgets_the_sighting() {
        let policy = StealPolicy::new(2);
        let t0 = Instant::now();
        assert!(
            !policy.judge(V, 3, || (10, t0)),
            "a first sighting only watches"
        );
        assert!(!policy.judge(V, 0, || unreachable!("no clock read for an empty queue")));
        // Seen anew: the earlier sighting no longer counts, so no steal yet.
        assert!(!policy.judge(V, 3, || (10, t0 + us(100))));
        assert!(policy.judge(V, 3, || (10, t0 + us(100) + STUCK_AFTER)));
    }

    #[test]
    fn a_victim_inside_one_run_is_stolen_from_after_the_watch() {
        let policy = StealPolicy::new(2);
        let t0 = Instant::now();
        assert!(!policy.judge(V, 2, || (7, t0)));
        assert!(!policy.judge(V, 2, || (7, t0 + STUCK_AFTER - us(1))));
        assert!(policy.judge(V, 2, || (7, t0 + STUCK_AFTER)));
        // The sighting stays: the spawner keeps filling its queue, steal again at once.
        assert!(policy.judge(V, 1, || (7, t0 + STUCK_AFTER + us(1))));
    }

    #[test]
    fn a_queue_the_victim_drains_fast_stays_and_the_window_restarts() {
        let policy = StealPolicy::new(2);
        let t0 = Instant::now();
        assert!(!policy.judge(V, 8, || (0, t0)));
        // 25 runs in STUCK_AFTER (50 µs): 2 µs a run, 8 queued = 16 µs of work.
        assert!(!policy.judge(V, 8, || (25, t0 + STUCK_AFTER)));
        // The next window is judged on its own: one run in it, so 8 queued are 400 µs.
        let t1 = t0 + STUCK_AFTER * 2;
        assert!(policy.judge(V, 8, || (26, t1)));
    }

    #[test]
    fn a_queue_that_never_drains_is_stolen_from_after_max_wait() {
        let policy = StealPolicy::new(2);
        let t0 = Instant::now();
        assert!(!policy.judge(V, 4, || (0, t0)));
        assert!(policy.watching());
        // A fast pace in every window (1 µs a run), but the queue is never seen empty.
        let mut runs = 0;
        let mut t = t0;
        while t + STUCK_AFTER < t0 + MAX_WAIT {
            t += STUCK_AFTER;
            runs += 50;
            assert!(!policy.judge(V, 4, || (runs, t)));
        }
        assert!(policy.judge(V, 4, || (runs + 50, t0 + MAX_WAIT)));
        assert!(!policy.judge(V, 0, || unreachable!()));
        assert!(!policy.watching());
    }

    #[test]
    fn a_new_search_restarts_the_window_of_victims_that_moved_on() {
        let policy = StealPolicy::new(3);
        let t0 = Instant::now();
        assert!(!policy.judge(1, 4, || (5, t0)));
        assert!(!policy.judge(2, 4, || (9, t0)));
        let t1 = t0 + STUCK_AFTER * 2;
        policy.restart_moved([0, 6, 9].into_iter(), t1);
        assert!(
            !policy.judge(1, 4, || (6, t1 + STUCK_AFTER / 2)),
            "slot 1 ran since: new window"
        );
        assert!(policy.judge(2, 4, || (9, t1)), "slot 2 is still in its run");
        // Slot 1's queue has been non-empty since t0: MAX_WAIT still counts from there.
        assert!(policy.judge(1, 4, || (20, t0 + MAX_WAIT)));
    }

    #[test]
    fn backlog_counts_queued_fibers_at_the_observed_pace() {
        // 10 runs in 20 µs: 2 µs a run.
        let watched = Duration::from_micros(20);
        assert!(!backlog_exceeds(8, watched, 10), "16 µs of work stays");
        assert!(!backlog_exceeds(25, watched, 10), "exactly 50 µs stays");
        assert!(backlog_exceeds(26, watched, 10), "52 µs of work moves");
        // One slow run per 20 µs: 3 queued fibers are 60 µs.
        assert!(backlog_exceeds(3, watched, 1));
    }
}
