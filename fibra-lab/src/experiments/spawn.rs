//! `spawn`: N units that each sleep 100 ms. Spawn time, total wall, resident memory per unit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{same_for_all, short_count, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;
use crate::stats::Summary;

pub const DESCRIPTION: &str =
    "N units that each sleep 100 ms: spawn time, total wall, resident memory per unit";

pub const NOTE: &str = "RSS per unit = (VmRSS 50 ms after the last spawn − VmRSS before the first) / N. \
OS threads: 64 KiB stacks; tokio, fibra and Go: one worker per core, default fibra stack size; \
Go joins with a sync.WaitGroup. \
Where spawning outlasted the 100 ms sleep, the first units had finished at the sample (cells marked *): \
unjoined OS threads and tokio tasks keep their stack or task cell until joined, a runtime may free a \
finished fiber's stack earlier, so such cells understate the cost of a live unit. \
A contender that fails at some N is skipped at larger N. --full keeps doubling N past 1M \
until each contender fails, or would exceed half of MemAvailable or half of the child timeout \
(projected from its smaller runs), or reaches 64M.";

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

/// `--full` doubles N past 1M up to this, unless a contender fails or reaches a cap first
/// (see [`beyond_caps`]). 64M fibers of one 4 KiB page each would be 256 GiB: far past any
/// machine the memory cap lets through, so in practice the caps or a failure end the sweep.
pub const HARD_CAP: u64 = 64_000_000;

/// Share of MemAvailable (read when the experiment starts) one run may be projected to use.
pub const MEMORY_SHARE: f64 = 0.5;

/// Share of the child timeout one run may be projected to take.
pub const TIME_SHARE: f64 = 0.5;

fn sizes(size: Size) -> Vec<u64> {
    match size {
        Size::Tiny => vec![200],
        Size::Quick => vec![1_000, 10_000, 100_000],
        Size::Full => {
            let mut sizes = vec![1_000, 10_000, 100_000, 1_000_000];
            while let Some(&last) = sizes.last().filter(|&&n| n * 2 <= HARD_CAP) {
                sizes.push(last * 2);
            }
            sizes
        }
    }
}

/// Why a contender whose last success was at `last_n` (with `last` figures) should not try
/// `n`: the projected memory (n × the largest per-unit RSS seen so far) exceeds
/// [`MEMORY_SHARE`] of `mem_available`, or the projected wall (scaled linearly) exceeds
/// [`TIME_SHARE`] of `timeout`. Only sizes above 1M are capped: the sizes every profile shares
/// always run (and may fail).
pub fn beyond_caps(
    n: u64,
    last_n: u64,
    last: &BTreeMap<String, Summary>,
    max_rss_per_unit: f64,
    timeout: Duration,
    mem_available: Option<u64>,
) -> Option<String> {
    if n <= 1_000_000 || last_n == 0 {
        return None;
    }
    if let Some(available) = mem_available {
        let projected = n as f64 * max_rss_per_unit;
        let cap = available as f64 * MEMORY_SHARE;
        if projected > cap {
            return Some(format!(
                "stopped by the memory cap: {} × {:.0} B/unit ≈ {:.1} GiB projected > {:.1} GiB \
                 ({:.0}% of MemAvailable)",
                short_count(n),
                max_rss_per_unit,
                projected / GIB,
                cap / GIB,
                MEMORY_SHARE * 100.0
            ));
        }
    }
    if let Some(wall) = last.get("wall_ms") {
        let projected_s = wall.max / 1e3 * n as f64 / last_n as f64;
        let cap_s = timeout.as_secs_f64() * TIME_SHARE;
        if projected_s > cap_s {
            return Some(format!(
                "stopped by the time cap: ≈ {projected_s:.0} s projected at {} > {cap_s:.0} s \
                 ({:.0}% of the child timeout)",
                short_count(n),
                TIME_SHARE * 100.0
            ));
        }
    }
    None
}

const GIB: f64 = (1u64 << 30) as f64;

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
                    case: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn last(wall_ms: f64) -> BTreeMap<String, Summary> {
        BTreeMap::from([("wall_ms".to_string(), Summary::of(&[wall_ms]).unwrap())])
    }

    #[test]
    fn full_doubles_up_to_the_hard_cap() {
        let full = sizes(Size::Full);
        assert_eq!(&full[..5], &[1_000, 10_000, 100_000, 1_000_000, 2_000_000]);
        assert_eq!(full.last(), Some(&HARD_CAP));
    }

    #[test]
    fn caps_stop_the_sweep_only_past_1m() {
        let timeout = Duration::from_secs(180);
        let gib = 1u64 << 30;
        // 1M always runs, whatever the projection.
        assert!(beyond_caps(1_000_000, 100_000, &last(1e6), 1e9, timeout, Some(gib)).is_none());
        // 2M × 4 KiB = 8 GiB: fits in half of 32 GiB, not in half of 8 GiB.
        assert!(beyond_caps(
            2_000_000,
            1_000_000,
            &last(1e3),
            4096.0,
            timeout,
            Some(32 * gib)
        )
        .is_none());
        let memory = beyond_caps(
            2_000_000,
            1_000_000,
            &last(1e3),
            4096.0,
            timeout,
            Some(8 * gib),
        );
        assert!(memory.is_some_and(|r| r.contains("memory cap")));
        // 60 s at 1M projects 120 s at 2M: over half of 180 s.
        let time = beyond_caps(2_000_000, 1_000_000, &last(60e3), 100.0, timeout, None);
        assert!(time.is_some_and(|r| r.contains("time cap")));
    }
}
