//! I/O readiness for fibers: the reactors the workers poll, and the lazily registered source
//! every `fibra::net` socket is built on.
//!
//! - `reactor/`: one `mio::Poll` per worker slot, its registrations and the readiness protocol.
//! - `source.rs`: a non-blocking fd that parks the calling fiber on `WouldBlock` (or, on a
//!   plain thread, blocks in `poll(2)`), with optional deadlines.

pub(crate) mod reactor;
pub(crate) mod source;
