//! Plain counters (plus `Sleeper::sleeps` in `idle.rs`, and fiber runs, which are the
//! monitor's run counter `RunSignal::seq` / 2 and cost nothing extra) for `fibra::debug::metrics`. Each is written by one thread only (a slot's
//! driving thread, or the monitor), with a relaxed load and store (no read-modify-write: a
//! `mov` pair on x86), and read by anyone. Each worker's counters sit on their own cache
//! lines, so no line is written by two workers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::fiber::Header;

/// Wake-to-run latency buckets: bucket `i` counts latencies in `[2^i, 2^(i+1))` ns; the last
/// one also holds everything longer (2^39 ns is ~9 minutes).
pub(crate) const LATENCY_BUCKETS: usize = 40;

/// Fibers whose id is a multiple of 64 have their wake-to-run latency sampled: deciding costs
/// a mask of a field already in cache on both paths, and only the sampled wakes read the
/// clock (~25-80 ns here) on the wake path and again when they run.
#[inline]
pub(crate) fn sampled(fiber: &Header) -> bool {
    fiber.identity.id % 64 == 0
}

/// Any thread, after `unpark` made `fiber` runnable: stamps the wake if it is sampled.
#[inline]
pub(crate) fn stamp_wake(fiber: &Header) {
    if sampled(fiber) {
        let ns = fiber.shared.clock.nanos(Instant::now());
        // Published to the runner by the run queue's Release/Acquire hand-off.
        fiber.watch.woken_at.store(ns.max(1), Relaxed);
    }
}

/// The worker about to run `fiber`: records a sampled wake's latency.
#[inline]
pub(crate) fn record_wake(fiber: &Header, stats: &WorkerStats) {
    if sampled(fiber) {
        record_slow(fiber, stats);
    }
}

#[cold]
fn record_slow(fiber: &Header, stats: &WorkerStats) {
    let woken = fiber.watch.woken_at.load(Relaxed);
    if woken == 0 {
        return; // first run, or a wake by a timer or yield (not sampled)
    }
    fiber.watch.woken_at.store(0, Relaxed);
    let took = fiber
        .shared
        .clock
        .nanos(Instant::now())
        .saturating_sub(woken);
    let bucket = (63 - took.max(1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
    bump(&stats.wake_latency[bucket]);
}

/// Adds one to a counter that only the calling thread writes.
#[inline]
pub(crate) fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// Per worker slot (successive threads of a spare slot continue the counts).
#[repr(align(128))]
pub(crate) struct WorkerStats {
    /// Successful steals from another worker's ring.
    pub(crate) steals: AtomicU64,
    /// Picks served by the run-next slot.
    pub(crate) run_next_hits: AtomicU64,
    /// Fibers spawned by fibers running here (read by the monitor, `stall.rs`).
    pub(crate) spawns: AtomicU64,
    /// Sampled wake-to-run latencies of fibers run here (see [`LATENCY_BUCKETS`]).
    pub(crate) wake_latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            steals: AtomicU64::new(0),
            run_next_hits: AtomicU64::new(0),
            spawns: AtomicU64::new(0),
            wake_latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Written by the monitor thread.
#[derive(Default)]
pub(crate) struct MonitorStats {
    /// Stall reports delivered (one per stuck episode).
    pub(crate) stall_reports: AtomicU64,
    /// Spare worker threads started.
    pub(crate) spares_started: AtomicU64,
}
