//! Hidden hooks for `tests/stack_overflow.rs`: integration tests cannot reach `pub(crate)`
//! items, so these thin wrappers expose just what the overflow tests drive. Not API.

use std::panic::Location;

use corosensei::stack::StackPointer;

use std::sync::Arc;

use super::{FiberStack, LocalStackCache, StackPool};
use crate::fiber::identity::FiberIdentity;
use crate::SpawnError;

/// A `StackPool` (the stack pool of a runtime session).
pub struct Pool(Arc<StackPool>);

/// A `LocalStackCache` (for benchmarks).
pub struct Cache(LocalStackCache);

/// A `FiberStack`; usable with `corosensei::Coroutine::with_stack`.
pub struct Stack(FiberStack);

/// A `FiberIdentity`.
pub struct Identity(FiberIdentity);

impl Pool {
    /// `StackPool::new()`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Pool {
        Pool(Arc::new(StackPool::new()))
    }

    /// A pool that returns the memory of every released slot with `MADV_DONTNEED`.
    pub fn discarding_every_release() -> Pool {
        Pool(Arc::new(StackPool::with_high_water(0)))
    }

    /// `StackPool::take`.
    pub fn take(&self, size: usize) -> Result<Stack, SpawnError> {
        self.0.take(size).map(Stack)
    }

    /// `StackPool::give`, then `trim` (which discards every free slot of a
    /// `discarding_every_release` pool).
    pub fn give(&self, stack: Stack) {
        self.0.give(stack.0);
        self.0.trim(usize::MAX);
    }

    /// A worker cache in front of this pool.
    pub fn cache(&self) -> Cache {
        Cache(LocalStackCache::new(self.0.clone()))
    }

    /// `StackPool::mprotect_guards`.
    pub fn mprotect_guards(&self) -> usize {
        self.0.mprotect_guards()
    }
}

impl Cache {
    /// `LocalStackCache::take`.
    pub fn take(&mut self, size: usize) -> Result<Stack, SpawnError> {
        self.0.take(size).map(Stack)
    }

    /// `LocalStackCache::give`.
    pub fn give(&mut self, stack: Stack) {
        self.0.give(stack.0)
    }
}

impl Stack {
    /// `FiberStack::size`.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// `FiberStack::set_identity`. `who` must outlive the stack's use (tests leak it).
    pub fn set_identity(&self, who: &'static Identity) {
        self.0.set_identity(&who.0)
    }

    /// The lowest address of the slot: the first byte of its guard page.
    pub fn guard_start(&self) -> usize {
        self.0.start
    }
}

// SAFETY: forwards to `FiberStack`, whose implementation upholds the trait's contract.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        self.0.base()
    }

    fn limit(&self) -> StackPointer {
        self.0.limit()
    }
}

impl Identity {
    /// A leaked identity (the overflow handler may read it until the process ends).
    pub fn leak(
        id: u64,
        name: Option<&str>,
        location: &'static Location<'static>,
        stack_size: usize,
    ) -> &'static Identity {
        Box::leak(Box::new(Identity(FiberIdentity {
            id,
            name: name.map(Box::from),
            location,
            stack_size,
        })))
    }
}

/// `stack::install_overflow_handler`.
pub fn install_overflow_handler() {
    super::install_overflow_handler()
}

/// `stack::ensure_alt_stack`.
pub fn ensure_alt_stack() {
    super::ensure_alt_stack()
}
