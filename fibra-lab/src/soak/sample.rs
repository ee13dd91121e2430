//! What the soak watches in its own process: resident memory, open descriptors and threads
//! from /proc, live fibers from `fibra::debug`, and the load's counters.

use std::collections::VecDeque;
use std::fs;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::work::Tally;
use crate::load::builtin::Counts;
use crate::machine::vm_rss_bytes;

/// Descriptors and threads are read every [`READING_GAP`], and each sample reports, beside
/// the last reading, the least over a span before it (its *floor*; the span is the
/// [`PERIOD`](super::PERIOD), or half the warm-up if that is less):
/// connections being reopened and blocking-pool threads coming and going make single readings
/// jitter by tens, while a leak raises the floor.
pub const READING_GAP: Duration = Duration::from_millis(100);

/// The descriptor and thread counts read over the last `span`.
#[derive(Debug)]
pub struct Window {
    span: Duration,
    readings: VecDeque<(Instant, u64, u64)>,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window {
            span,
            readings: VecDeque::new(),
        }
    }

    /// Reads both counts now (and forgets readings older than the span); returns them.
    pub fn read(&mut self) -> Result<(u64, u64), String> {
        let (fds, threads) = (open_fds()?, thread_count()?);
        let now = Instant::now();
        self.readings.push_back((now, fds, threads));
        while let Some(&(at, _, _)) = self.readings.front() {
            if now.duration_since(at) <= self.span {
                break;
            }
            self.readings.pop_front();
        }
        Ok((fds, threads))
    }

    /// The least descriptor and thread counts within the span (`u64::MAX` before a reading).
    pub fn floor(&self) -> (u64, u64) {
        let fds = self.readings.iter().map(|r| r.1).min();
        let threads = self.readings.iter().map(|r| r.2).min();
        (fds.unwrap_or(u64::MAX), threads.unwrap_or(u64::MAX))
    }
}

/// The runtime's own figures (`fibra::debug::Metrics`) at a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeFigures {
    pub live_fibers: usize,
    pub stacks_in_use: usize,
    /// Worker threads running now: the configured ones and any spares.
    pub active_workers: usize,
    pub blocking_threads: usize,
}

impl RuntimeFigures {
    pub fn of(m: &fibra::debug::Metrics) -> RuntimeFigures {
        RuntimeFigures {
            live_fibers: m.live_fibers,
            stacks_in_use: m.stacks_in_use,
            active_workers: m.workers.iter().filter(|w| w.active).count(),
            blocking_threads: m.blocking_threads,
        }
    }
}

/// One look at the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub secs: f64,
    pub rss_bytes: u64,
    /// Open descriptors and threads: the last reading and the window's floor.
    pub fds: u64,
    pub fds_floor: u64,
    pub threads: u64,
    pub threads_floor: u64,
    pub runtime: RuntimeFigures,
    pub progress: Progress,
}

/// The load's running totals (each a count of completed operations).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub requests: u64,
    pub connections: u64,
    pub spawned: u64,
    pub items: u64,
    pub sleeps: u64,
    pub blocking: u64,
}

impl Progress {
    pub fn read(http: &Counts, tally: &Tally) -> Progress {
        Progress {
            requests: http.answered.load(Relaxed),
            connections: http.opened.load(Relaxed),
            spawned: tally.spawned.load(Relaxed),
            items: tally.items_received.load(Relaxed),
            sleeps: tally.sleeps_ended.load(Relaxed),
            blocking: tally.blocking_returned.load(Relaxed),
        }
    }

    /// The kinds of operation that did not move since `earlier`.
    pub fn stalled_since(&self, earlier: &Progress) -> Vec<&'static str> {
        [
            ("http", self.requests, earlier.requests),
            ("spawn", self.spawned, earlier.spawned),
            ("channels", self.items, earlier.items),
            ("sleepers", self.sleeps, earlier.sleeps),
            ("blocking", self.blocking, earlier.blocking),
        ]
        .into_iter()
        .filter(|&(_, now, then)| now == then)
        .map(|(name, _, _)| name)
        .collect()
    }
}

impl Sample {
    /// A sample now, with one more reading in `window`.
    pub fn take(
        secs: f64,
        window: &mut Window,
        runtime: RuntimeFigures,
        progress: Progress,
    ) -> Result<Sample, String> {
        let (fds, threads) = window.read()?;
        let (fds_floor, threads_floor) = window.floor();
        Ok(Sample {
            secs,
            rss_bytes: vm_rss_bytes()?,
            fds,
            fds_floor,
            threads,
            threads_floor,
            runtime,
            progress,
        })
    }

