//! The experiments: what each measures, its sizes per profile, and the rows of its table.
//! The mechanics for each contender live in `crate::peers`.

pub mod blocking;
pub mod chan;
pub mod churn;
pub mod client;
pub mod conns;
pub mod fs;
pub mod io;
pub mod spawn;
pub mod switch;

use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::peers::Contender;

/// One of the lab's experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Experiment {
    /// N units that each sleep 100 ms: spawn time, total wall, resident memory per unit.
    Spawn,
    /// Two units ping-pong: ns per round trip, on one worker and across two.
    Switch,
    /// Spawn-and-join empty units in batches: ns per unit.
    Churn,
    /// Channels: ping-pong, 1 and 8 producers through three flavours, a contended mutex.
    Chan,
    /// One unit blocks 1 s while 1,000 others sleep 1 ms in a loop: the others' lateness.
    Blocking,
    /// An HTTP/1.1 hello server under keep-alive load: req/s, p50/p99 latency, server RSS.
    Io,
    /// File reads: 4 KiB random (warm, cold; 1, 64, 1,024 units) and 1 MiB sequential.
    Fs,
    /// HTTP GETs at concurrency 10, 100, 1,000 against one shared server; redis INCRs.
    Client,
}

/// Problem sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Smallest sizes: the whole lab runs in seconds (tests).
    Tiny,
    /// The default profile: about 2 minutes on 2 cores.
    Quick,
    /// The whole sweep (`--full`).
    Full,
}

impl Size {
    pub fn default_reps(self) -> u32 {
        match self {
            Size::Tiny => 1,
            Size::Quick => 3,
            Size::Full => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Quick => "quick",
            Size::Full => "full",
        }
    }
}

/// What one child process is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Units (spawn, churn) or round trips (switch).
    pub n: u64,
    /// Worker threads of the runtime contenders (ignored by OS threads).
    pub workers: usize,
    /// Run the child pinned to one CPU (`taskset`): OS threads' "same worker" case.
    pub pin_one_cpu: bool,
    /// Which variant of the experiment (`--case`), for experiments whose rows differ in kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
}

/// One row of an experiment's table: a label and what each contender runs for it.
pub struct Row {
    pub label: String,
    pub cells: Vec<(Contender, Params)>,
}

/// A figure an experiment reports.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figure {
    /// Key in the child's JSON output.
    pub key: &'static str,
    /// Human heading, with the unit.
    pub title: &'static str,
    /// A cost (lower is better, gets the "fibra / best peer" ratio), not an observation.
    pub cost: bool,
}

/// A plot of one figure (`--plots`, `--report`).
#[derive(Clone, Copy, Debug)]
pub struct PlotSpec {
    /// The SVG file is `<experiment>-<stem>.svg`.
    pub stem: &'static str,
    /// Key of the plotted figure.
    pub key: &'static str,
    pub title: &'static str,
    /// Caption of the value axis, with the unit.
    pub axis: &'static str,
    pub shape: PlotShape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotShape {
    /// x = the row's N, one line per contender, both axes logarithmic.
    LinesOverN,
    /// One group of horizontal bars per row, one bar per contender, a min–max whisker each.
    Bars {
        /// Logarithmic value axis, for figures that span orders of magnitude between contenders.
        log: bool,
    },
}

impl Experiment {
    pub const ALL: [Experiment; 8] = [
        Experiment::Spawn,
        Experiment::Switch,
        Experiment::Churn,
        Experiment::Chan,
        Experiment::Io,
        Experiment::Blocking,
        Experiment::Fs,
        Experiment::Client,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Spawn => "spawn",
            Experiment::Switch => "switch",
            Experiment::Churn => "churn",
            Experiment::Chan => "chan",
            Experiment::Blocking => "blocking",
            Experiment::Io => "io",
            Experiment::Fs => "fs",
            Experiment::Client => "client",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Experiment::Spawn => spawn::DESCRIPTION,
            Experiment::Switch => switch::DESCRIPTION,
            Experiment::Churn => churn::DESCRIPTION,
            Experiment::Chan => chan::DESCRIPTION,
            Experiment::Blocking => blocking::DESCRIPTION,
            Experiment::Io => io::DESCRIPTION,
            Experiment::Fs => fs::DESCRIPTION,
            Experiment::Client => client::DESCRIPTION,
        }
    }

