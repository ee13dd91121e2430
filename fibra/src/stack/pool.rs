//! The per-runtime pool of stack slots: one LIFO free list per size class.
//!
//! LIFO because the most recently freed slot has the most pages still committed and cached.
//! A pooled slot keeps its guard and its touched pages (reuse costs ~50 ns; a fresh page costs
//! a ~2.4 µs fault, ARCHITECTURE.md §2). Memory goes back to the kernel only for the coldest
//! free slots beyond a high-water mark, and only in `trim`, which idle workers call before they
//! sleep: `MADV_DONTNEED` costs ~4.7 µs, too much on the release path (100k fibers finishing
//! at once spent 40% of their time there when `give` discarded).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::region::{self, Guards, Region};
use super::{checked_stack_size, slot_size_for, FiberStack, DEFAULT_STACK_SIZE, MAX_STACK_SIZE};
use crate::error::SpawnError;

/// Free slots a class keeps committed: 1024 default stacks hold at most 68 MiB, and a burst
/// of that many spawns then needs no page faults.
const HIGH_WATER: usize = 1024;

/// Free slots of one slot size, and the regions they come from.
struct Class {
    slot_size: usize,
    /// LIFO: the top is the warmest slot.
    free: Vec<FiberStack>,
    /// `free[..clean]` have been discarded already; they stay at the cold bottom.
    clean: usize,
    regions: Vec<Region>,
}

impl Class {
    fn new(slot_size: usize) -> Class {
        Class {
            slot_size,
            free: Vec::new(),
            clean: 0,
            regions: Vec::new(),
        }
    }

    fn pop(&mut self) -> Option<FiberStack> {
        let stack = self.free.pop()?;
        self.clean = self.clean.min(self.free.len());
        Some(stack)
    }

    /// A free slot, else a freshly carved one (mapping a new region if needed).
    fn take(&mut self, guards: &Guards, regions: &AtomicUsize) -> Result<FiberStack, SpawnError> {
        if let Some(stack) = self.pop() {
            return Ok(stack);
        }
        if self.regions.last().is_none_or(Region::is_full) {
            self.regions.push(Region::map(self.slot_size)?);
            regions.fetch_add(1, Relaxed); // a statistic
        }
        self.regions.last_mut().expect("pushed above").carve(guards)
    }

    fn give(&mut self, stack: FiberStack) {
        self.free.push(stack);
    }

    /// Discards up to `max` of the coldest free slots beyond `high_water`; returns how many.
    fn trim(&mut self, high_water: usize, max: usize) -> usize {
        let keep_from = self.free.len().saturating_sub(high_water);
        let end = keep_from.min(self.clean.saturating_add(max));
        if end <= self.clean {
            return 0;
        }
        // SAFETY: every stack in `free` is handed back: nothing runs on it or points into it.
        unsafe { region::discard_all(&self.free[self.clean..end]) };
        let n = end - self.clean;
        self.clean = end;
        n
    }

    /// Unmaps everything. Only with no stack of this class live.
    fn unmap(&mut self, guards: &Guards) {
        self.free.clear();
        for region in self.regions.drain(..) {
            // SAFETY: the pool checked `live == 0`, and the free stacks were just dropped, so
            // no `FiberStack` of this region exists.
            unsafe { region.unmap(guards) };
        }
    }

    /// Leaks everything: stacks may still run on this memory.
    fn leak(&mut self) {
        self.free.clear(); // dropping a `FiberStack` leaves its slot as it is: mapped
        std::mem::forget(std::mem::take(&mut self.regions));
    }
}

/// All stacks of one runtime session. Any thread; shared through `Arc`.
pub(crate) struct StackPool {
    /// The hot class (`DEFAULT_STACK_SIZE`), with its own lock.
    default: Mutex<Class>,
    /// Every other size; spawns with custom sizes are rare.
    others: Mutex<Vec<Class>>,
    guards: Guards,
    high_water: usize,
    /// Statistics only (no data is published through them), hence Relaxed.
    live: AtomicUsize,
    regions: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while a class is locked except allocation failure, which aborts; a
    // poisoned class is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StackPool {
    pub(crate) fn new() -> StackPool {
        Self::with_config(false, usize::MAX, HIGH_WATER)
    }

