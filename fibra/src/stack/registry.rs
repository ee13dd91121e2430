//! Where the slots are, for the fault handler: a fixed table of regions that a signal handler
//! can read without locks or allocation.
//!
//! # Seqlock per entry
//! Write:  1. CAS `seq` even → odd   2. Release fence   3. store fields   4. `seq` = even+2, Release
//! Read:   1. `seq` Acquire (skip if odd)   2. load fields   3. Acquire fence   4. `seq` again
//! If the reader saw any field of a newer write, its fence synchronises with the writer's fence,
//! so step 4 sees at least the odd value and the reader discards what it read. The handler may
//! interrupt a writer on its own thread, so readers never wait: they skip the entry.
//! Rejected: a `Mutex<Vec<Region>>` (not async-signal-safe: a fault while the lock is held by
//! the same thread would deadlock).

use std::sync::atomic::{fence, AtomicUsize, Ordering::*};

/// 8192 regions of 64 MiB = 512 GiB of default stacks (~7.7 M fibers). The table is 256 KiB of
/// zero pages in `.bss`, committed only as far as it is used. A region that finds no free entry
/// is still guarded (sound) but its overflows are reported as a plain `SIGSEGV`.
const CAPACITY: usize = 8192;

struct Entry {
    seq: AtomicUsize,
    /// Region start; 0 = free entry.
    start: AtomicUsize,
    len: AtomicUsize,
    slot_size: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise `TABLE`
const EMPTY: Entry = Entry {
    seq: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_size: AtomicUsize::new(0),
};

static TABLE: [Entry; CAPACITY] = [EMPTY; CAPACITY];
/// One past the highest entry ever used, so lookups scan only that far.
static USED: AtomicUsize = AtomicUsize::new(0);

/// A registered region; give it back with [`unregister`].
pub(super) struct Registration(usize);

impl Entry {
    /// Runs `write` with the entry locked (odd `seq`) if `seq` was `seq0`; see the module doc.
    fn write(&self, seq0: usize, write: impl FnOnce(&Entry)) -> bool {
        // Acquire pairs with the Release store of `seq` by the previous writer of this entry.
        if self
            .seq
            .compare_exchange(seq0, seq0 + 1, Acquire, Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Release); // pairs with the reader's Acquire fence (module doc, step 3)
        write(self);
        self.seq.store(seq0 + 2, Release); // pairs with the reader's Acquire load of `seq`
        true
    }
}

/// Publishes a region of `len` bytes at `start`, carved into `slot_size` slots. Any thread.
pub(super) fn register(start: usize, len: usize, slot_size: usize) -> Option<Registration> {
    for (i, entry) in TABLE.iter().enumerate() {
        let seq = entry.seq.load(Acquire); // pairs with the Release store ending a write
        if seq % 2 == 1 || entry.start.load(Relaxed) != 0 {
            continue;
        }
        let mut claimed = false;
        let won = entry.write(seq, |e| {
            if e.start.load(Relaxed) == 0 {
                e.len.store(len, Relaxed);
                e.slot_size.store(slot_size, Relaxed);
                e.start.store(start, Relaxed);
                claimed = true;
            }
        });
        if won && claimed {
            USED.fetch_max(i + 1, Release); // pairs with the Acquire load in `find_guard`
            return Some(Registration(i));
        }
    }
    None
}

/// Removes a region before it is unmapped. Any thread.
pub(super) fn unregister(reg: Registration) {
    let entry = &TABLE[reg.0];
    // Only the owner of `reg` writes a claimed entry, so the CAS fails only if `seq` moved
    // under us, which it cannot; loop for robustness anyway.
    while !entry.write(entry.seq.load(Acquire), |e| e.start.store(0, Relaxed)) {}
}

/// The end (exclusive) of the slot holding `addr`: the top of a fiber stack.
/// Async-signal-safe: atomics only, bounded loop, no allocation.
pub(super) fn slot_end(addr: usize) -> Option<usize> {
    slot(addr).map(|(start, size)| start + size)
}

/// The start (its guard page's first byte) and size of the slot holding `addr`.
/// Async-signal-safe, as `slot_end`.
pub(super) fn slot(addr: usize) -> Option<(usize, usize)> {
    let used = USED.load(Acquire); // pairs with `fetch_max` in `register`
    for entry in &TABLE[..used.min(CAPACITY)] {
        let seq = entry.seq.load(Acquire); // pairs with the Release store ending a write
        if seq % 2 == 1 {
            continue;
        }
        let start = entry.start.load(Relaxed);
        let len = entry.len.load(Relaxed);
        let slot_size = entry.slot_size.load(Relaxed);
        fence(Acquire); // pairs with the writer's Release fence (module doc)
        if entry.seq.load(Relaxed) != seq || start == 0 || slot_size == 0 {
            continue;
        }
        if addr < start || addr - start >= len {
            continue;
        }
        return Some((addr - (addr - start) % slot_size, slot_size));
    }
    None
}

/// A slot whose guard page contains the faulting address.
pub(super) struct GuardHit {
    pub(super) slot_start: usize,
    pub(super) slot_size: usize,
}

/// Finds the slot whose guard page (the lowest `guard_len` bytes) contains `addr`.
/// Async-signal-safe: atomics only, bounded loop, no allocation.
pub(super) fn find_guard(addr: usize, guard_len: usize) -> Option<GuardHit> {
    let used = USED.load(Acquire); // pairs with `fetch_max` in `register`
    for entry in &TABLE[..used.min(CAPACITY)] {
        let seq = entry.seq.load(Acquire); // pairs with the Release store ending a write
        if seq % 2 == 1 {
            continue;
        }
        let start = entry.start.load(Relaxed);
        let len = entry.len.load(Relaxed);
        let slot_size = entry.slot_size.load(Relaxed);
        fence(Acquire); // pairs with the writer's Release fence (module doc)
        if entry.seq.load(Relaxed) != seq || start == 0 || slot_size == 0 {
            continue;
        }
        if addr < start || addr - start >= len {
            continue;
        }
        let offset = (addr - start) % slot_size;
        if offset < guard_len {
            return Some(GuardHit {
                slot_start: addr - offset,
                slot_size,
            });
        }
        return None; // inside one of our regions, but not a guard page
    }
    None
}