    /// What the reader needs to know to read the table right.
    pub fn note(self) -> &'static str {
        match self {
            Experiment::Spawn => spawn::NOTE,
            Experiment::Switch => switch::NOTE,
            Experiment::Churn => churn::NOTE,
            Experiment::Chan => chan::NOTE,
            Experiment::Blocking => blocking::NOTE,
            Experiment::Io => io::NOTE,
            Experiment::Fs => fs::NOTE,
            Experiment::Client => client::NOTE,
        }
    }

    /// The figures shown in the tables (the JSON may carry more).
    pub fn figures(self) -> &'static [Figure] {
        match self {
            Experiment::Spawn => spawn::FIGURES,
            Experiment::Switch => switch::FIGURES,
            Experiment::Churn => churn::FIGURES,
            Experiment::Chan => chan::FIGURES,
            Experiment::Blocking => blocking::FIGURES,
            Experiment::Io => io::FIGURES,
            Experiment::Fs => fs::FIGURES,
            Experiment::Client => client::FIGURES,
        }
    }

    /// The plots drawn from the figures.
    pub fn plots(self) -> &'static [PlotSpec] {
        match self {
            Experiment::Spawn => spawn::PLOTS,
            Experiment::Switch => switch::PLOTS,
            Experiment::Churn => churn::PLOTS,
            Experiment::Chan => chan::PLOTS,
            Experiment::Blocking => blocking::PLOTS,
            Experiment::Io => io::PLOTS,
            Experiment::Fs => fs::PLOTS,
            Experiment::Client => client::PLOTS,
        }
    }

    /// What a row's N is, for the x axis of line plots.
    pub fn n_axis(self) -> &'static str {
        match self {
            Experiment::Io => "connections (log)",
            Experiment::Client => "concurrent clients (log)",
            _ => "N (units alive at once, log)",
        }
    }

    /// The rows to measure, for the chosen contenders.
    pub fn plan(self, size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
        match self {
            Experiment::Spawn => spawn::plan(size, cores, contenders),
            Experiment::Switch => switch::plan(size, contenders),
            Experiment::Churn => churn::plan(size, cores, contenders),
            Experiment::Chan => chan::plan(size, cores, contenders),
            Experiment::Blocking => blocking::plan(size, cores, contenders),
            Experiment::Io => io::plan(size, cores, contenders),
            Experiment::Fs => fs::plan(size, cores, contenders),
            Experiment::Client => client::plan(size, cores, contenders),
        }
    }

    /// Why `contender` has nothing to measure in a row, if so (shown as "skipped").
    pub fn not_applicable(self, contender: Contender, params: &Params) -> Option<String> {
        if contender == Contender::FibraHyper && self != Experiment::Io {
            return Some("hyper's server on fibra: the io experiment only".into());
        }
        if contender == Contender::May && self != Experiment::Io {
            return Some("may_minihttp's server: the io experiment only".into());
        }
        if contender == Contender::FibraHooks && self != Experiment::Client {
            return Some(
                "unchanged blocking clients on hooked fibra: the client experiment only".into(),
            );
        }
        match self {
            Experiment::Client => client::not_applicable(contender, params),
            Experiment::Blocking => blocking::not_applicable(contender, params),
            Experiment::Chan => chan::not_applicable(contender, params),
            Experiment::Io => io::not_applicable(contender, params),
            _ => None,
        }
    }

    /// Rows grow in N: once a contender fails, its larger rows are skipped.
    pub fn escalates(self) -> bool {
        matches!(self, Experiment::Spawn)
    }

    /// A child still running after this long is killed and recorded as failed.
    pub fn timeout(self, size: Size) -> Duration {
        Duration::from_secs(match (self, size) {
            (_, Size::Tiny) => 30,
            (_, Size::Quick) => 60,
            (_, Size::Full) => 180,
        })
    }
}

/// Where each OS-thread hand-off costs a futex wake (~10–20 µs here), OS threads do this many
/// times fewer units: the per-unit figure is the same in a tenth of the time (the rows say so).
pub const THREADS_SHARE: u64 = 10;

/// "1k", "10k", "1M", or the plain number.
pub fn short_count(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The same params for every contender.
fn same_for_all(contenders: &[Contender], params: &Params) -> Vec<(Contender, Params)> {
    contenders.iter().map(|&c| (c, params.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_counts() {
        assert_eq!(short_count(1_000), "1k");
        assert_eq!(short_count(100_000), "100k");
        assert_eq!(short_count(1_000_000), "1M");
        assert_eq!(short_count(1_500), "1500");
    }

    #[test]
    fn io_only_contenders_are_skipped_elsewhere() {
        let params = Params {
            n: 10,
            workers: 2,
            pin_one_cpu: false,
            case: None,
        };
        for contender in [Contender::May, Contender::FibraHyper] {
            for exp in Experiment::ALL {
                let skipped = exp.not_applicable(contender, &params).is_some();
                assert_eq!(
                    skipped,
                    exp != Experiment::Io,
                    "{contender:?} {}",
                    exp.name()
                );
            }
        }
    }

    #[test]
    fn every_experiment_plans_a_cell_per_contender() {
        let all = Contender::DEFAULT;
        for size in [Size::Tiny, Size::Quick, Size::Full] {
            for exp in Experiment::ALL {
                let rows = exp.plan(size, 2, &all);
                assert!(!rows.is_empty());
                for row in rows {
                    assert_eq!(row.cells.len(), all.len(), "{} {}", exp.name(), row.label);
                }
            }
        }
    }
}
