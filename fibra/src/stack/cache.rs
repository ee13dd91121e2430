//! A per-worker LIFO of default-size stacks in front of the pool, so that spawning and
//! finishing fibers on one worker takes no lock. Custom sizes go straight to the pool.

use std::sync::Arc;

use super::{slot_size_for, FiberStack, StackPool, DEFAULT_STACK_SIZE};
use crate::error::SpawnError;

/// Stacks a worker keeps: 64 default stacks are 4.3 MiB of address space and at most that
/// much memory, and absorb a burst of 64 spawns without touching the pool's lock.
const CAPACITY: usize = 64;
/// Moved to or from the pool at once when the cache runs empty or full, so a worker that only
/// spawns (or only finishes) fibers takes the pool's lock once per 32 of them.
const BATCH: usize = CAPACITY / 2;

/// Owner worker only (not `Sync`-shared); dropping it gives every stack back to the pool.
pub(crate) struct LocalStackCache {
    pool: Arc<StackPool>,
    /// Slot size of the default class, computed once.
    slot_size: usize,
    /// LIFO: the top is the warmest stack.
    stacks: Vec<FiberStack>,
}

impl LocalStackCache {
    pub(crate) fn new(pool: Arc<StackPool>) -> Self {
        LocalStackCache {
            pool,
            slot_size: slot_size_for(DEFAULT_STACK_SIZE).expect("64 KiB plus a page fits a usize"),
            stacks: Vec::with_capacity(CAPACITY),
        }
    }

    /// A stack with at least `size` usable bytes. Owner worker only.
    ///
    /// # Errors
    /// As [`StackPool::take`].
    pub(crate) fn take(&mut self, size: usize) -> Result<FiberStack, SpawnError> {
        if slot_size_for(size) != Some(self.slot_size) {
            return self.pool.take(size);
        }
        if let Some(stack) = self.stacks.pop() {
            return Ok(stack.lend());
        }
        if self.pool.take_default_batch(&mut self.stacks, BATCH) > 0 {
            return Ok(self.stacks.pop().expect("batch moved at least one").lend());
        }
        self.pool.take(size) // lends it
    }

    /// Takes back a stack from `take` (or from any other worker's cache). Owner worker only.
    pub(crate) fn give(&mut self, mut stack: FiberStack) {
        if stack.slot_size != self.slot_size {
            return self.pool.give(stack); // marks it returned
        }
        stack.set_identity(std::ptr::null());
        stack.returned();
        if self.stacks.len() == CAPACITY {
            // Spill the coldest half (the bottom), keep the warm top.
            self.pool.give_batch(self.stacks.drain(..BATCH));
        }
        self.stacks.push(stack);
    }
}

impl Drop for LocalStackCache {
    fn drop(&mut self) {
        self.pool.give_batch(self.stacks.drain(..));
    }
}
