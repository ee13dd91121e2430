//! Runtime counters: per worker and per session, read with relaxed loads (each is written by
//! one thread; see `sched/stats.rs`).

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::sched::stats::LATENCY_BUCKETS;
use crate::sched::Shared;

/// One worker slot's counters (configured workers first, then spare slots).
///
/// ```
/// let rt = fibra::Runtime::builder().workers(2).max_spare_workers(1).build().unwrap();
/// let m = rt.run(|| fibra::debug::metrics().unwrap());
/// let indexes: Vec<usize> = m.workers.iter().map(|w| w.index).collect();
/// assert_eq!(indexes, [0, 1, 2]); // two workers, then the spare slot
/// assert!(m.workers.iter().any(|w| w.active && w.fibers_run >= 1)); // the one running us
/// ```
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
    /// Polls of its reactor (`epoll_wait` calls, blocking or not).
    pub reactor_polls: u64,
    /// Fiber wake-ups its reactor's events released (a read, write or accept that may go on).
    pub io_wakeups: u64,
}

/// Sampled wake-to-run latencies: how long a fiber waited between the unpark that made it
/// runnable and the start of its run. Fibers whose id is a multiple of 64 are sampled (wakes
/// by `unpark`, any `Waker`, channels and locks; not timer expiries), so the hot path pays a
/// clock read only for those.
///
/// ```
/// use std::time::Duration;
/// let mut h = fibra::debug::LatencyHistogram::default();
/// h.buckets = vec![0, 0, 3, 1]; // three latencies in [4, 8) ns, one in [8, 16) ns
/// assert_eq!(h.samples(), 4);
/// assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(8)));
/// assert_eq!(h.to_string(), "4 samples, p50 < 8 ns, p99 < 16 ns, max < 16 ns");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LatencyHistogram {
    /// Bucket `i` counts latencies in `[2^i, 2^(i+1))` ns (the last also holds longer ones).
    pub buckets: Vec<u64>,
}

impl LatencyHistogram {
    /// Samples recorded.
    ///
    /// ```
    /// assert_eq!(fibra::debug::LatencyHistogram::default().samples(), 0);
    /// ```
    pub fn samples(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// An upper bound of the `p`-quantile (`0.0..=1.0`), or `None` without samples.
    ///
    /// ```
    /// let m = fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
    ///     fibra::debug::metrics().unwrap()
    /// });
    /// if let Some(p99) = m.wake_to_run.quantile(0.99) {
    ///     assert!(p99 > std::time::Duration::ZERO);
    /// }
    /// ```
    pub fn quantile(&self, p: f64) -> Option<Duration> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(1u64 << (i + 1).min(63)));
            }
        }
        None
    }
}

impl fmt::Display for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.quantile(0.5), self.quantile(0.99), self.quantile(1.0)) {
            (Some(p50), Some(p99), Some(max)) => write!(
                f,
                "{} samples, p50 < {}, p99 < {}, max < {}",
                self.samples(),
                human(p50),
                human(p99),
                human(max)
            ),
            _ => write!(f, "no samples"),
        }
    }
}

/// `1.5 µs`, `8.4 ms`: bucket bounds are powers of two, so two digits say enough.
fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    match ns {
        n if n < 1e3 => format!("{n:.0} ns"),
        n if n < 1e6 => format!("{:.1} µs", n / 1e3),
        n if n < 1e9 => format!("{:.1} ms", n / 1e6),
        n => format!("{:.1} s", n / 1e9),
    }
}

/// One session's counters; see [`metrics`](super::metrics).
///
/// ```
/// let m = fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let (tx, rx) = fibra::chan::bounded::<()>(0);
///     let h = fibra::spawn(move || rx.recv().is_err());
///     let m = fibra::debug::metrics().unwrap();
///     drop(tx);
///     assert!(h.join().unwrap());
///     m
/// });
/// assert_eq!(m.live_fibers, 2); // the root fiber and the receiver
/// assert!(m.stacks_in_use >= 1);
/// ```
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
    /// Sampled wake-to-run latencies, all workers together.
    pub wake_to_run: LatencyHistogram,
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
            reactor_polls: s.reactor.counts().0,
            io_wakeups: s.reactor.counts().1,
        })
        .collect();
    let buckets = (0..LATENCY_BUCKETS)
        .map(|b| {
            shared
                .slots
                .iter()
                .map(|s| s.stats.wake_latency[b].load(Relaxed))
                .sum()
        })
        .collect();
    Metrics {
        wake_to_run: LatencyHistogram { buckets },
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
            "wake-to-run (1 fiber in 64 sampled): {}",
            self.wake_to_run
        )?;
        writeln!(
            f,
            "worker  active  fibers_run  steals  run_next  slept  queue  polls  io_wakeups"
        )?;
        for w in &self.workers {
            writeln!(
                f,
                "{:>6}  {:>6}  {:>10}  {:>6}  {:>8}  {:>5}  {:>5}  {:>5}  {:>10}",
                w.index,
                w.active,
                w.fibers_run,
                w.steals,
                w.run_next_hits,
                w.times_slept,
                w.queue_depth,
                w.reactor_polls,
                w.io_wakeups
            )?;
        }
        Ok(())
    }
}