    fn with_config(force_mprotect: bool, pool_budget: usize, high_water: usize) -> StackPool {
        StackPool {
            default: Mutex::new(Class::new(
                slot_size_for(DEFAULT_STACK_SIZE).expect("64 KiB plus a page fits a usize"),
            )),
            others: Mutex::new(Vec::new()),
            guards: Guards::new(force_mprotect, pool_budget),
            high_water,
            live: AtomicUsize::new(0),
            regions: AtomicUsize::new(0),
        }
    }

    /// Test-only: a pool whose `trim` keeps only `high_water` free slots committed.
    pub(crate) fn with_high_water(high_water: usize) -> StackPool {
        Self::with_config(false, usize::MAX, high_water)
    }

    /// Test-only: a pool that guards with `mprotect` and allows at most `guards` of them.
    #[cfg(test)]
    pub(crate) fn with_map_budget(guards: usize) -> StackPool {
        Self::with_config(true, guards, HIGH_WATER)
    }

    /// A stack with at least `size` usable bytes. Any thread.
    ///
    /// # Errors
    /// [`SpawnError::StackTooSmall`] or [`SpawnError::StackTooLarge`] outside
    /// `MIN_STACK_SIZE..=MAX_STACK_SIZE` (spawn checked already; checked again so no size
    /// can wrap the slot arithmetic); [`SpawnError::Stack`] if `mmap`/`madvise` fail;
    /// [`SpawnError::MapCountBudget`] on a kernel without `MADV_GUARD_INSTALL` once `mprotect`
    /// guards would use half the budget.
    pub(crate) fn take(&self, size: usize) -> Result<FiberStack, SpawnError> {
        checked_stack_size(size)?;
        let slot_size = slot_size_for(size).ok_or(SpawnError::StackTooLarge {
            requested: size,
            max: MAX_STACK_SIZE,
        })?;
        let stack = self.with_class(slot_size, |class| class.take(&self.guards, &self.regions))?;
        self.live.fetch_add(1, Relaxed);
        Ok(stack.lend())
    }

    /// Early answer for `spawn`, which takes the stack only at the fiber's first run: `Err`
    /// if a new stack could be neither reused from the pool nor carved within the memory-map
    /// budget (kernels without `MADV_GUARD_INSTALL` only). Conservative: stacks parked in
    /// worker caches count as unavailable. Any thread.
    ///
    /// # Errors
    /// [`SpawnError::MapCountBudget`].
    pub(crate) fn check_guard_budget(&self) -> Result<(), SpawnError> {
        // Guard markers cost no memory map: nothing to check, and no load of `live`, which
        // every worker's cache writes (a shared cache line on every spawn).
        if !self.guards.mprotect_mode() {
            return Ok(());
        }
        // In `mprotect` mode every carved slot has one guard, so guards - live = pooled slots.
        if self.guards.mprotect_guards() > self.live() {
            return Ok(());
        }
        self.guards.check_budget()
    }

    /// Moves up to `n` default-size stacks into `out`, still free: the cache
    /// [`lend`](FiberStack::lend)s each when a fiber takes it. Returns how many. Free slots
    /// first; then, with guard markers, freshly carved ones too (a carve error just ends the
    /// batch: the caller's `take` reports it). Carving one slot per lock, 100k sleepers'
    /// first runs took this lock once each, and a stall report caught a worker blocked on it;
    /// carving ahead costs address space only. `mprotect` guards are budgeted, so they are
    /// still carved one at a time, on demand.
    pub(super) fn take_default_batch(&self, out: &mut Vec<FiberStack>, n: usize) -> usize {
        let mut class = lock(&self.default);
        let before = out.len();
        out.extend(std::iter::from_fn(|| class.pop()).take(n));
        // Re-checked each time: the first carve of a process learns whether markers work.
        while out.len() - before < n && !self.guards.mprotect_mode() {
            match class.take(&self.guards, &self.regions) {
                Ok(stack) => out.push(stack),
                Err(_) => break,
            }
        }
        let moved = out.len() - before;
        self.live.fetch_add(moved, Relaxed);
        moved
    }

