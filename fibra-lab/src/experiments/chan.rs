//! `chan`: channels and a contended mutex. Ping-pong over two `bounded(1)` channels (ns per
//! round trip); 1 and 8 producers → 1 consumer through `bounded(128)`, `bounded(0)` and
//! `unbounded()` (ns per item); 8 units × K lock/unlock of one mutex, and of one reader-writer
//! lock taken for writing (ns per lock/unlock).
//!
//! Each row is one [`Case`]; it travels to the child as `--case <name>`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{short_count, Figure, Params, PlotShape, PlotSpec, Row, Size, THREADS_SHARE};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str =
    "channels: ping-pong over bounded(1); 1 and 8 producers -> 1 consumer \
through bounded(128), bounded(0), unbounded; 8 units contending for one mutex, and for one \
RwLock's write lock";

pub const NOTE: &str = "fibra: fibra::chan and fibra::sync::Mutex between fibers. OS threads: \
crossbeam-channel and std::sync::Mutex between std threads (the 1-worker ping-pong runs them pinned \
to one CPU with taskset). tokio: tokio::sync::mpsc (bounded(0) is mpsc::channel(1), tokio has no \
rendezvous channel; unbounded is unbounded_channel) and tokio::sync::Mutex between tasks. Go: \
channels (bounded(0) is an unbuffered channel; Go has no unbounded one) and sync.Mutex. Producer \
rows: N items in total (OS threads through bounded(0): N/10), split evenly, the consumer sums them (checked); fibra, tokio and Go run on \
one worker per core. Mutex: 8 units each lock, increment, unlock K times. RwLock: the same with \
write locks of fibra::sync::RwLock, std::sync::RwLock, tokio::sync::RwLock and Go's sync.RWMutex.";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: NS_PER_OP,
        title: "ns per operation (round trip · item · lock+unlock)",
        cost: true,
    },
    Figure {
        key: "mops",
        title: "throughput, million operations per second",
        cost: false,
    },
];

pub const PLOTS: &[PlotSpec] = &[PlotSpec {
    stem: "ops",
    key: NS_PER_OP,
    title: "chan: ns per operation (round trip, item, lock+unlock)",
    axis: "ns per operation (log)",
    shape: PlotShape::Bars { log: true },
}];

/// Figure: ns per round trip, item or lock/unlock pair.
pub const NS_PER_OP: &str = "ns_per_op";

/// Producers in the many-producer rows, and units in the mutex row.
pub const MANY: u64 = 8;

/// Capacity of the buffered channel.
pub const CAPACITY: usize = 128;

/// Which channel the producer rows use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `bounded(128)`.
    Buffered,
    /// `bounded(0)`: each send waits for its receive.
    Rendezvous,
    /// `unbounded()`.
    Unbounded,
}

/// What one row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Two units echo a value over two `bounded(1)` channels; `n` round trips.
    PingPong,
    /// `producers` units send `n` items in total to one consumer.
    Producers { producers: u64, flavour: Flavour },
    /// [`MANY`] units each lock, increment and unlock one mutex `n` times.
    Mutex,
    /// As `Mutex`, with the write lock of a reader-writer lock.
    RwLock,
}

impl Case {
    pub const ALL: [Case; 9] = [
        Case::PingPong,
        Case::Producers {
            producers: 1,
            flavour: Flavour::Buffered,
        },
        Case::Producers {
            producers: MANY,
            flavour: Flavour::Buffered,
        },
        Case::Producers {
            producers: 1,
            flavour: Flavour::Rendezvous,
        },
        Case::Producers {
            producers: MANY,
            flavour: Flavour::Rendezvous,
        },
        Case::Producers {
            producers: 1,
            flavour: Flavour::Unbounded,
        },
        Case::Producers {
            producers: MANY,
            flavour: Flavour::Unbounded,
        },
        Case::Mutex,
        Case::RwLock,
    ];
}

/// The `--case` names: `ping-pong`, `1p-bounded128`, `8p-bounded0`, `8p-unbounded`, `mutex`,
/// `rwlock`.
impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Case::PingPong => f.write_str("ping-pong"),
            Case::Mutex => f.write_str("mutex"),
            Case::RwLock => f.write_str("rwlock"),
            Case::Producers { producers, flavour } => {
                let flavour = match flavour {
                    Flavour::Buffered => "bounded128",
                    Flavour::Rendezvous => "bounded0",
                    Flavour::Unbounded => "unbounded",
                };
                write!(f, "{producers}p-{flavour}")
            }
        }
    }
}

impl FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Case, String> {
        Case::ALL
            .into_iter()
            .find(|c| c.to_string() == s)
            .ok_or_else(|| format!("unknown chan case {s:?}"))
    }
}

struct Sizes {
    round_trips: u64,
    items: u64,
    locks_per_unit: u64,
}

