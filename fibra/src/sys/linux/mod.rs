//! Linux backend of [`crate::sys`].

pub(crate) mod capture;
pub(crate) mod mem;
pub(crate) mod peek;
pub(crate) mod signal;
pub(crate) mod thread;
pub(crate) mod unwind;
