//! The results of a lab run, as the reports (terminal tables, JSON, SVG plots, HTML) see them.

pub mod html;
pub mod json;
pub mod plot;
pub mod saved;
pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::experiments::{Experiment, Figure, Params, Size};
use crate::machine::Machine;
use crate::peers::Contender;
use crate::stats::Summary;

/// Everything one lab run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub profile: Size,
    pub reps: u32,
    pub contenders: Vec<Contender>,
    /// When the run started, UTC ("2026-01-31 12:00 UTC"); `None` in files that predate it.
    pub started_at: Option<String>,
    pub machine: Machine,
    pub experiments: Vec<ExperimentResult>,
}

#[derive(Debug, Serialize)]
pub struct ExperimentResult {
    pub experiment: Experiment,
    pub description: &'static str,
    pub note: &'static str,
    /// The figures shown in the tables; `cells[].figures` may hold more.
    pub figures: &'static [Figure],
    pub timeout_s: u64,
    pub rows: Vec<RowResult>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RowResult {
    pub label: String,
    pub cells: Vec<CellResult>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CellResult {
    pub contender: Contender,
    pub params: Params,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How one contender fared on one row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Every repetition produced figures.
    Ok { figures: BTreeMap<String, Summary> },
    /// A repetition crashed, exited non-zero or timed out (the remaining ones were not run).
    Failed { reason: String, reps_done: u32 },
    /// Not run, because the contender already failed at a smaller size.
    Skipped { reason: String },
}

impl Outcome {
    pub fn median(&self, key: &str) -> Option<f64> {
        match self {
            Outcome::Ok { figures } => figures.get(key).map(|s| s.median),
            _ => None,
        }
    }
}

/// For an experiment whose rows grow in N: how far one contender got.
pub struct Reach {
    pub contender: Contender,
    /// Label of the largest row it completed.
    pub largest_ok: Option<String>,
    /// What ended its sweep (a failure or a cap), or `None` if every planned row ran.
    pub ended_by: Option<String>,
}

impl ExperimentResult {
    /// How far each contender got through the growing rows (`spawn`).
    pub fn reach(&self) -> Vec<Reach> {
        let mut reach: Vec<Reach> = Vec::new();
        for row in &self.rows {
            for cell in &row.cells {
                let i = match reach.iter().position(|r| r.contender == cell.contender) {
                    Some(i) => i,
                    None => {
                        reach.push(Reach {
                            contender: cell.contender,
                            largest_ok: None,
                            ended_by: None,
                        });
                        reach.len() - 1
                    }
                };
                let r = &mut reach[i];
                match &cell.outcome {
                    Outcome::Ok { .. } if r.ended_by.is_none() => {
                        r.largest_ok = Some(row.label.clone());
                    }
                    Outcome::Failed { reason, .. } | Outcome::Skipped { reason }
                        if r.ended_by.is_none() =>
                    {
                        r.ended_by = Some(format!("{}: {reason}", row.label));
                    }
                    _ => {}
                }
            }
        }
        reach
    }
}
