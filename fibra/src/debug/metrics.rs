//! Runtime counters: per worker and per session, read with relaxed loads (each is written by
//! one thread; see `sched/stats.rs`).

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use crate::sched::Shared;

/// One worker slot's counters (configured workers first, then spare slots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// The slot's index.
    pub index: usize,
    /// Whether a thread drives the slot now (spare slots are often dormant).
    pub active: bool,
    /// Fiber runs started (each resume counts: a fiber that parks twice runs three times).
    pub fibers_run: u64,
    /// Successful steals of half another worker's ring.
    pub steals: u64,
    /// Picks served by the run-next slot (a fiber woken by the one running before it).
    pub run_next_hits: u64,
    /// Times the worker went to sleep for lack of work.
    pub times_slept: u64,
    /// Fibers in its stealable ring now (not-yet-started fibers; a hint).
    pub queue_depth: usize,
}

/// One session's counters; see [`metrics`](super::metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Per worker slot.
    pub workers: Vec<WorkerMetrics>,
    /// Fibers spawned and not finished.
    pub live_fibers: usize,
    /// Fibers in the global queue now.
    pub global_queue_depth: usize,
    /// Fiber stacks handed out by the session's pool and not returned to it (in use by
    /// fibers, or cached by workers for the next spawn).
    pub stacks_in_use: usize,
    /// Stack memory regions mapped by the pool.
    pub stack_regions: usize,
    /// Threads alive in the blocking pool.
    pub blocking_threads: usize,
    /// Stall reports the monitor delivered (one per stuck episode).
    pub stall_reports: u64,
    /// Spare worker threads the monitor started.
    pub spares_started: u64,
}

pub(crate) fn collect(shared: &Shared) -> Metrics {
    let workers = shared
        .slots
        .iter()
        .enumerate()
        .map(|(index, s)| WorkerMetrics {
            index,
            active: s.signal.active.load(Relaxed),
            fibers_run: s.signal.runs(),
            steals: s.stats.steals.load(Relaxed),
            run_next_hits: s.stats.run_next_hits.load(Relaxed),
            times_slept: s.sleeper.sleeps.load(Relaxed),
            queue_depth: s.stealer.len(),
        })
        .collect();
    Metrics {
        workers,
        live_fibers: shared.live.load(Relaxed),
        global_queue_depth: shared.inject.len(),
        stacks_in_use: shared.stacks.live(),
        stack_regions: shared.stacks.mapped_regions(),
        blocking_threads: shared.blocking.threads(),
        stall_reports: shared.monitor_stats.stall_reports.load(Relaxed),
        spares_started: shared.monitor_stats.spares_started.load(Relaxed),
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "live fibers {}, global queue {}, stacks in use {} ({} regions), blocking threads {}, \
             stall reports {}, spares started {}",
            self.live_fibers,
            self.global_queue_depth,
            self.stacks_in_use,
            self.stack_regions,
            self.blocking_threads,
            self.stall_reports,
            self.spares_started
        )?;
        writeln!(
            f,
            "worker  active  fibers_run  steals  run_next  slept  queue"
        )?;
        for w in &self.workers {
            writeln!(
                f,
                "{:>6}  {:>6}  {:>10}  {:>6}  {:>8}  {:>5}  {:>5}",
                w.index,
                w.active,
                w.fibers_run,
                w.steals,
                w.run_next_hits,
                w.times_slept,
                w.queue_depth
            )?;
        }
        Ok(())
    }
}
