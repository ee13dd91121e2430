//! Plain counters (plus `Sleeper::sleeps` in `idle.rs`, and fiber runs, which are the
//! monitor's run counter `RunSignal::seq` / 2 and cost nothing extra) for `fibra::debug::metrics`. Each is written by one thread only (a slot's
//! driving thread, or the monitor), with a relaxed load and store (no read-modify-write: a
//! `mov` pair on x86), and read by anyone. Each worker's counters sit on their own cache
//! lines, so no line is written by two workers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Adds one to a counter that only the calling thread writes.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Per worker slot (successive threads of a spare slot continue the counts).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct WorkerStats {
    /// Successful steals from another worker's ring.
    pub(crate) steals: AtomicU64,
    /// Picks served by the run-next slot.
    pub(crate) run_next_hits: AtomicU64,
}

/// Written by the monitor thread.
#[derive(Default)]
pub(crate) struct MonitorStats {
    /// Stall reports delivered (one per stuck episode).
    pub(crate) stall_reports: AtomicU64,
    /// Spare worker threads started.
    pub(crate) spares_started: AtomicU64,
}
