//! Fibers: the control block, its state word, the stack switch, and the public handles.

pub(crate) mod cancel;
mod handle;
pub(crate) mod header;
pub(crate) mod identity;
pub(crate) mod join;
pub(crate) mod local;
mod spawn;
pub(crate) mod state;
pub(crate) mod switch;
pub(crate) mod watch;

pub use handle::{current, park, try_current, yield_now, Fiber, FiberId};
pub(crate) use header::{FiberRef, Header};
pub use join::JoinHandle;
pub(crate) use join::{fiber_root, wait_complete, Packet, StartRef};
pub(crate) use local::drop_at_exit;
pub use local::{AccessError, LocalKey};
pub(crate) use spawn::{next_fiber_id, spawn_raw, SpawnSpec};
pub use spawn::{spawn, Builder};
pub(crate) use state::{AfterPark, AfterUnpark};
pub(crate) use switch::{Suspend, Switched};

/// A never-run fiber header with id `id`, for unit tests.
#[cfg(test)]
pub(crate) fn test_fiber(shared: &std::sync::Arc<crate::sched::Shared>, id: u64) -> FiberRef {
    let identity = identity::FiberIdentity {
        id,
        name: None,
        location: std::panic::Location::caller(),
        stack_size: 0,
    };
    std::sync::Arc::new(Header::new(identity, shared.clone()))
}
