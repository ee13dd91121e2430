//! The parent: runs each planned measurement `reps` times in child processes (a row's
//! contenders taking turns, `interleaved`), with progress bars on stderr, and prints each
//! experiment's table as soon as it is done.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::child::{self, Figures};
use crate::experiments::{client, fs, io, spawn, Experiment, Params, Size};
use crate::load;
use crate::machine::{self, Machine};
use crate::peers::Contender;
use crate::report::{table, CellResult, ExperimentResult, Outcome, Report, RowResult};
use crate::stats::Summary;

pub struct Config {
    pub size: Size,
    pub reps: u32,
    pub contenders: Vec<Contender>,
    pub cores: usize,
    /// The Go peer's program, when `Contender::Go` is among the contenders.
    pub go_program: Option<PathBuf>,
    /// `--rows`: only the rows whose label contains this.
    pub rows: Option<String>,
    /// The hooked fibra program (`peers::hooks`), when `Contender::FibraHooks` is measured.
    pub hooks_program: Option<PathBuf>,
}

/// `--list`.
pub fn listing() -> String {
    let mut s = String::from("experiments:\n");
    for e in Experiment::ALL {
        let _ = writeln!(s, "  {:<8} {}", e.name(), e.description());
    }
    s += "contenders (--peers):\n";
    for c in Contender::DEFAULT.into_iter().chain([
        Contender::FibraHyper,
        Contender::May,
        Contender::FibraHooks,
    ]) {
        let _ = writeln!(s, "  {:<11} {}", c.name(), c.description());
    }
    s
}