    /// The periodic line: the figures, then rates since `prev`.
    pub fn line(&self, label: &str, prev: &Sample) -> String {
        let dt = (self.secs - prev.secs).max(1e-9);
        let rate = |now: u64, then: u64| per_second(now.saturating_sub(then) as f64 / dt);
        let (p, q) = (&self.progress, &prev.progress);
        format!(
            "soak: t={:>4.0}s{label} rss={:.1}MiB fds={} (floor {}) threads={} (floor {}; workers {}, blocking {}) fibers={} stacks={} | http {}/s conns {}/s spawn {}/s chan {}/s sleeps {}/s blocking {}/s",
            self.secs,
            self.rss_bytes as f64 / (1024.0 * 1024.0),
            self.fds,
            self.fds_floor,
            self.threads,
            self.threads_floor,
            self.runtime.active_workers,
            self.runtime.blocking_threads,
            self.runtime.live_fibers,
            self.runtime.stacks_in_use,
            rate(p.requests, q.requests),
            rate(p.connections, q.connections),
            rate(p.spawned, q.spawned),
            rate(p.items, q.items),
            rate(p.sleeps, q.sleeps),
            rate(p.blocking, q.blocking),
        )
    }
}

/// `812`, `41.3k`, `1.20M`.
fn per_second(x: f64) -> String {
    match x {
        x if x < 1e3 => format!("{x:.0}"),
        x if x < 1e6 => format!("{:.1}k", x / 1e3),
        x => format!("{:.2}M", x / 1e6),
    }
}

/// Entries of /proc/self/fd (the directory's own descriptor included: one, every time).
pub fn open_fds() -> Result<u64, String> {
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .map_err(|e| format!("cannot list /proc/self/fd: {e}"))
}

/// What each open descriptor is (/proc/self/fd's links), sorted.
pub fn fd_targets() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .map(|e| match fs::read_link(e.path()) {
            Ok(t) => t.display().to_string(),
            Err(_) => "(closed)".into(), // the directory's own descriptor, gone by now
        })
        .collect();
    out.sort();
    out
}

/// This process's threads by name (/proc/self/task/*/comm): `fibra-worker-0 ×1, …`.
pub fn thread_names() -> String {
    let mut names = std::collections::BTreeMap::<String, u32>::new();
    if let Ok(dir) = fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            *names.entry(name.trim().to_string()).or_default() += 1;
        }
    }
    names
        .iter()
        .map(|(n, c)| format!("{n} ×{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Threads:` of /proc/self/status.
pub fn thread_count() -> Result<u64, String> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| "cannot read Threads from /proc/self/status".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(open_fds().unwrap() >= 3);
        assert!(thread_count().unwrap() >= 1);
        let mut window = Window::new(Duration::from_secs(1));
        let s = Sample::take(
            0.0,
            &mut window,
            RuntimeFigures::default(),
            Progress::default(),
        )
        .unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.fds_floor <= s.fds && s.threads_floor <= s.threads);
        let line = s.line("", &s);
        assert!(line.starts_with("soak: t=   0s rss="), "{line}");
        assert!(line.contains(" fibers=0 "), "{line}");
        assert!(thread_names().contains(" ×"));
        assert!(fd_targets().len() >= 3);
    }

    #[test]
    fn the_floor_forgets_old_readings() {
        let mut w = Window::new(Duration::from_secs(10));
        w.read().unwrap();
        let (at, fds, threads) = w.readings[0];
        w.readings[0] = (at - Duration::from_secs(11), 1, 1); // an old, low reading
        w.readings
            .push_back((at - Duration::from_secs(5), fds + 7, threads + 7));
        assert_eq!(w.floor(), (1, 1));
        w.read().unwrap(); // drops the old one
        assert_eq!(w.readings.len(), 2);
        assert!(w.floor().0 >= fds.saturating_sub(2));
    }

    #[test]
    fn names_what_stalled() {
        let a = Progress {
            requests: 5,
            spawned: 5,
            items: 5,
            sleeps: 5,
            blocking: 5,
            connections: 1,
        };
        let b = Progress {
            requests: 9,
            sleeps: 9,
            ..a
        };
        assert_eq!(b.stalled_since(&a), ["spawn", "channels", "blocking"]);
    }

    #[test]
    fn rates_read_short() {
        assert_eq!(per_second(812.4), "812");
        assert_eq!(per_second(41_290.0), "41.3k");
        assert_eq!(per_second(1_204_000.0), "1.20M");
    }
}
