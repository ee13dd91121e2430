//! Synchronisation that parks fibers, not threads.

pub(crate) mod waiter;
