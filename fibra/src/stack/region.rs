//! A region: one large `MAP_NORESERVE` mapping carved lazily into equal slots, each guarded
//! when first carved. Also the guard policy: `MADV_GUARD_INSTALL`, else `mprotect` within a
//! memory-map budget, never no guard at all (a canary word misses large frames).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

use super::registry::{self, Registration};
use super::FiberStack;
use crate::error::SpawnError;
use crate::sys;

/// Bytes per region: 963 default slots, a few µs to map, one memory map. Big enough that
/// regions are rare, small enough that a runtime with a few fibers reserves little.
const REGION_BYTES: usize = 64 * 1024 * 1024;
/// Regions of classes with large slots still hold this many, so they stay rare.
const MIN_SLOTS_PER_REGION: usize = 8;

/// Whether `MADV_GUARD_INSTALL` works on this kernel; learned on first use, process-wide.
static MADV_GUARD: AtomicU8 = AtomicU8::new(MADV_UNKNOWN);
const MADV_UNKNOWN: u8 = 0;
const MADV_WORKS: u8 = 1;
const MADV_UNSUPPORTED: u8 = 2;

/// `mprotect` guards alive in the process, over all pools: they share one `vm.max_map_count`.
static MPROTECT_GUARDS: AtomicUsize = AtomicUsize::new(0);

/// How a pool guards its slots.
pub(super) struct Guards {
    force_mprotect: bool,
    /// Extra per-pool cap on `mprotect` guards (tests); `usize::MAX` otherwise.
    pool_budget: usize,
    /// `mprotect` guards alive in this pool's regions.
    pool_mprotect: AtomicUsize,
}

impl Guards {
    pub(super) fn new(force_mprotect: bool, pool_budget: usize) -> Guards {
        Guards {
            force_mprotect: force_mprotect || sys::force_mprotect_guards(),
            pool_budget,
            pool_mprotect: AtomicUsize::new(0),
        }
    }

    /// `mprotect` guards allowed process-wide. Each splits its region's mapping, costing two
    /// maps; we take at most half of `vm.max_map_count` so threads, libraries and the
    /// allocator keep the rest (at the limit even `pthread_create` fails, ARCHITECTURE.md §2).
    fn process_budget() -> usize {
        sys::max_map_count() / 4
    }

