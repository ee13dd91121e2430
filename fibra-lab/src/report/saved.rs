//! `fibra-lab replot FILE.json`: a report saved with `--json`, read back so that its plots and
//! HTML page can be drawn again (with this version's drawing code) without measuring anything.
//! Descriptions, notes and figure titles come from this binary; the measurements from the file.

use std::fs;
use std::path::Path;

use serde::Deserialize;

use super::{ExperimentResult, Report, RowResult};
use crate::experiments::{Experiment, Size};
use crate::machine::Machine;
use crate::peers::Contender;

/// The parts of a `--json` file the reports are drawn from.
#[derive(Deserialize)]
struct Saved {
    profile: Size,
    reps: u32,
    contenders: Vec<Contender>,
    #[serde(default)]
    started_at: Option<String>,
    machine: Machine,
    experiments: Vec<SavedExperiment>,
}

#[derive(Deserialize)]
struct SavedExperiment {
    experiment: Experiment,
    timeout_s: u64,
    rows: Vec<RowResult>,
}

pub fn load(path: &Path) -> Result<Report, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let saved: Saved = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a fibra-lab --json report: {e}", path.display()))?;
    Ok(Report {
        tool: "fibra-lab",
        version: env!("CARGO_PKG_VERSION"),
        profile: saved.profile,
        reps: saved.reps,
        contenders: saved.contenders,
        started_at: saved.started_at,
        machine: saved.machine,
        experiments: saved
            .experiments
            .into_iter()
            .map(|e| ExperimentResult {
                experiment: e.experiment,
                description: e.experiment.description(),
                note: e.experiment.note(),
                figures: e.experiment.figures(),
                timeout_s: e.timeout_s,
                rows: e.rows,
            })
            .collect(),
    })
}