fn sizes(size: Size) -> Sizes {
    match size {
        Size::Tiny => Sizes {
            round_trips: 2_000,
            items: 4_000,
            locks_per_unit: 500,
        },
        // Keeps the whole experiment near 30 s on 2 cores (threads' rendezvous rows dominate).
        Size::Quick => Sizes {
            round_trips: 50_000,
            items: 200_000,
            locks_per_unit: 20_000,
        },
        Size::Full => Sizes {
            round_trips: 1_000_000,
            items: 2_000_000,
            locks_per_unit: 100_000,
        },
    }
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let sizes = sizes(size);
    let mut rows = Vec::new();
    for case in Case::ALL {
        let worker_counts: &[usize] = match case {
            Case::PingPong => &[1, 2],
            _ => &[0],
        };
        for &w in worker_counts {
            let (label, n, workers) = match case {
                Case::PingPong => (
                    format!(
                        "ping-pong bounded(1), {w} worker{}, {} trips",
                        if w == 1 { "" } else { "s" },
                        short_count(sizes.round_trips)
                    ),
                    sizes.round_trips,
                    w,
                ),
                Case::Producers { producers, flavour } => (
                    format!(
                        "{producers} → 1 {}, {} items{}",
                        match flavour {
                            Flavour::Buffered => "bounded(128)",
                            Flavour::Rendezvous => "bounded(0)",
                            Flavour::Unbounded => "unbounded",
                        },
                        short_count(sizes.items),
                        if flavour == Flavour::Rendezvous {
                            format!(" (threads: {})", short_count(sizes.items / THREADS_SHARE))
                        } else {
                            String::new()
                        }
                    ),
                    sizes.items,
                    cores,
                ),
                Case::Mutex | Case::RwLock => (
                    format!(
                        "{}, {MANY} × {} lock/unlock",
                        if case == Case::Mutex {
                            "mutex"
                        } else {
                            "rwlock write"
                        },
                        short_count(sizes.locks_per_unit)
                    ),
                    sizes.locks_per_unit,
                    cores,
                ),
            };
            rows.push(Row {
                label,
                cells: contenders
                    .iter()
                    .map(|&c| {
                        // OS threads hand off through a rendezvous with a futex wake an
                        // item: `THREADS_SHARE`.
                        let threads_rendezvous = c == Contender::Threads
                            && matches!(
                                case,
                                Case::Producers {
                                    flavour: Flavour::Rendezvous,
                                    ..
                                }
                            );
                        let params = Params {
                            n: if threads_rendezvous {
                                n / THREADS_SHARE
                            } else {
                                n
                            },
                            workers,
                            pin_one_cpu: workers == 1 && c == Contender::Threads,
                            case: Some(case.to_string()),
                        };
                        (c, params)
                    })
                    .collect(),
            });
        }
    }
    rows
}

/// Why a contender has no cell in a row, if so.
pub fn not_applicable(contender: Contender, params: &Params) -> Option<String> {
    let case = params.case.as_deref()?.parse::<Case>().ok()?;
    match case {
        Case::Producers {
            flavour: Flavour::Unbounded,
            ..
        } if contender == Contender::Go => Some("Go has no unbounded channel".to_string()),
        _ => None,
    }
}

/// The figures of one run: `ops` round trips, items or lock/unlock pairs in `elapsed`.
pub fn figures(ops: u64, elapsed: Duration) -> Figures {
    let secs = elapsed.as_secs_f64();
    Figures::from([
        (NS_PER_OP.to_string(), secs * 1e9 / ops.max(1) as f64),
        ("mops".to_string(), ops as f64 / secs.max(1e-9) / 1e6),
        ("elapsed_ms".to_string(), secs * 1e3),
    ])
}

/// Operations one run of `case` with size `n` performs.
pub fn ops(case: Case, n: u64) -> u64 {
    match case {
        Case::PingPong | Case::Producers { .. } => n,
        Case::Mutex | Case::RwLock => MANY * n,
    }
}

/// Items producer `p` of `producers` sends when `n` are sent in total (the first takes the
/// remainder), as the range of values it sends; their sum over all producers is `n(n-1)/2`.
pub fn share(p: u64, producers: u64, n: u64) -> std::ops::Range<u64> {
    let each = n / producers;
    let start = if p == 0 { 0 } else { n % producers + p * each };
    let end = n % producers + (p + 1) * each;
    start..end
}

/// The sum a consumer must see when `n` items were sent.
pub fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_round_trip() {
        for case in Case::ALL {
            assert_eq!(case.to_string().parse::<Case>(), Ok(case));
        }
        assert!("nope".parse::<Case>().is_err());
    }

    #[test]
    fn shares_cover_every_item_once() {
        for (producers, n) in [(1, 10), (8, 4_000), (8, 4_003), (3, 2)] {
            let mut all: Vec<u64> = (0..producers)
                .flat_map(|p| share(p, producers, n))
                .collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..n).collect::<Vec<_>>(),
                "{producers} producers, {n} items"
            );
        }
    }
}
