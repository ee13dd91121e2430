//! A worker's timers: a min-heap of (deadline, sequence) → fiber to unpark.
//!
//! A heap rather than a hierarchical wheel: `sleep` never cancels (a spurious wake re-parks
//! and the entry still fires at its deadline), insert is O(log n) and 100k sleepers cost
//! ~17 comparisons each. A wheel pays off once timeouts that are mostly cancelled arrive
//! (channels and I/O, later issues).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::fiber::FiberRef;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Entry {
    deadline: Instant,
    seq: u64,
    fiber: FiberRef,
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

impl Timers {
    pub(crate) fn insert(&mut self, deadline: Instant, fiber: FiberRef) {
        self.seq += 1;
        self.heap.push(Reverse(Entry { deadline, seq: self.seq, fiber }));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.deadline)
    }

    /// The earliest entry whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<FiberRef> {
        if self.next_deadline()? > now {
            return None;
        }
        self.heap.pop().map(|e| e.0.fiber)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