pub fn run(config: &Config, experiments: &[Experiment]) -> Report {
    let machine = Machine::describe();
    let started_at = utc_timestamp(SystemTime::now());
    println!(
        "fibra-lab {} — {} profile, {} rep{} per measurement, each in its own process, \
         a row's contenders taking turns",
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
        started_at: Some(started_at),
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

/// A contender's largest successful row so far, in an experiment whose rows grow.
struct LastSuccess {
    n: u64,
    figures: BTreeMap<String, Summary>,
    /// The largest resident bytes per unit seen at any size so far (per-unit costs can grow).
    max_rss_per_unit: f64,
}

fn run_experiment(config: &Config, experiment: Experiment) -> ExperimentResult {
    if experiment == Experiment::Io {
        println!("\nio: load from {}", load::Generator::choose().describe());
    }
    let mut rows = experiment.plan(config.size, config.cores, &config.contenders);
    if let Some(only) = &config.rows {
        rows.retain(|r| r.label.contains(only.as_str()));
    }
    // The fs experiment's file: written once, removed when the experiment is done.
    let scratch = match experiment {
        Experiment::Fs => match fs::Scratch::create(fs::file_size(config.size)) {
            Ok(s) => Some(s),
            Err(e) => {
                let reason = format!("could not write the file to read: {e}");
                return failed_experiment(config, experiment, rows, &reason);
            }
        },
        _ => None,
    };
    let cells: usize = rows.iter().map(|r| r.cells.len()).sum();
    let bar = progress_bar(experiment, cells as u64 * u64::from(config.reps));
    let timeout = experiment.timeout(config.size);
    let mem_available = machine::mem_available_bytes();
    // For experiments whose rows grow: why each contender's larger rows are not run, and its
    // last success, to project the next size from.
    let mut ended: HashMap<Contender, String> = HashMap::new();
    let mut last_ok: HashMap<Contender, LastSuccess> = HashMap::new();

    let mut row_results = Vec::with_capacity(rows.len());
    for row in rows {
        let skip = |reason: String| {
            bar.inc(u64::from(config.reps));
            Some(Outcome::Skipped { reason })
        };
        // Each cell is skipped (`Some`) or measured below (`None`).
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(row.cells.len());
        for (contender, params) in &row.cells {
            let capped = match (experiment, last_ok.get(contender)) {
                (Experiment::Spawn, Some(last)) => spawn::beyond_caps(
                    params.n,
                    last.n,
                    &last.figures,
                    last.max_rss_per_unit,
                    timeout,
                    mem_available,
                ),
                _ => None,
            };
            outcomes.push(
                if let Some(reason) = experiment.not_applicable(*contender, params) {
                    skip(reason)
                } else if let Some(reason) = ended.get(contender).filter(|_| experiment.escalates())
                {
                    skip(reason.clone())
                } else if let Some(reason) = capped {
                    ended.insert(
                        *contender,
                        format!("not run: stopped at {} by a cap", row.label),
                    );
                    skip(reason)
                } else {
                    None
                },
            );
        }
        let to_measure: Vec<(Contender, &Params)> = row
            .cells
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_none())
            .map(|((c, p), _)| (*c, p))
            .collect();
        // The client experiment's server, shared by the row's contenders; a row without one
        // is skipped (no redis-server) or failed (the HTTP server did not start).
        let target = match (experiment, to_measure.first()) {
            (Experiment::Client, Some((_, params))) => Some(client::Target::start(params)),
            _ => None,
        };
        let mut measured = match &target {
            Some(Err(reason)) => {
                bar.inc(to_measure.len() as u64 * u64::from(config.reps));
                let redis = to_measure[0].1.case.as_deref() == Some(client::REDIS_CASE);
                to_measure
                    .iter()
                    .map(|_| {
                        let reason = reason.clone();
                        if redis {
                            Outcome::Skipped { reason }
                        } else {
                            Outcome::Failed {
                                reason,
                                reps_done: 0,
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            }
            _ => measure_row(
                config,
                experiment,
                &to_measure,
                &row.label,
                timeout,
                &bar,
                Setup {
                    scratch: scratch.as_ref(),
                    target: target.as_ref().and_then(|t| t.as_ref().ok()),
                },
            ),
        }
        .into_iter();
        drop(target);
        let mut cell_results = Vec::with_capacity(row.cells.len());
        for ((contender, params), outcome) in row.cells.into_iter().zip(outcomes) {
            let outcome = match outcome {
                Some(skipped) => skipped,
                None => measured.next().expect("one outcome per measured cell"),
            };
            match &outcome {
                Outcome::Failed { .. } => {
                    ended
                        .entry(contender)
                        .or_insert_with(|| format!("not run: already failed at {}", row.label));
                }
                Outcome::Ok { figures } => {
                    let rss = figures.get(spawn::RSS_KEY).map_or(0.0, |s| s.max);
                    let max_rss_per_unit = last_ok
                        .get(&contender)
                        .map_or(rss, |last| last.max_rss_per_unit.max(rss));
                    let success = LastSuccess {
                        n: params.n,
                        figures: figures.clone(),
                        max_rss_per_unit,
                    };
                    last_ok.insert(contender, success);
                }
                Outcome::Skipped { .. } => {}
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

/// The order of one row's runs: `(rep, cell)`, every cell's rep 1, then every cell's rep 2,
/// and so on, each rep starting one cell further on.
///
/// Why interleaved: this machine's speed drifts over seconds (a shared VM: the same child
/// measured 200 ns a round trip, then 290, minutes apart). Run back to back, a contender's
/// reps all land in one spell and the row compares spells, not contenders; interleaved, a
/// spell weighs on every contender of the row alike. The rotation keeps any one contender
/// from always running first (or right after a given other).
fn interleaved(cells: usize, reps: u32) -> impl Iterator<Item = (u32, usize)> {
    (1..=reps).flat_map(move |rep| (0..cells).map(move |k| (rep, (k + rep as usize - 1) % cells)))
}

/// What the lab prepared for an experiment's children.
#[derive(Clone, Copy)]
struct Setup<'a> {
    /// The fs experiment's file.
    scratch: Option<&'a fs::Scratch>,
    /// The client experiment's row server.
    target: Option<&'a client::Target>,
}

/// `reps` child processes for each of a row's `cells`, interleaved (`interleaved`); a cell
/// stops at its first failure. One outcome per cell, in order.
fn measure_row(
    config: &Config,
    experiment: Experiment,
    cells: &[(Contender, &Params)],
    label: &str,
    timeout: Duration,
    bar: &ProgressBar,
    setup: Setup,
) -> Vec<Outcome> {
    let mut runs: Vec<Vec<Figures>> = cells.iter().map(|_| Vec::new()).collect();
    let mut failed: Vec<Option<Outcome>> = cells.iter().map(|_| None).collect();
    for (rep, i) in interleaved(cells.len(), config.reps) {
        if failed[i].is_some() {
            continue;
        }
        let (contender, params) = cells[i];
        bar.set_message(format!(
            "{} · {label} · rep {rep}/{}",
            contender.name(),
            config.reps
        ));
        match measure_once(config, experiment, contender, params, timeout, setup) {
            Ok(figures) => {
                runs[i].push(figures);
                bar.inc(1);
            }
            Err(reason) => {
                bar.inc(u64::from(config.reps - rep + 1));
                failed[i] = Some(Outcome::Failed {
                    reason,
                    reps_done: rep - 1,
                });
            }
        }
    }
    runs.into_iter()
        .zip(failed)
        .map(|(runs, failed)| {
            failed.unwrap_or_else(|| Outcome::Ok {
                figures: summarize(&runs),
            })
        })
        .collect()
}

/// One child process: one measurement of `contender` with `params`.
fn measure_once(
    config: &Config,
    experiment: Experiment,
    contender: Contender,
    params: &Params,
    timeout: Duration,
    setup: Setup,
) -> Result<Figures, String> {
    let program = match contender {
        Contender::Go => config.go_program.as_deref(),
        Contender::FibraHooks => config.hooks_program.as_deref(),
        _ => None,
    };
    match experiment {
        // The child is a server; the load runs from here.
        Experiment::Io => io::measure(program, contender, params, config.size),
        Experiment::Client => {
            let target = setup.target.ok_or("client: no server to talk to")?;
            client::measure(program, contender, params, config.size, timeout, target)
        }
        // Every contender starts from the same page cache: the file read through, or evicted.
        Experiment::Fs => {
            let scratch = setup.scratch.ok_or("fs: no file to read")?;
            let case: fs::Case = params.case.as_deref().unwrap_or("").parse()?;
            scratch
                .prepare(case)
                .map_err(|e| format!("fs: preparing the page cache: {e}"))?;
            let path = scratch
                .path()
                .to_str()
                .ok_or("fs: the temp path is not UTF-8")?;
            let envs = [(fs::FILE_ENV, path)];
            child::launch(program, experiment, contender, params, timeout, &envs)
        }
        _ => child::launch(program, experiment, contender, params, timeout, &[]),
    }
}

/// Every cell of `rows` failed for `reason` (the experiment could not be set up).
fn failed_experiment(
    config: &Config,
    experiment: Experiment,
    rows: Vec<crate::experiments::Row>,
    reason: &str,
) -> ExperimentResult {
    let rows = rows
        .into_iter()
        .map(|row| RowResult {
            label: row.label,
            cells: row
                .cells
                .into_iter()
                .map(|(contender, params)| CellResult {
                    contender,
                    params,
                    outcome: Outcome::Failed {
                        reason: reason.to_string(),
                        reps_done: 0,
                    },
                })
                .collect(),
        })
        .collect();
    ExperimentResult {
        experiment,
        description: experiment.description(),
        note: experiment.note(),
        figures: experiment.figures(),
        timeout_s: experiment.timeout(config.size).as_secs(),
        rows,
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

/// "2026-01-31 12:00 UTC" (proleptic Gregorian calendar; days-to-date after H. Hinnant's
/// `civil_from_days`, which needs no time-zone database).
fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_interleaved_and_rotated() {
        let order: Vec<(u32, usize)> = interleaved(3, 3).collect();
        assert_eq!(
            order,
            [
                (1, 0),
                (1, 1),
                (1, 2),
                (2, 1),
                (2, 2),
                (2, 0),
                (3, 2),
                (3, 0),
                (3, 1)
            ]
        );
        // Every cell gets every rep, once.
        for cells in 0..5 {
            let mut seen: Vec<(u32, usize)> = interleaved(cells, 4).collect();
            seen.sort_unstable();
            let all: Vec<(u32, usize)> = (1..=4)
                .flat_map(|r| (0..cells).map(move |c| (r, c)))
                .collect();
            assert_eq!(seen, all);
        }
    }

    #[test]
    fn utc_timestamps() {
        let at = |secs| utc_timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(at(1_767_225_600 + 3_600 + 120), "2026-01-01 01:02 UTC");
    }
}
