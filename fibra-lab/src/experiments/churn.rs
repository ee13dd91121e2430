//! `churn`: spawn-and-join empty units in batches (spawn a batch, then join it). ns per unit.

use std::time::Duration;

use super::{short_count, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str = "spawn-and-join N empty units, in batches of 10k: ns per unit";

pub const NOTE: &str = "Spawn a batch of 10k (or N if smaller), then join them all; repeat. \
OS threads do fewer units (they are slow); the figure is per unit either way. \
tokio, fibra and Go: one worker per core; Go joins a batch with a sync.WaitGroup (goroutines have \
no join handle).";

pub const FIGURES: &[Figure] = &[Figure {
    key: "ns_per_unit",
    title: "ns per unit (spawn + join)",
    cost: true,
}];

pub const PLOTS: &[PlotSpec] = &[PlotSpec {
    stem: "per-unit",
    key: "ns_per_unit",
    title: "churn: spawn + join of an empty unit, ns",
    axis: "ns per unit (log)",
    shape: PlotShape::Bars { log: true },
}];

/// Units spawned before joining them all.
pub const BATCH: u64 = 10_000;

fn units(size: Size, contender: Contender) -> u64 {
    match (size, contender) {
        (Size::Tiny, Contender::Threads) => 500,
        (Size::Tiny, _) => 2_000,
        (_, Contender::Threads) => 20_000,
        (Size::Quick, _) => 200_000,
        (Size::Full, _) => 1_000_000,
    }
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let runtime_n = units(size, Contender::Fibra);
    let threads_n = units(size, Contender::Threads);
    vec![Row {
        label: format!(
            "N = {} (threads: {})",
            short_count(runtime_n),
            short_count(threads_n)
        ),
        cells: contenders
            .iter()
            .map(|&c| {
                let params = Params {
                    n: units(size, c),
                    workers: cores,
                    pin_one_cpu: false,
                    case: None,
                };
                (c, params)
            })
            .collect(),
    }]
}

/// Batch sizes that add up to `n`.
pub fn batches(n: u64) -> impl Iterator<Item = u64> {
    let full = n / BATCH;
    let rest = n % BATCH;
    std::iter::repeat_n(BATCH, full as usize).chain((rest > 0).then_some(rest))
}

pub fn figures(n: u64, elapsed: Duration) -> Figures {
    Figures::from([
        (
            "ns_per_unit".to_string(),
            elapsed.as_nanos() as f64 / n.max(1) as f64,
        ),
        ("elapsed_ms".to_string(), elapsed.as_secs_f64() * 1e3),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_add_up() {
        assert_eq!(batches(25_000).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
        assert_eq!(batches(500).collect::<Vec<_>>(), [500]);
        assert_eq!(batches(20_000).sum::<u64>(), 20_000);
    }
}
