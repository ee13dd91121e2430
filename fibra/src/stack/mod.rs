//! # Fiber stacks
//!
//! One slot per fiber, carved out of large `MAP_NORESERVE` regions (never one `mmap` per stack:
//! that costs ~14 µs and two memory maps each, and stops at ~32k stacks, ARCHITECTURE.md §2):
//! ```text
//!   high  +--------------------+ <- slot end
//!         | header (64 B)      |    AtomicPtr<FiberIdentity>, read by the overflow handler
//!         +--------------------+ <- base()          (16-aligned)
//!         | usable stack       |    grows down; each page costs memory on first touch only
//!         +--------------------+
//!         | guard page         |    MADV_GUARD_INSTALL marker, or PROT_NONE on old kernels
//!   low   +--------------------+ <- limit() = slot start
//! ```
//! The guard is installed once, when a slot is first carved; a pooled slot keeps its guard
//! and its touched pages. `region.rs` maps and carves, `registry.rs` tells the signal handler
//! where the slots are, `pool.rs` pools free slots per size class, `cache.rs` puts a per-worker
//! LIFO in front, and `overflow.rs` turns a guard-page fault into a report naming the fiber.
//!
//! Under valgrind (builds with `--cfg fibra_valgrind`, `sys/valgrind.rs`) a slot also tells
//! memcheck what it holds, so memcheck catches what a stackful runtime can get wrong:
//! ```text
//!   event                             request                      catches
//!   slot carved                       guard, stack NOACCESS        (the guard faults anyway)
//!   stack lent to a fiber (`take`)    STACK_REGISTER, UNDEFINED    reads of a previous
//!                                                                  fiber's leftovers
//!   stack given back (`give`)         STACK_DEREGISTER, NOACCESS   a pointer into a finished
//!                                                                  fiber's stack: a wait-list
//!                                                                  node left linked, a borrow
//!                                                                  that outlived its fiber
//! ```
//! The header stays defined throughout: the overflow handler may read it at any time. Only lent
//! stacks are registered, because valgrind searches its stack list linearly on every switch.

mod cache;
mod overflow;
mod pool;
mod region;
mod registry;
#[doc(hidden)]
pub mod test_support;

use std::sync::atomic::{AtomicPtr, Ordering::Release};

use corosensei::stack::{Stack, StackPointer};

use crate::error::SpawnError;
use crate::fiber::identity::FiberIdentity;
use crate::sys;
use crate::sys::valgrind::{self, StackId};

pub(crate) use cache::LocalStackCache;
pub(crate) use overflow::{ensure_alt_stack, install_overflow_handler};
pub(crate) use pool::StackPool;

/// The smallest stack fibra accepts: a panic with `RUST_BACKTRACE=1` already needs ~22 KiB,
/// so below this even error reporting overflows (ARCHITECTURE.md §2).
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;
/// 64 KiB of address space; only touched pages cost memory (one page for a parked fiber).
pub(crate) const DEFAULT_STACK_SIZE: usize = 64 * 1024;
/// The largest stack fibra accepts: 1 GiB, Go's cap on a goroutine stack on 64-bit targets
/// (`runtime.maxstacksize`). A region holds at least `MIN_SLOTS_PER_REGION` (8) slots, so
/// the largest class reserves 8 GiB of address space (`MAP_NORESERVE`: no memory until
/// touched), far below the 128 TiB a 64-bit process has, and no size arithmetic can wrap.
/// A fiber that needs more wants its data on the heap (`Box`, `Vec`), not on its stack.
pub(crate) const MAX_STACK_SIZE: usize = 1 << 30;
/// Bytes at the top of each slot reserved for the [`Header`]; a cache line keeps the stack
/// base 16-aligned and the header off the first frame's line.
const HEADER_SIZE: usize = 64;

/// The slot size (guard + stack + header) for a stack of at least `size` usable bytes: every
/// size gets its own class, so the caller must round the same way for `take` and lookups.
/// `None` if that does not fit in a `usize`.
fn slot_size_for(size: usize) -> Option<usize> {
    let page = sys::page_size();
    size.checked_add(HEADER_SIZE)?
        .checked_next_multiple_of(page)?
        .checked_add(page)
}

/// Checks a requested stack size against `MIN_STACK_SIZE..=MAX_STACK_SIZE` and returns it
/// rounded up to whole pages (what the fiber gets, at least). Any thread.
///
/// # Errors
/// [`SpawnError::StackTooSmall`] or [`SpawnError::StackTooLarge`].
pub(crate) fn checked_stack_size(size: usize) -> Result<usize, SpawnError> {
    if size < MIN_STACK_SIZE {
        return Err(SpawnError::StackTooSmall {
            requested: size,
            minimum: MIN_STACK_SIZE,
        });
    }
    let too_large = SpawnError::StackTooLarge {
        requested: size,
        max: MAX_STACK_SIZE,
    };
    if size > MAX_STACK_SIZE {
        return Err(too_large);
    }
    size.checked_next_multiple_of(sys::page_size())
        .ok_or(too_large)
}

