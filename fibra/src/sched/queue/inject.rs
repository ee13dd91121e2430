//! The global (injector) queue: work from outside the runtime, and overflow from full rings.
//!
//! # Field access
//! | field   | written by                    | read by                                           |
//! |---------|-------------------------------|---------------------------------------------------|
//! | `queue` | any thread, under the lock    | any thread, under the lock                        |
//! | `len`   | any thread, under the lock    | anyone, lock-free (`len`, `is_empty`, `pop`'s fast path) |
//!
//! `len` always equals `queue.len()` as of the last unlock, so a lock-free reader sees either the
//! length before or after any one push/pop, never a torn value.
//!
//! Rejected: a lock-free MPMC list (crossbeam's `Injector`, Vyukov's queue). The inject queue is
//! touched once per 61 ticks and on overflow, each time moving a batch under one lock, so the lock
//! is rarely contended; the mutex keeps the code short and Miri-checkable.

use std::collections::VecDeque;
use std::sync::PoisonError;

use crate::loom::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use crate::loom::sync::{Mutex, MutexGuard};

/// A FIFO shared by all workers. Any thread.
pub(crate) struct Inject<T> {
    queue: Mutex<VecDeque<T>>,
    /// Mirror of `queue.len()`, stored under the lock, read without it.
    len: AtomicUsize,
}

impl<T> Inject<T> {
    /// An empty queue. Allocates nothing until the first push.
    pub(crate) fn new() -> Self {
        Inject {
            queue: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Appends `value`. Any thread.
    pub(crate) fn push(&self, value: T) {
        let mut queue = self.lock();
        queue.push_back(value);
        self.len.store(queue.len(), Relaxed); // under the lock: see "Memory ordering" on `len`
    }

    /// Appends every item of `batch`, in order, under one lock. Any thread.
    pub(crate) fn push_batch(&self, batch: impl Iterator<Item = T>) {
        let mut queue = self.lock();
        queue.extend(batch);
        self.len.store(queue.len(), Relaxed); // under the lock: see "Memory ordering" on `len`
    }

    /// Removes the oldest item. Any thread.
    pub(crate) fn pop(&self) -> Option<T> {
        // Fast path without the lock. A push that happens-before this call stored `len > 0`
        // before it returned, and coherence makes us read that store or a later one.
        if self.is_empty() {
            return None;
        }
        let mut queue = self.lock();
        let value = queue.pop_front();
        self.len.store(queue.len(), Relaxed); // under the lock: see "Memory ordering" on `len`
        value
    }

    /// Removes the oldest item and hands up to `more` of the next ones, oldest first, to
    /// `keep`, all under one lock (Go's `globrunqget`): a worker that lives off the global
    /// queue (a thief of a spawner whose ring overflows) then takes the lock once per batch,
    /// not once per fiber. `keep` gives an item back when it has no room; that item goes back
    /// to the front and the batch ends. `keep` runs under the lock: it must not touch this
    /// queue. Any thread.
    pub(crate) fn pop_batch(
        &self,
        more: usize,
        mut keep: impl FnMut(T) -> Result<(), T>,
    ) -> Option<T> {
        if self.is_empty() {
            return None; // the fast path of `pop`, same argument
        }
        let mut queue = self.lock();
        let first = queue.pop_front();
        for _ in 0..more {
            let Some(item) = queue.pop_front() else { break };
            if let Err(item) = keep(item) {
                queue.push_front(item);
                break;
            }
        }
        self.len.store(queue.len(), Relaxed); // under the lock: see "Memory ordering" on `len`
        first
    }

    /// Number of queued items: a lock-free snapshot. Any thread.
    ///
    /// # Memory ordering
    /// Relaxed: the count publishes nothing (items are handed over by the mutex) and is a hint.
    /// A caller that must not miss a concurrent push orders this load against the pusher's store
    /// with its own `SeqCst` fences (the no-lost-wake-up protocol in `sched/mod.rs`).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// `len() == 0`, lock-free. Any thread. Same ordering as [`Inject::len`].
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lock. Only `VecDeque` operations and `push_batch`'s iterator (the ring's `Drain`, which
    /// moves items out of slots) run under it; neither panics short of an allocation failure,
    /// which aborts. So a poisoned lock still guards a consistent queue: take it anyway.
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
