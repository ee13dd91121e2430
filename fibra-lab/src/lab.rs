//! The parent: runs each planned measurement `reps` times in child processes, with progress
//! bars on stderr, and prints each experiment's table as soon as it is done.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::child::{self, Figures};
use crate::experiments::{Experiment, Params, Size};
use crate::machine::Machine;
use crate::peers::Contender;
use crate::report::{table, CellResult, ExperimentResult, Outcome, Report, RowResult};
use crate::stats::Summary;

pub struct Config {
    pub size: Size,
    pub reps: u32,
    pub contenders: Vec<Contender>,
    pub cores: usize,
}

/// `--list`.
pub fn listing() -> String {
    let mut s = String::from("experiments:\n");
    for e in Experiment::ALL {
        let _ = writeln!(s, "  {:<8} {}", e.name(), e.description());
    }
    s += "contenders (--peers):\n";
    for c in Contender::DEFAULT {
        let _ = writeln!(s, "  {:<8} {}", c.name(), c.description());
    }
    s
}

pub fn run(config: &Config, experiments: &[Experiment]) -> Report {
    let machine = Machine::describe();
    println!(
        "fibra-lab {} — {} profile, {} rep{} per measurement, each in its own process",
        env!("CARGO_PKG_VERSION"),
        config.size.name(),
        config.reps,
        if config.reps == 1 { "" } else { "s" }
    );
    print!("{}", machine.header());
    let started = Instant::now();
    let results = experiments
        .iter()
        .map(|&e| {
            let result = run_experiment(config, e);
            print!("{}", table::render(&result));
            result
        })
        .collect();
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Report {
        tool: "fibra-lab",
        version: env!("CARGO_PKG_VERSION"),
        profile: config.size,
        reps: config.reps,
        contenders: config.contenders.clone(),
        machine,
        experiments: results,
    }
}

fn progress_bar(experiment: Experiment, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} {elapsed:>4} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(experiment.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn run_experiment(config: &Config, experiment: Experiment) -> ExperimentResult {
    let rows = experiment.plan(config.size, config.cores, &config.contenders);
    let cells: usize = rows.iter().map(|r| r.cells.len()).sum();
    let bar = progress_bar(experiment, cells as u64 * u64::from(config.reps));
    let timeout = experiment.timeout(config.size);
    // For experiments whose rows grow: where each contender first failed.
    let mut failed_at: HashMap<Contender, String> = HashMap::new();

    let mut row_results = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cell_results = Vec::with_capacity(row.cells.len());
        for (contender, params) in row.cells {
            let not_applicable = experiment.not_applicable(contender, &params);
            let outcome = match failed_at.get(&contender) {
                _ if not_applicable.is_some() => {
                    bar.inc(u64::from(config.reps));
                    Outcome::Skipped {
                        reason: not_applicable.unwrap_or_default(),
                    }
                }
                Some(label) if experiment.escalates() => {
                    bar.inc(u64::from(config.reps));
                    Outcome::Skipped {
                        reason: format!("not run: already failed at {label}"),
                    }
                }
                _ => measure(
                    config, experiment, contender, &params, &row.label, timeout, &bar,
                ),
            };
            if matches!(outcome, Outcome::Failed { .. }) {
                failed_at
                    .entry(contender)
                    .or_insert_with(|| row.label.clone());
            }
            cell_results.push(CellResult {
                contender,
                params,
                outcome,
            });
        }
        row_results.push(RowResult {
            label: row.label,
            cells: cell_results,
        });
    }
    bar.finish_and_clear();
    ExperimentResult {
        experiment,
        description: experiment.description(),
        note: experiment.note(),
        figures: experiment.figures(),
        timeout_s: timeout.as_secs(),
        rows: row_results,
    }
}

/// `reps` child processes for one cell; stops at the first failure.
fn measure(
    config: &Config,
    experiment: Experiment,
    contender: Contender,
    params: &Params,
    label: &str,
    timeout: Duration,
    bar: &ProgressBar,
) -> Outcome {
    let mut runs: Vec<Figures> = Vec::new();
    for rep in 1..=config.reps {
        bar.set_message(format!(
            "{} · {label} · rep {rep}/{}",
            contender.name(),
            config.reps
        ));
        match child::launch(experiment, contender, params, timeout) {
            Ok(figures) => runs.push(figures),
            Err(reason) => {
                bar.inc(u64::from(config.reps - rep + 1));
                return Outcome::Failed {
                    reason,
                    reps_done: rep - 1,
                };
            }
        }
        bar.inc(1);
    }
    Outcome::Ok {
        figures: summarize(&runs),
    }
}

/// Per figure key: the summary over the runs that reported it.
fn summarize(runs: &[Figures]) -> BTreeMap<String, Summary> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (key, &value) in run {
            samples.entry(key.clone()).or_default().push(value);
        }
    }
    samples
        .into_iter()
        .filter_map(|(key, values)| Summary::of(&values).map(|s| (key, s)))
        .collect()
}
