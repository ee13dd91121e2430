//! I/O readiness for fibers: the reactors the workers poll, and the lazily registered source
//! every `fibra::net` socket is built on.
//!
//! - `reactor/`: one `mio::Poll` per worker slot, its registrations and the readiness protocol.
//! - `worker_io()`: what a layer with per-worker state of its own (`fs/`'s io_uring) needs to
//!   know about the worker the caller runs on.
//! - `source.rs`: a non-blocking fd that parks the calling fiber on `WouldBlock` (or, on a
//!   plain thread, blocks in `poll(2)`), with optional deadlines.

pub(crate) mod reactor;
pub(crate) mod source;

/// The worker the calling fiber runs on, as an I/O layer with per-thread state sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WorkerIo {
    /// Names the session and slot: the address of the slot's reactor, which lives as long as
    /// the session. A thread that drives a slot of a new session sees a new value.
    pub(crate) session: usize,
    /// False under the migration opt-in: a parked fiber may then resume on another thread,
    /// so per-thread state must not be left waiting for it.
    pub(crate) pinned: bool,
}

/// Any thread: `Some` on a worker thread, with a fiber running on it.
pub(crate) fn worker_io() -> Option<WorkerIo> {
    crate::sched::context::with_worker(|w| {
        let w = w?;
        if w.current.get().is_null() {
            return None;
        }
        Some(WorkerIo {
            session: std::sync::Arc::as_ptr(&w.shared.slots[w.index].reactor) as usize,
            pinned: !w.shared.config.migrate,
        })
    })
}

/// The bytes a vectored read may deliver: the sum of the lengths of the buffers `readv(2)` is
/// given (std passes at most the first 1,024, Linux's `IOV_MAX`), so that a read filling
/// less than this emptied the socket.
pub(crate) fn vectored_len(bufs: &[std::io::IoSliceMut<'_>]) -> usize {
    const IOV_MAX: usize = 1024;
    bufs.iter()
        .take(IOV_MAX)
        .fold(0usize, |n, b| n.saturating_add(b.len()))
}
