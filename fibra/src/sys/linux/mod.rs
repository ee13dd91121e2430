//! Linux backend of [`crate::sys`].

pub(crate) mod mem;
pub(crate) mod signal;
pub(crate) mod thread;
