//! `spawn`: N units that each sleep 100 ms. Spawn time, total wall, resident memory per unit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{same_for_all, short_count, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str =
    "N units that each sleep 100 ms: spawn time, total wall, resident memory per unit";

pub const NOTE: &str = "RSS per unit = (VmRSS 50 ms after the last spawn − VmRSS before the first) / N. \
OS threads: 64 KiB stacks; tokio and fibra: one worker per core, default fibra stack size. \
Where spawning outlasted the 100 ms sleep, the first units had finished at the sample (cells marked *): \
unjoined OS threads and tokio tasks keep their stack or task cell until joined, a runtime may free a \
finished fiber's stack earlier, so such cells understate the cost of a live unit. \
A contender that fails at some N is skipped at larger N.";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "spawn_ms",
        title: "spawn time, ms (all N created)",
        cost: true,
    },
    Figure {
        key: "wall_ms",
        title: "total wall, ms (until all joined)",
        cost: true,
    },
    Figure {
        key: RSS_KEY,
        title: "resident memory per unit, bytes",
        cost: true,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "memory",
        key: RSS_KEY,
        title: "spawn: resident memory per unit vs N",
        axis: "bytes per unit (VmRSS delta / N)",
        shape: PlotShape::LinesOverN,
    },
    PlotSpec {
        stem: "spawn-time",
        key: "spawn_ms",
        title: "spawn: time to create N units",
        axis: "ms",
        shape: PlotShape::LinesOverN,
    },
    PlotSpec {
        stem: "wall",
        key: "wall_ms",
        title: "spawn: total wall until N sleepers (100 ms) joined",
        axis: "ms",
        shape: PlotShape::LinesOverN,
    },
];

/// Figure: resident bytes per unit.
pub const RSS_KEY: &str = "rss_per_unit_bytes";

/// Figure: units still asleep at the RSS sample (JSON only; marks table cells with `*`).
pub const ALIVE_KEY: &str = "alive_at_sample";

/// How long each unit sleeps.
pub const UNIT_SLEEP: Duration = Duration::from_millis(100);
/// When, after the last spawn, the RSS is sampled (all units still asleep).
pub const SAMPLE_AFTER: Duration = Duration::from_millis(50);
/// OS threads' stack size.
pub const THREAD_STACK: usize = 64 * 1024;

/// Units spawned and not yet woken: how many were alive when RSS was sampled.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Units spawned so far (quoted when a child dies mid-spawn).
static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// Call right before spawning a unit.
pub fn unit_spawned() {
    LIVE.fetch_add(1, Ordering::Relaxed);
    SPAWNED.fetch_add(1, Ordering::Relaxed);
}

/// Units spawned so far.
pub fn units_spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
}

/// Call in the unit, right after its sleep.
pub fn unit_woke() {
    LIVE.fetch_sub(1, Ordering::Relaxed);
}

/// Units alive now.
pub fn live_units() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

fn sizes(size: Size) -> &'static [u64] {
    match size {
        Size::Tiny => &[200],
        Size::Quick => &[1_000, 10_000, 100_000],
        Size::Full => &[1_000, 10_000, 100_000, 1_000_000],
    }
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    sizes(size)
        .iter()
        .map(|&n| Row {
            label: format!("N = {}", short_count(n)),
            cells: same_for_all(
                contenders,
                &Params {
                    n,
                    workers: cores,
                    pin_one_cpu: false,
                },
            ),
        })
        .collect()
}

/// The figures of one run, from what the peer measured.
pub struct Sample {
    pub n: u64,
    pub spawn: Duration,
    pub wall: Duration,
    pub rss_before: u64,
    pub rss_during: u64,
    pub alive_at_sample: u64,
}

impl Sample {
    pub fn figures(&self) -> Figures {
        let delta = self.rss_during.saturating_sub(self.rss_before) as f64;
        Figures::from([
            ("spawn_ms".to_string(), self.spawn.as_secs_f64() * 1e3),
            ("wall_ms".to_string(), self.wall.as_secs_f64() * 1e3),
            (RSS_KEY.to_string(), delta / self.n.max(1) as f64),
            ("rss_delta_bytes".to_string(), delta),
            (ALIVE_KEY.to_string(), self.alive_at_sample as f64),
        ])
    }
}
