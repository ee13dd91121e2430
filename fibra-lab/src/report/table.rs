//! Aligned terminal tables: one per figure of an experiment, rows = N or variant, columns =
//! contenders, plus "fibra / best peer"; failures as footnotes under the experiment.

use std::fmt::Write;

use super::{ExperimentResult, Outcome, RowResult};
use crate::experiments::spawn;
use crate::peers::Contender;
use crate::stats::Summary;

/// One figure of an experiment as a grid of text: what the terminal and the HTML page show.
pub struct Table {
    /// The figure's title and how to read it.
    pub caption: String,
    /// Empty first cell, the contenders, then the ratio column if any.
    pub header: Vec<String>,
    /// Row label first.
    pub rows: Vec<Vec<String>>,
}

/// An experiment's tables, and the footnotes their cells point to.
pub struct Tables {
    pub tables: Vec<Table>,
    /// (who, reason), numbered from 1 in the cells.
    pub notes: Vec<(String, String)>,
    /// Some RSS cell is marked `*` (not all units alive at the sample).
    pub marked: bool,
}

/// Shown under the tables when a cell is marked `*`.
pub const MARK_NOTE: &str =
    "* not all N units were still asleep at the RSS sample (spawning outlasted the sleep)";

pub fn tables(result: &ExperimentResult) -> Tables {
    let contenders: Vec<Contender> = result
        .rows
        .first()
        .map(|r| r.cells.iter().map(|c| c.contender).collect())
        .unwrap_or_default();
    let with_ratio = contenders.contains(&Contender::Fibra) && contenders.len() > 1;
    let notes = footnotes(result);
    let mut marked = false;
    let mut tables = Vec::new();

    let any_ok = result
        .rows
        .iter()
        .flat_map(|r| &r.cells)
        .any(|c| matches!(c.outcome, Outcome::Ok { .. }));
    for figure in result.figures {
        // A figure of other rows or profiles only (io's idle RSS in --full): no empty table
        // (unless nothing succeeded: then the tables carry the failures).
        if any_ok && !reported(result, figure.key) {
            continue;
        }
        let with_ratio = with_ratio && figure.cost;
        let mut header = vec![String::new()];
        header.extend(contenders.iter().map(|c| c.name().to_string()));
        if with_ratio {
            header.push("fibra / best peer".to_string());
        }
        let mut rows = Vec::new();
        for row in &result.rows {
            // io's idle row has only the idle figure, its load rows all the others.
            if lacks(row, figure.key) {
                continue;
            }
            let mut line = vec![row.label.clone()];
            for cell in &row.cells {
                line.push(match &cell.outcome {
                    Outcome::Ok { figures } => {
                        let text = figures
                            .get(figure.key)
                            .map_or_else(|| "—".to_string(), cell_text);
                        if figure.key == spawn::RSS_KEY && not_all_alive(figures, cell.params.n) {
                            marked = true;
                            text + "*"
                        } else {
                            text
                        }
                    }
                    Outcome::Failed { reason, .. } => {
                        format!("FAILED [{}]", note_no(&notes, reason))
                    }
                    Outcome::Skipped { reason } => format!("skipped [{}]", note_no(&notes, reason)),
                });
            }
            if with_ratio {
                line.push(ratio(row, figure.key));
            }
            rows.push(line);
        }
        tables.push(Table {
            caption: format!(
                "{} — median (min–max){}",
                figure.title,
                if figure.cost { ", lower is better" } else { "" }
            ),
            header,
            rows,
        });
    }
    Tables {
        tables,
        notes,
        marked,
    }
}

/// Some cell of `row` succeeded, and none of them has a figure under `key`.
fn lacks(row: &RowResult, key: &str) -> bool {
    let ok: Vec<_> = row
        .cells
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Ok { figures } => Some(figures),
            _ => None,
        })
        .collect();
    !ok.is_empty() && ok.iter().all(|f| !f.contains_key(key))
}

/// Some cell has a figure under `key`.
fn reported(result: &ExperimentResult, key: &str) -> bool {
    result
        .rows
        .iter()
        .flat_map(|r| &r.cells)
        .any(|c| match &c.outcome {
            Outcome::Ok { figures } => figures.contains_key(key),
            _ => false,
        })
}