/// The base (highest address, exclusive) of the usable stack of the slot holding `addr`, if
/// `addr` lies in a slot. Any thread; async-signal-safe. The slot may be reused or unmapped
/// at any time after: read what it holds only through `sys::read_own`.
pub(crate) fn stack_base_of(addr: usize) -> Option<usize> {
    registry::slot_end(addr).map(|end| end - HEADER_SIZE)
}

/// The usable stack below `addr` (down to the guard page) in the slot holding `addr`, if
/// `addr` lies in a slot: how deep a call at `addr` may still go. Any thread;
/// async-signal-safe.
#[cfg_attr(
    not(all(
        debug_assertions,
        not(feature = "hooks"),
        target_os = "linux",
        target_env = "gnu",
        not(target_feature = "crt-static"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code)
)]
pub(crate) fn room_below(addr: usize) -> Option<usize> {
    registry::slot(addr).map(|(start, _)| addr.saturating_sub(start + sys::page_size()))
}

/// Lives in the top [`HEADER_SIZE`] bytes of every slot.
#[repr(C, align(64))]
struct Header {
    /// Who runs on this stack, for the overflow report; null while pooled.
    identity: AtomicPtr<FiberIdentity>,
}

/// One stack slot, owned. Obtained from [`StackPool::take`] or [`LocalStackCache::take`] and
/// handed back with `give`; dropping it instead leaks the slot (and its region) but is sound.
pub(crate) struct FiberStack {
    /// Address of the guard page (the slot's lowest byte). Inside a region that stays mapped
    /// while this `FiberStack` exists: the pool unmaps only when no stack is live.
    start: usize,
    slot_size: usize,
    /// Valgrind's name for this stack while a fiber has it (between [`lend`](Self::lend) and
    /// [`returned`](Self::returned)); meaningless otherwise.
    valgrind: StackId,
}

impl FiberStack {
    /// Wraps a freshly carved, guarded slot. It starts out free (as if [`returned`]).
    ///
    /// [`returned`]: Self::returned
    fn carved(start: usize, slot_size: usize) -> FiberStack {
        let page = sys::page_size();
        valgrind::mark_noaccess(start, page);
        let stack = FiberStack {
            start,
            slot_size,
            valgrind: StackId::default(),
        };
        valgrind::mark_noaccess(start + page, stack.size());
        stack
    }

    /// The stack leaves the pools for a fiber: valgrind learns it is a stack, and memcheck
    /// that its bytes are garbage until written. Paired with one [`returned`] (both are
    /// no-ops unless built with `cfg(fibra_valgrind)`, `sys/valgrind.rs`).
    ///
    /// [`returned`]: Self::returned
    fn lend(mut self) -> FiberStack {
        self.valgrind = valgrind::register_stack(self.start, self.start + self.slot_size);
        valgrind::mark_undefined(self.start + sys::page_size(), self.size());
        self
    }

    /// The stack is back from its fiber, which no longer runs on it: memcheck reports any
    /// access below the header until the next [`lend`](Self::lend).
    fn returned(&mut self) {
        valgrind::deregister_stack(self.valgrind);
        valgrind::mark_noaccess(self.start + sys::page_size(), self.size());
    }

    /// Usable bytes between the guard page and the header (at least the size asked for).
    pub(crate) fn size(&self) -> usize {
        self.slot_size - sys::page_size() - HEADER_SIZE
    }

    /// Records who runs on this stack so the overflow handler can name it; null clears it.
    /// `who` must stay valid until it is cleared or the stack is given back. Any thread.
    pub(crate) fn set_identity(&self, who: *const FiberIdentity) {
        // Release pairs with the Acquire load in `overflow::report`: the handler that reads
        // the pointer also sees the identity's fields as they were written before this store.
        self.header().identity.store(who.cast_mut(), Release);
    }

    fn header(&self) -> &Header {
        let addr = self.start + self.slot_size - HEADER_SIZE;
        // SAFETY: the slot's top bytes are mapped read-write for as long as `self` exists
        // (field `start`), 64-aligned (slots are page multiples from a page-aligned region),
        // and hold a valid `Header`: zero (a null pointer) from mmap or `MADV_DONTNEED`, or a
        // pointer stored through this method. Only atomics touch it.
        unsafe { &*(addr as *const Header) }
    }
}

// SAFETY: `limit()` is the guard page's first byte, so the guard is included and any overflow
// faults (the guard is installed before a slot is ever handed out, `region::Region::carve`);
// `base()` is 16-aligned because slots are page multiples from page-aligned regions and
// `HEADER_SIZE` is 64; `size()` >= `MIN_STACK_SIZE` >= corosensei's 4096 because
// `StackPool::take` refuses smaller sizes (`checked_stack_size`). The memory stays mapped
// while `self` lives.
unsafe impl Stack for FiberStack {
    #[inline]
    fn base(&self) -> StackPointer {
        StackPointer::new(self.start + self.slot_size - HEADER_SIZE).expect("slot is not at 0")
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.start).expect("slot is not at 0")
    }
}

#[cfg(all(test, not(miri)))]
mod tests;