    /// Takes back a stack from `take`. Any thread.
    pub(crate) fn give(&self, mut stack: FiberStack) {
        stack.set_identity(std::ptr::null());
        stack.returned();
        let slot_size = stack.slot_size;
        self.with_class(slot_size, |class| class.give(stack));
        self.live.fetch_sub(1, Relaxed);
    }

    /// Returns the memory of up to `max` cold free default-size slots beyond the high-water
    /// mark to the kernel; returns how many. Idle workers call it before sleeping, in small
    /// batches so a wake-up is not delayed by more than ~`max` × 5 µs.
    pub(crate) fn trim(&self, max: usize) -> usize {
        lock(&self.default).trim(self.high_water, max)
    }

    /// Takes back several stacks under one lock: free ones, from a worker cache (their
    /// fibers' `give` already marked them [`returned`](FiberStack::returned)).
    pub(super) fn give_batch(&self, stacks: impl Iterator<Item = FiberStack>) {
        let mut class = lock(&self.default);
        for stack in stacks {
            stack.set_identity(std::ptr::null());
            self.live.fetch_sub(1, Relaxed);
            if stack.slot_size == class.slot_size {
                class.give(stack);
            } else {
                drop(class);
                self.with_class(stack.slot_size, |c| c.give(stack));
                class = lock(&self.default);
            }
        }
    }

    fn with_class<R>(&self, slot_size: usize, f: impl FnOnce(&mut Class) -> R) -> R {
        let mut default = lock(&self.default);
        if default.slot_size == slot_size {
            return f(&mut default);
        }
        drop(default);
        let mut others = lock(&self.others);
        let i = match others.iter().position(|c| c.slot_size == slot_size) {
            Some(i) => i,
            None => {
                others.push(Class::new(slot_size));
                others.len() - 1
            }
        };
        f(&mut others[i])
    }

    /// Stacks handed out and not yet given back (including those in worker caches).
    pub(crate) fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Regions currently mapped (each one memory map, or more with `mprotect` guards).
    pub(crate) fn mapped_regions(&self) -> usize {
        self.regions.load(Relaxed)
    }

    /// `mprotect` guards in this pool's regions (0 where `MADV_GUARD_INSTALL` works).
    pub(crate) fn mprotect_guards(&self) -> usize {
        self.guards.mprotect_guards()
    }
}

impl Default for StackPool {
    fn default() -> Self {
        Self::new()
    }
}

impl StackPool {
    /// Unmaps every region now, if no stack is live. Called when a runtime session ends, so
    /// a `JoinHandle` or `Waker` kept past the session does not keep its stacks mapped
    /// (found by `rt_shutdown_leaks`). Any thread; the pool stays usable (it maps anew).
    pub(crate) fn release(&self) {
        let mut default = lock(&self.default);
        let mut others = lock(&self.others);
        // Relaxed: the caller joined every thread that used the pool, which orders their
        // `give`s before this read.
        if self.live.load(Relaxed) != 0 {
            return; // `Drop` decides (and leaks, loudly) if they never come back
        }
        default.unmap(&self.guards);
        others.iter_mut().for_each(|c| c.unmap(&self.guards));
        self.regions.store(0, Relaxed);
    }
}

impl Drop for StackPool {
    /// Unmaps every region, unless a stack is still live: then a fiber may still be running
    /// on it, so everything is leaked instead (soundness first) and a warning printed.
    fn drop(&mut self) {
        let default = self
            .default
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let others = self
            .others
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let live = *self.live.get_mut();
        if live != 0 {
            eprintln!(
                "fibra: {live} fiber stacks were not given back when their runtime ended; \
                 leaking their memory ({} regions) instead of unmapping it under them",
                *self.regions.get_mut()
            );
            default.leak();
            others.iter_mut().for_each(Class::leak);
            return;
        }
        default.unmap(&self.guards);
        others.iter_mut().for_each(|c| c.unmap(&self.guards));
        *self.regions.get_mut() = 0;
    }
}