/// The terminal rendering of an experiment's results.
pub fn render(result: &ExperimentResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} — {}",
        result.experiment_name(),
        result.description
    );
    let Tables {
        tables,
        notes,
        marked,
    } = tables(result);
    for table in tables {
        let _ = writeln!(out, "\n  {}", table.caption);
        let mut grid = vec![table.header];
        grid.extend(table.rows);
        out += &align(&grid);
    }
    if marked {
        let _ = writeln!(out, "\n  {MARK_NOTE}");
    }
    if result.experiment.escalates() {
        out += "\n  how far each contender got:\n";
        for r in result.reach() {
            let _ = writeln!(out, "    {}", reach_text(&r));
        }
    }
    if !notes.is_empty() {
        out += "\n";
        for (i, (who, reason)) in notes.iter().enumerate() {
            let _ = writeln!(out, "  [{}] {who}: {reason}", i + 1);
        }
    }
    out += "\n";
    out += &wrap(result.note, "  note: ", 100);
    out
}

/// "fibra: largest N = 100k; ended at N = 1M: `<reason>`".
pub fn reach_text(r: &super::Reach) -> String {
    format!(
        "{}: largest {}; {}",
        r.contender.name(),
        r.largest_ok.as_deref().unwrap_or("none"),
        r.ended_by
            .as_deref()
            .map_or("every planned size ran".to_string(), |e| format!(
                "ended at {e}"
            ))
    )
}

impl ExperimentResult {
    fn experiment_name(&self) -> &'static str {
        self.experiment.name()
    }
}

/// "123 (120–130)", or just "123" for a single sample.
fn cell_text(s: &Summary) -> String {
    if s.samples.len() <= 1 || s.min == s.max {
        number(s.median)
    } else {
        format!("{} ({}–{})", number(s.median), number(s.min), number(s.max))
    }
}

/// The run reports how many units were alive at its sample, and in some run not all were.
fn not_all_alive(figures: &std::collections::BTreeMap<String, Summary>, n: u64) -> bool {
    figures
        .get(spawn::ALIVE_KEY)
        .is_some_and(|alive| alive.min < n as f64)
}

/// fibra's median over the best other contender's, naming that peer.
fn ratio(row: &super::RowResult, key: &str) -> String {
    let fibra = row
        .cells
        .iter()
        .find(|c| c.contender == Contender::Fibra)
        .and_then(|c| c.outcome.median(key));
    let best = row
        .cells
        .iter()
        .filter(|c| c.contender != Contender::Fibra)
        .filter_map(|c| c.outcome.median(key).map(|m| (m, c.contender)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    match (fibra, best) {
        (Some(f), Some((b, peer))) if b > 0.0 => format!("{:.2}× {}", f / b, peer.name()),
        _ => "—".to_string(),
    }
}

/// Failure and skip reasons of the experiment, each once, as (who, reason).
fn footnotes(result: &ExperimentResult) -> Vec<(String, String)> {
    let mut notes: Vec<(String, String)> = Vec::new();
    for row in &result.rows {
        for cell in &row.cells {
            let reason = match &cell.outcome {
                Outcome::Failed { reason, .. } | Outcome::Skipped { reason } => reason,
                Outcome::Ok { .. } => continue,
            };
            if !notes.iter().any(|(_, r)| r == reason) {
                notes.push((
                    format!("{} @ {}", cell.contender.name(), row.label),
                    reason.clone(),
                ));
            }
        }
    }
    notes
}

fn note_no(notes: &[(String, String)], reason: &str) -> usize {
    notes
        .iter()
        .position(|(_, r)| r == reason)
        .map_or(0, |i| i + 1)
}

/// 12,345 · 123 · 12.3 · 1.23
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.round().abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `text` in lines of at most `width` characters (longer words stay whole), the first
/// starting with `lead`, the others indented as far.
fn wrap(text: &str, lead: &str, width: usize) -> String {
    let indent = " ".repeat(lead.chars().count());
    let mut out = String::new();
    let mut line = lead.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out += &line;
            out += "\n";
            line.clone_from(&indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line += word;
        empty = false;
    }
    out += &line;
    out += "\n";
    out
}

/// First column left-aligned, the others right-aligned, two spaces apart.
fn align(grid: &[Vec<String>]) -> String {
    let cols = grid.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            grid.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in grid {
        out += "  ";
        for (c, text) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - text.chars().count());
            if c == 0 {
                out += text;
                out += &pad;
            } else {
                out += "  ";
                out += &pad;
                out += text;
            }
        }
        out = out.trim_end().to_string();
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(999.6), "1,000");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
    }

    #[test]
    fn wraps_notes() {
        assert_eq!(wrap("aa bb cc", "> ", 7), "> aa bb\n  cc\n");
        assert_eq!(wrap("", "> ", 7), "> \n");
    }

    #[test]
    fn aligns_columns() {
        let grid = vec![
            vec!["".to_string(), "a".to_string()],
            vec!["row".to_string(), "1234".to_string()],
        ];
        assert_eq!(align(&grid), "          a\n  row  1234\n");
    }
}
