//! `switch`: two units ping-pong through an atomic turn counter. ns per round trip.

use std::time::Duration;

use super::{short_count, Figure, Params, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str = "two units ping-pong N round trips: ns per round trip";

pub const NOTE: &str = "Each unit waits for its parity of a shared atomic turn counter, bumps it and wakes \
the other. OS threads: std park/unpark (futex); the 1-worker row runs them pinned to one CPU (taskset). \
tokio: multi-thread runtime, a tokio::sync::Notify per task. fibra: park/unpark. \
With 2 workers the scheduler places the two units where it likes.";

pub const FIGURES: &[Figure] = &[Figure {
    key: "ns_per_round_trip",
    title: "ns per round trip",
}];

fn rounds(size: Size) -> u64 {
    match size {
        Size::Tiny => 2_000,
        Size::Quick => 200_000,
        Size::Full => 1_000_000,
    }
}

pub fn plan(size: Size, contenders: &[Contender]) -> Vec<Row> {
    let n = rounds(size);
    [1usize, 2]
        .into_iter()
        .map(|workers| Row {
            label: format!(
                "{} worker{}, {} trips",
                workers,
                if workers == 1 { "" } else { "s" },
                short_count(n)
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

pub fn figures(rounds: u64, elapsed: Duration) -> Figures {
    Figures::from([
        (
            "ns_per_round_trip".to_string(),
            elapsed.as_nanos() as f64 / rounds.max(1) as f64,
        ),
        ("elapsed_ms".to_string(), elapsed.as_secs_f64() * 1e3),
    ])
}
