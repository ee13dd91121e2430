//! A worker's timers: deadline → fiber to unpark, or a [`Sleep`](crate::Sleep) future's
//! waker to wake (`Target`).
//!
//! Two parts: a FIFO `run` for deadlines that arrive in non-decreasing order (the common case:
//! many fibers sleeping or timing out for the same duration), with O(1) insert and pop, and a
//! min-heap for the rest. A 100k-entry heap costs ~17 cache-missing levels per pop (~1.7 µs
//! here); the run turns the "100k fibers sleep 100 ms" case into a queue. A wait that ends
//! early does not remove its entry (it bumps the fiber's `timer_gen`, which makes the entry
//! stale). Stale entries would otherwise pile up until their deadlines: a server reading with
//! a 10 s timeout at 80k requests/s holds ~800k of them (~30 MiB, and every entry keeps its
//! fiber's header alive). So the worker sweeps them out whenever the timers have doubled
//! since the last sweep (and hold at least `SWEEP_MIN`): O(1) amortised per insert, and a
//! sweep that finds everything live (100k sleepers) only raises the bar. A wheel with O(1)
//! cancel is the alternative once cancellation dominates.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::Ordering::Acquire;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sleep_future::TaskTimer;
use crate::fiber::FiberRef;

/// Fewest entries worth a sweep for stale ones.
const SWEEP_MIN: usize = 4096;

pub(crate) struct Timers {
    /// What entries' deadlines count from: an `Instant` takes 16 bytes, nanoseconds since
    /// this 8, which makes an entry 32 bytes instead of 48 (100k sleepers hold 100k entries;
    /// with the run's doubling, ~21 bytes a sleeper less).
    epoch: Instant,
    /// Non-decreasing deadlines, oldest first.
    run: VecDeque<Entry>,
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u32,
    /// Entries left by the last sweep: the next one comes at twice as many.
    after_last_sweep: usize,
}

pub(crate) struct Entry {
    /// Nanoseconds from `Timers::epoch` (`Timers::ticks`).
    deadline: u64,
    /// Insertion order among equal deadlines in the heap (wraps every 2^32 inserts, which can
    /// only reorder entries with the same deadline: a courtesy, not a promise).
    seq: u32,
    /// The target's generation when armed (a fiber's `timer_gen`, a `TaskTimer`'s); a later
    /// value means the wait ended already and this entry is stale (cancellation without
    /// removal from the heap).
    generation: u32,
    target: Target,
}

/// Who an entry wakes.
pub(crate) enum Target {
    /// A fiber in a timed park (`park_until`).
    Fiber(FiberRef),
    /// A pending [`Sleep`](crate::Sleep) future.
    Task(Arc<TaskTimer>),
}

impl Target {
    /// Is the wait this entry was armed for (`generation`) still going on?
    fn is_live(&self, generation: u32) -> bool {
        // Acquire pairs with the Release increment that ends a timed wait (`park_until`,
        // `TaskTimer::disarm`).
        match self {
            Target::Fiber(f) => f.timer_gen.load(Acquire) == generation,
            Target::Task(t) => t.generation() == generation,
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            epoch: Instant::now(),
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            after_last_sweep: 0,
        }
    }
}