    /// Guards the page at `addr`; returns whether it cost a memory map (`mprotect`).
    ///
    /// # Safety
    /// `addr` is a page inside a reserved region that holds nothing live.
    unsafe fn install(&self, addr: NonNull<u8>) -> Result<bool, SpawnError> {
        let page = sys::page_size();
        if !self.force_mprotect && MADV_GUARD.load(Relaxed) != MADV_UNSUPPORTED {
            // SAFETY: the caller's contract (a page of ours, nothing live).
            match unsafe { sys::guard_madvise(addr, page) } {
                Ok(()) => {
                    MADV_GUARD.store(MADV_WORKS, Relaxed); // a hint; no data depends on it
                    return Ok(false);
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        && MADV_GUARD.load(Relaxed) != MADV_WORKS =>
                {
                    MADV_GUARD.store(MADV_UNSUPPORTED, Relaxed); // kernel < 6.13
                }
                Err(e) => return Err(SpawnError::Stack(e)),
            }
        }
        // Counters only (no data is published through them), so Relaxed.
        let global = MPROTECT_GUARDS.fetch_add(1, Relaxed);
        let local = self.pool_mprotect.fetch_add(1, Relaxed);
        if global >= Self::process_budget() || local >= self.pool_budget {
            self.forget_mprotect(1);
            let guarded_stacks = if local >= self.pool_budget {
                local
            } else {
                global
            };
            return Err(SpawnError::MapCountBudget {
                max_map_count: sys::max_map_count(),
                guarded_stacks,
            });
        }
        // SAFETY: the caller's contract.
        if let Err(e) = unsafe { sys::guard_mprotect(addr, page) } {
            self.forget_mprotect(1);
            return Err(SpawnError::Stack(e));
        }
        Ok(true)
    }

    /// Whether the next slot carved would get an `mprotect` guard (until the first carve
    /// learns whether guard markers work, it is assumed they do).
    pub(super) fn mprotect_mode(&self) -> bool {
        self.force_mprotect || MADV_GUARD.load(Relaxed) == MADV_UNSUPPORTED
    }

    /// `Err` if carving one more slot would need an `mprotect` guard beyond the budget.
    pub(super) fn check_budget(&self) -> Result<(), SpawnError> {
        let mprotect = self.mprotect_mode();
        let global = MPROTECT_GUARDS.load(Relaxed);
        let local = self.pool_mprotect.load(Relaxed);
        if !mprotect || (global < Self::process_budget() && local < self.pool_budget) {
            return Ok(());
        }
        let guarded_stacks = if local >= self.pool_budget {
            local
        } else {
            global
        };
        Err(SpawnError::MapCountBudget {
            max_map_count: sys::max_map_count(),
            guarded_stacks,
        })
    }

    fn forget_mprotect(&self, n: usize) {
        MPROTECT_GUARDS.fetch_sub(n, Relaxed);
        self.pool_mprotect.fetch_sub(n, Relaxed);
    }

    /// Batched guard markers: only with `MADV_GUARD_INSTALL` known to work, no forced mprotect.
    fn batch_capable(&self) -> bool {
        !self.force_mprotect
            && MADV_GUARD.load(Relaxed) == MADV_WORKS
            && GUARD_BATCHES.load(Relaxed)
    }

    fn disable_batches(&self) {
        GUARD_BATCHES.store(false, Relaxed); // a hint; each slot is still guarded one by one
    }

    /// `mprotect` guards alive in this pool.
    pub(super) fn mprotect_guards(&self) -> usize {
        self.pool_mprotect.load(Relaxed)
    }
}

/// Most slots guarded per `process_madvise` call (a fraction of `IOV_MAX` = 1024; ~0.4 ms of
/// work).
const GUARD_BATCH: usize = 512;
/// The first batch of a region: batches double from here up to `GUARD_BATCH`. A first run
/// pays for its region's first batch, and one of ~0.4 ms there made the worker look stuck to
/// idle thieves (`sched/steal.rs`), which then split fibers that talk to each other over two
/// threads; 8 slots cost a few µs.
const FIRST_GUARD_BATCH: usize = 8;
/// Whether `process_madvise(MADV_GUARD_INSTALL)` works here; cleared at its first failure.
static GUARD_BATCHES: AtomicBool = AtomicBool::new(true);

/// One mapping, carved bottom-up into `slot_size` slots.
pub(super) struct Region {
    start: NonNull<u8>,
    /// `slots * slot_size`, computed with checked arithmetic in `map`.
    len: usize,
    slot_size: usize,
    /// Slots the mapping holds.
    slots: usize,
    /// Slots carved so far (each one guarded).
    carved: usize,
    /// Slots whose guard is installed (>= `carved`): guards are installed ahead in batches.
    guarded: usize,
    /// How many carved slots cost an `mprotect` guard.
    mprotect_guards: usize,
    registration: Option<Registration>,
}

// SAFETY: `Region` owns its mapping exclusively (like a `Box<[u8]>`); the raw pointer is only
// an address and is never dereferenced through `&Region`.
unsafe impl Send for Region {}

impl Region {
    /// Maps a region for slots of `slot_size` bytes (a page multiple) and registers it with
    /// the overflow handler.
    ///
    /// # Errors
    /// [`SpawnError::Stack`] if the region's size does not fit in a `usize` (`StackPool::take`
    /// keeps slots small enough that it always does) or `mmap` fails (`ENOMEM` once the
    /// address space is used up, e.g. under `RLIMIT_AS`).
    pub(super) fn map(slot_size: usize) -> Result<Region, SpawnError> {
        let slots = (REGION_BYTES / slot_size).max(MIN_SLOTS_PER_REGION);
        let len = slots.checked_mul(slot_size).ok_or_else(|| {
            SpawnError::Stack(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("a region of {slots} stack slots of {slot_size} bytes overflows usize"),
            ))
        })?;
        let start = sys::reserve(len).map_err(SpawnError::Stack)?;
        let registration = registry::register(start.as_ptr() as usize, len, slot_size);
        Ok(Region {
            start,
            len,
            slot_size,
            slots,
            carved: 0,
            guarded: 0,
            mprotect_guards: 0,
            registration,
        })
    }

    pub(super) fn is_full(&self) -> bool {
        self.carved >= self.slots
    }

