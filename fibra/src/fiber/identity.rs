//! Who a fiber is: the facts that debugging output and the overflow report print.

use std::panic::Location;

/// Immutable after spawn; lives inside the fiber's control block, so its address is stable
/// for as long as the fiber's stack is in use (the overflow handler reads it through the
/// pointer stored in the stack slot).
#[derive(Debug)]
pub(crate) struct FiberIdentity {
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) stack_size: usize,
}
