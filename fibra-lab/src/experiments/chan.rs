//! `chan`: channels between two units. Ping-pong over two `bounded(1)` channels (ns per round
//! trip) and one producer → one consumer pushing items through `bounded(128)` (ns per item).

use std::time::Duration;

use super::{short_count, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str =
    "channels: ping-pong over bounded(1) both ways (ns per round trip); 1 producer -> 1 consumer through bounded(128) (ns per item)";

pub const NOTE: &str = "fibra: fibra::chan between two fibers. OS threads: crossbeam-channel between two \
std threads (the 1-worker row runs them pinned to one CPU with taskset). tokio: tokio::sync::mpsc between two \
tasks on a multi-thread runtime (mpsc capacity 1 and 128). Throughput moves ITEMS_PER_TRIP x N u64 items.";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "ns_per_round_trip",
        title: "ping-pong: ns per round trip",
        cost: true,
    },
    Figure {
        key: "ns_per_item",
        title: "bounded(128) throughput: ns per item",
        cost: true,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "round-trip",
        key: "ns_per_round_trip",
        title: "chan: ping-pong over bounded(1), ns per round trip",
        axis: "ns per round trip (log)",
        shape: PlotShape::Bars { log: true },
    },
    PlotSpec {
        stem: "throughput",
        key: "ns_per_item",
        title: "chan: bounded(128) throughput, ns per item",
        axis: "ns per item (log)",
        shape: PlotShape::Bars { log: true },
    },
];

/// Items of the throughput half per round trip of the ping-pong half.
pub const ITEMS_PER_TRIP: u64 = 10;

/// Capacity of the throughput channel.
pub const CAPACITY: usize = 128;

fn rounds(size: Size) -> u64 {
    match size {
        Size::Tiny => 2_000,
        Size::Quick => 100_000, // 1M items through bounded(128)
        Size::Full => 200_000,
    }
}

pub fn plan(size: Size, contenders: &[Contender]) -> Vec<Row> {
    let n = rounds(size);
    [1usize, 2]
        .into_iter()
        .map(|workers| Row {
            label: format!(
                "{} worker{}, {} trips, {} items",
                workers,
                if workers == 1 { "" } else { "s" },
                short_count(n),
                short_count(n * ITEMS_PER_TRIP)
            ),
            cells: contenders
                .iter()
                .map(|&c| {
                    let params = Params {
                        n,
                        workers,
                        pin_one_cpu: workers == 1 && c == Contender::Threads,
                    };
                    (c, params)
                })
                .collect(),
        })
        .collect()
}

pub fn figures(rounds: u64, ping_pong: Duration, items: u64, throughput: Duration) -> Figures {
    Figures::from([
        (
            "ns_per_round_trip".to_string(),
            ping_pong.as_nanos() as f64 / rounds.max(1) as f64,
        ),
        (
            "ns_per_item".to_string(),
            throughput.as_nanos() as f64 / items.max(1) as f64,
        ),
    ])
}