impl Timers {
    /// `at` in nanoseconds from the epoch: monotone in `at`, and 0 for anything before the
    /// epoch (due at once either way); saturates ~584 years out.
    fn ticks(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// The instant `ticks` stands for (the epoch for 0). At most ~584 years past the epoch,
    /// far inside Linux's `Instant` range (a signed 64-bit count of seconds).
    fn instant(&self, ticks: u64) -> Instant {
        self.epoch + Duration::from_nanos(ticks)
    }

    pub(crate) fn insert(&mut self, deadline: Instant, generation: u32, fiber: FiberRef) {
        self.insert_target(deadline, generation, Target::Fiber(fiber));
    }

    /// Arms a [`Sleep`](crate::Sleep) future's timer.
    pub(crate) fn insert_task(&mut self, deadline: Instant, generation: u32, task: Arc<TaskTimer>) {
        self.insert_target(deadline, generation, Target::Task(task));
    }

    fn insert_target(&mut self, deadline: Instant, generation: u32, target: Target) {
        self.seq = self.seq.wrapping_add(1);
        let deadline = self.ticks(deadline);
        let entry = Entry {
            deadline,
            seq: self.seq,
            generation,
            target,
        };
        match self.run.back() {
            Some(last) if last.deadline > deadline => self.heap.push(Reverse(entry)),
            _ => self.run.push_back(entry),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let run = self.run.front().map(|e| e.deadline);
        let heap = self.heap.peek().map(|e| e.0.deadline);
        let earliest = match (run, heap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest.map(|t| self.instant(t))
    }

    /// The earliest entry whose deadline is at or before `now`, with the generation it was
    /// armed with.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Target, u32)> {
        let now = self.ticks(now);
        let from_run = match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(h)) => r <= &h.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if from_run {
            if self.run.front()?.deadline > now {
                return None;
            }
            self.run.pop_front().map(|e| (e.target, e.generation))
        } else {
            if self.heap.peek()?.0.deadline > now {
                return None;
            }
            self.heap.pop().map(|e| (e.0.target, e.0.generation))
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.run.is_empty() && self.heap.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    /// If the timers have doubled since the last sweep: removes the entries whose wait has
    /// ended, and returns them for the caller to drop once the lock is released (the last
    /// reference to a finished fiber runs its destructors).
    pub(crate) fn sweep_stale(&mut self) -> Vec<Entry> {
        let len = self.len();
        if len < SWEEP_MIN.max(2 * self.after_last_sweep) {
            return Vec::new();
        }
        let live = |e: &Entry| e.target.is_live(e.generation);
        let (keep, stale): (VecDeque<Entry>, VecDeque<Entry>) = self.run.drain(..).partition(live);
        self.run = keep; // `partition` keeps the order: still non-decreasing
        let mut stale = Vec::from(stale);
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .partition(|e| live(&e.0));
        self.heap = BinaryHeap::from(keep);
        stale.extend(gone.into_iter().map(|e| e.0));
        self.after_last_sweep = self.len();
        stale
    }

    pub(crate) fn clear(&mut self) {
        self.run.clear();
        self.heap.clear();
    }
}

/// Pops the entries of `timers` due at `now` and unparks each fiber whose timed wait is still
/// the one armed (its generation unchanged); `woken` receives every fiber that unpark made
/// runnable, holding its parked reference, for the caller to queue. A live `Sleep`'s waker
/// is woken (a fiber's waker, `fibra::await_future`'s, goes to `woken` like a fiber). The
/// lock is not held while `woken` or a waker runs. The owner worker calls it, and the monitor for a stuck worker under
/// the migration opt-in.
pub(crate) fn fire_due(timers: &Mutex<Timers>, now: Instant, mut woken: impl FnMut(FiberRef)) {
    let lock = || timers.lock().unwrap_or_else(|e| e.into_inner());
    // The sweep shares the first pop's critical section; what it removed is dropped unlocked.
    let (stale, mut due) = {
        let mut t = lock();
        (t.sweep_stale(), t.pop_due(now))
    };
    drop(stale);
    while let Some((target, generation)) = due {
        match target {
            Target::Fiber(fiber) => {
                // The real clock was read anyway (sched/clock.rs).
                fiber.shared.clock.refresh(now);
                // Acquire pairs with the Release increment that ends the wait in
                // `park_until`; a later generation means the timed wait ended before its
                // deadline.
                if fiber.timer_gen.load(Acquire) == generation {
                    if let Some(fiber) = crate::park::unpark_owned(fiber) {
                        woken(fiber); // the heap's reference goes to the queue
                    }
                }
            }
            Target::Task(task) => {
                if let Some(waker) = task.fire(generation) {
                    match crate::park::waker_fiber(&waker) {
                        Some(fiber) => woken_fiber(fiber, &mut woken),
                        None => waker.wake(),
                    }
                }
            }
        }
        due = lock().pop_due(now);
    }
}

/// A fiber a `Sleep`'s waker names: unparked and, if that made it runnable, queued by the
/// caller like a timed park's.
fn woken_fiber(fiber: FiberRef, woken: &mut impl FnMut(FiberRef)) {
    if let Some(fiber) = crate::park::unpark_owned(fiber) {
        woken(fiber);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(t: &Target) -> u64 {
        match t {
            Target::Fiber(f) => f.identity.id,
            Target::Task(_) => 0,
        }
    }

    /// Entries come out in deadline order whichever part holds them.
    #[test]
    fn pops_in_deadline_order_across_run_and_heap() {
        let shared = crate::sched::test_shared();
        let base = Instant::now();
        let mut timers = Timers::default();
        let offsets = [5u64, 7, 7, 3, 9, 1, 12, 8, 8, 2];
        let mut fibers = Vec::new();
        for (i, ms) in offsets.iter().enumerate() {
            let f = crate::fiber::test_fiber(&shared, i as u64 + 1);
            timers.insert(base + Duration::from_millis(*ms), 0, f.clone());
            fibers.push((*ms, f));
        }
        assert!(
            timers.pop_due(base).is_none(),
            "nothing is due at the base instant"
        );
        let mut popped = Vec::new();
        while let Some((f, _)) = timers.pop_due(base + Duration::from_secs(1)) {
            popped.push(id(&f));
        }
        assert!(timers.is_empty());
        let deadlines: Vec<u64> = popped.iter().map(|id| offsets[*id as usize - 1]).collect();
        let mut sorted = deadlines.clone();
        sorted.sort();
        assert_eq!(deadlines, sorted);
        assert_eq!(popped.len(), offsets.len());
    }

    /// Entries of ended waits are swept once the timers have grown enough, from the run and
    /// the heap alike; live ones stay, still in deadline order.
    #[test]
    fn ended_waits_are_swept_and_live_entries_stay_in_order() {
        use std::sync::atomic::Ordering::Release;
        let shared = crate::sched::test_shared();
        let (live, ended) = (
            crate::fiber::test_fiber(&shared, 1),
            crate::fiber::test_fiber(&shared, 2),
        );
        let base = Instant::now();
        let mut timers = Timers::default();
        let n = SWEEP_MIN as u64; // even
        for i in 0..n - 1 {
            // Out-of-order deadlines every 7th entry land in the heap, the rest in the run.
            let ms = if i % 7 == 0 { n - i } else { i };
            let fiber = if i % 2 == 0 { &live } else { &ended };
            timers.insert(base + Duration::from_millis(ms), 0, fiber.clone());
        }
        ended.timer_gen.fetch_add(1, Release); // its waits ended before their deadlines
        assert!(timers.sweep_stale().is_empty(), "below SWEEP_MIN: no sweep");
        timers.insert(base, 0, ended.clone()); // SWEEP_MIN entries: over the bar
        let swept = timers.sweep_stale();
        assert_eq!(swept.len() as u64, n / 2);
        assert!(swept.iter().all(|e| id(&e.target) == 2));
        assert_eq!(timers.len() as u64, n / 2);
        let mut previous = None;
        while let Some(next) = timers.next_deadline() {
            assert!(previous.is_none_or(|p| p <= next), "out of deadline order");
            previous = Some(next);
            let (f, _) = timers.pop_due(next).expect("the earliest entry is due");
            assert_eq!(id(&f), 1);
        }
        assert!(timers.sweep_stale().is_empty(), "nothing left to sweep");
    }

    /// Deadlines count from the timers' epoch: one before it is due at once, one past the
    /// ~584 years nanoseconds can count is kept (far) away, and an entry is 32 bytes.
    #[test]
    fn deadlines_before_the_epoch_are_due_and_far_ones_saturate() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        let shared = crate::sched::test_shared();
        let before = Instant::now();
        let mut timers = Timers::default();
        let year = Duration::from_secs(365 * 24 * 3600);
        timers.insert(
            before + 1000 * year,
            0,
            crate::fiber::test_fiber(&shared, 1),
        );
        timers.insert(before, 0, crate::fiber::test_fiber(&shared, 2));
        let now = Instant::now();
        assert_eq!(timers.pop_due(now).map(|f| id(&f.0)), Some(2));
        assert!(timers.pop_due(now).is_none());
        let far = timers
            .next_deadline()
            .expect("the far entry is still there");
        assert!(far >= now + 500 * year, "saturated, not wrapped");
    }

    #[test]
    fn pop_due_respects_now() {
        let shared = crate::sched::test_shared();
        let base = Instant::now();
        let mut timers = Timers::default();
        timers.insert(
            base + Duration::from_millis(10),
            0,
            crate::fiber::test_fiber(&shared, 1),
        );
        timers.insert(
            base + Duration::from_millis(5),
            0,
            crate::fiber::test_fiber(&shared, 2),
        );
        assert_eq!(
            timers.next_deadline(),
            Some(base + Duration::from_millis(5))
        );
        assert_eq!(
            timers
                .pop_due(base + Duration::from_millis(6))
                .map(|f| id(&f.0)),
            Some(2)
        );
        assert!(timers.pop_due(base + Duration::from_millis(6)).is_none());
        assert_eq!(
            timers
                .pop_due(base + Duration::from_millis(10))
                .map(|f| id(&f.0)),
            Some(1)
        );
    }
}