    /// Carves the next slot and installs its guard. The caller checked `!is_full()`.
    pub(super) fn carve(&mut self, guards: &Guards) -> Result<FiberStack, SpawnError> {
        assert!(!self.is_full(), "stack::region::carve: region full");
        // SAFETY: `carved < slots` (asserted), so `carved * slot_size + slot_size <= slots *
        // slot_size = len` (no overflow: `len` was computed with `checked_mul`): in bounds.
        let slot = unsafe { self.start.add(self.carved * self.slot_size) };
        if self.guarded == self.carved {
            self.guard_ahead(guards);
        }
        let costs_map = if self.guarded > self.carved {
            false // guarded by `guard_ahead`
        } else {
            // SAFETY: the slot has never been handed out, so its guard page holds nothing live.
            let costs_map = unsafe { guards.install(slot) }?;
            self.guarded += 1;
            costs_map
        };
        self.carved += 1;
        self.mprotect_guards += usize::from(costs_map);
        Ok(FiberStack::carved(slot.as_ptr() as usize, self.slot_size))
    }

    /// Guards the next batch of slots' pages (as many as are guarded already, within
    /// `FIRST_GUARD_BATCH..=GUARD_BATCH`) with one system call, where the kernel offers
    /// that for guard markers (never for `mprotect` guards, which are budgeted one by one).
    fn guard_ahead(&mut self, guards: &Guards) {
        if !guards.batch_capable() {
            return;
        }
        let total = self.slots;
        let batch = self.guarded.clamp(FIRST_GUARD_BATCH, GUARD_BATCH);
        let pages: Vec<NonNull<u8>> = (self.guarded..total.min(self.guarded + batch))
            // SAFETY: `i < total`, so the slot start lies inside the mapping.
            .map(|i| unsafe { self.start.add(i * self.slot_size) })
            .collect();
        // SAFETY: these slots were never handed out; their guard pages hold nothing live.
        match unsafe { sys::guard_madvise_many(&pages) } {
            Ok(n) => self.guarded += n,
            Err(_) => guards.disable_batches(),
        }
    }

    /// Unmaps the region and returns its `mprotect` guards to the budget.
    ///
    /// # Safety
    /// No `FiberStack` of this region is alive (all were given back and dropped).
    pub(super) unsafe fn unmap(mut self, guards: &Guards) {
        if let Some(reg) = self.registration.take() {
            registry::unregister(reg);
        }
        // SAFETY: the caller guarantees nothing refers into the region any more.
        if unsafe { sys::release(self.start, self.len) }.is_ok() {
            guards.forget_mprotect(self.mprotect_guards);
        }
    }
}

/// Returns the memory of pooled slots to the kernel: their pages read as zero again, their
/// guards survive (guard markers are kept by `MADV_DONTNEED`; `PROT_NONE` is untouched), their
/// headers read as null.
///
/// One `madvise` per run of adjacent slots, not one per slot: each call that drops pages
/// flushes TLBs on every CPU the process runs on (an IPI to each, interrupting busy workers).
/// With 100k sleepers finishing and idle workers trimming 32 slots a time, one call a slot,
/// `madvise` had 11.6% of the run's CPU samples and the flush IPIs 8.7%; merged, 5% and none
/// (`perf record`, lab `spawn`). Slots freed together were mostly carved together, so runs are
/// long.
///
/// # Safety
/// Every stack in `stacks` is pooled: nothing runs on it and nothing points into it.
pub(super) unsafe fn discard_all(stacks: &[FiberStack]) {
    let mut slots: Vec<(usize, usize)> = stacks.iter().map(|s| (s.start, s.slot_size)).collect();
    slots.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(slots.len());
    for (start, len) in slots {
        match runs.last_mut() {
            Some((a, l)) if *a + *l == start => *l += len,
            _ => runs.push((start, len)),
        }
    }
    for (start, len) in runs {
        let start = NonNull::new(start as *mut u8).expect("slot is not at 0");
        // SAFETY: the run is a sequence of adjacent pooled slots (the caller's promise), each
        // inside a mapped region; adjacent slots of two regions are both mapped, so the run
        // has no hole. Failure only leaves memory committed.
        let _ = unsafe { sys::discard(start, len) };
    }
}
