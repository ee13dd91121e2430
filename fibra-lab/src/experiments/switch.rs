//! `switch`: two units ping-pong through an atomic turn counter. ns per round trip.

use std::thread::{self, ThreadId};
use std::time::Duration;

use super::{short_count, Figure, Params, PlotShape, PlotSpec, Row, Size, THREADS_SHARE};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str = "two units ping-pong N round trips: ns per round trip";

pub const NOTE: &str = "Each unit waits for its parity of a shared atomic turn counter, bumps it and wakes \
the other. OS threads: std park/unpark (futex); the 1-worker row runs them pinned to one CPU (taskset). \
tokio: multi-thread runtime, a tokio::sync::Notify per task \
(as fast as or faster than unbounded mpsc here; bounded mpsc is slower). fibra: park/unpark. \
Go (no park/unpark): two unbuffered channels, GOMAXPROCS = workers. \
With 2 workers, fibra's two fibers are placed on different workers (the first spins until the \
second has started elsewhere; started fibers stay put), so its row is a cross-thread ping-pong; \
tokio and threads place the units where they like: the placement table shows \
how often (sampled every 1024 trips) both were on the same OS thread. \
In the \"placed by the scheduler\" row every runtime places the units itself: fibra without the \
forced split (the second fiber starts wherever fibra's scheduler puts it; an idle worker steals it \
only if it waited long enough, sched/steal.rs), the others as in the 2-worker row.";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "ns_per_round_trip",
        title: "ns per round trip",
        cost: true,
    },
    Figure {
        key: SAME_THREAD_KEY,
        title: "placement: % of samples with both units on the same OS thread",
        cost: false,
    },
];

pub const PLOTS: &[PlotSpec] = &[PlotSpec {
    stem: "round-trip",
    key: "ns_per_round_trip",
    title: "switch: ping-pong, ns per round trip",
    axis: "ns per round trip (log)",
    shape: PlotShape::Bars { log: true },
}];

/// `--case` of fibra's row where its scheduler places the two fibers (no forced split).
pub const PLACED: &str = "placed";

/// Figure: where the scheduler put the two units.
pub const SAME_THREAD_KEY: &str = "same_thread_pct";

/// Each unit notes its OS thread every this many round trips.
const SAMPLE_EVERY: u64 = 1024;

/// The OS threads one unit ran on, sampled every [`SAMPLE_EVERY`] round trips.
pub struct Placement(Vec<ThreadId>);

impl Placement {
    pub fn new(rounds: u64) -> Placement {
        Placement(Vec::with_capacity((rounds / SAMPLE_EVERY + 1) as usize))
    }

    /// Call once per round trip `i`.
    #[inline]
    pub fn sample(&mut self, i: u64) {
        if i % SAMPLE_EVERY == 0 {
            self.0.push(thread::current().id());
        }
    }

    /// Percentage of samples at which both units were on the same OS thread.
    pub fn same_thread_pct(&self, other: &Placement) -> f64 {
        let pairs = self.0.len().min(other.0.len());
        if pairs == 0 {
            return 0.0;
        }
        let same = self.0.iter().zip(&other.0).filter(|(a, b)| a == b).count();
        same as f64 * 100.0 / pairs as f64
    }
}

fn rounds(size: Size) -> u64 {
    match size {
        Size::Tiny => 2_000,
        Size::Quick => 200_000,
        Size::Full => 1_000_000,
    }
}

pub fn plan(size: Size, contenders: &[Contender]) -> Vec<Row> {
    let n = rounds(size);
    let mut rows: Vec<Row> = [1usize, 2]
        .into_iter()
        .map(|workers| Row {
            label: format!(
                "{} worker{}, {} trips (threads: {})",
                workers,
                if workers == 1 { "" } else { "s" },
                short_count(n),
                short_count(n / THREADS_SHARE)
            ),
            cells: contenders
                .iter()
                .map(|&c| {
                    let params = Params {
                        n: if c == Contender::Threads {
                            n / THREADS_SHARE
                        } else {
                            n
                        },
                        workers,
                        pin_one_cpu: workers == 1 && c == Contender::Threads,
                        case: None,
                    };
                    (c, params)
                })
                .collect(),
        })
        .collect();
    // Every runtime places the two units itself: fibra without its forced split; the others
    // as in the 2-worker row (they place their units as they like there too).
    rows.push(Row {
        label: format!(
            "2 workers, placed by the scheduler, {} trips (threads: {})",
            short_count(n),
            short_count(n / THREADS_SHARE)
        ),
        cells: contenders
            .iter()
            .map(|&c| {
                let params = Params {
                    n: if c == Contender::Threads {
                        n / THREADS_SHARE
                    } else {
                        n
                    },
                    workers: 2,
                    pin_one_cpu: false,
                    case: (c == Contender::Fibra).then(|| PLACED.to_string()),
                };
                (c, params)
            })
            .collect(),
    });
    rows
}

/// The figures of one run; `placement` of the two units where it means something (not for
/// OS threads, which are two threads by construction).
pub fn figures(
    rounds: u64,
    elapsed: Duration,
    placement: Option<(&Placement, &Placement)>,
) -> Figures {
    let mut figures = Figures::from([
        (
            "ns_per_round_trip".to_string(),
            elapsed.as_nanos() as f64 / rounds.max(1) as f64,
        ),
        ("elapsed_ms".to_string(), elapsed.as_secs_f64() * 1e3),
    ]);
    if let Some((a, b)) = placement {
        figures.insert(SAME_THREAD_KEY.to_string(), a.same_thread_pct(b));
    }
    figures
}
