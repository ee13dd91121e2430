//! `--report FILE.html`: one self-contained page (no external file, script or font) with the
//! machine description, every experiment's tables and notes, and its plots inline.

use std::fmt::Write;
use std::fs;
use std::path::Path;

use super::plot::Plot;
use super::table::{self, MARK_NOTE};
use super::Report;

pub fn write(path: &Path, report: &Report, plots: &[Plot]) -> std::io::Result<()> {
    fs::write(path, render(report, plots))
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{padding:.25em .7em;border-bottom:1px solid #eee}\
td:not(:first-child),th:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}\
caption{text-align:left;font-weight:bold;padding:.3em 0}.note{color:#555;font-size:.92em}\
.failed{color:#b00}figure{margin:1em 0}svg{max-width:100%;height:auto}";

pub fn render(report: &Report, plots: &[Plot]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>fibra-lab report</title><style>{STYLE}</style></head><body>\n\
         <h1>fibra-lab {} — {} profile</h1>\n\
         <p>{}{} repetition{} per measurement, each in its own process; cells show the median \
         (min–max) over them. Contenders: {}.</p>\n",
        esc(report.version),
        report.profile.name(),
        report
            .started_at
            .as_deref()
            .map_or(String::new(), |at| format!("Measured {}. ", esc(at))),
        report.reps,
        if report.reps == 1 { "" } else { "s" },
        esc(&report
            .contenders
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")),
    );
    out += &machine(report);
    out += "<p>";
    for (i, result) in report.experiments.iter().enumerate() {
        let name = result.experiment.name();
        let sep = if i == 0 { "" } else { " · " };
        let _ = write!(out, "{sep}<a href=\"#{name}\">{name}</a>");
    }
    out += "</p>\n";
    for result in &report.experiments {
        let name = result.experiment.name();
        let _ = writeln!(
            out,
            "<h2 id=\"{name}\">{name}</h2>\n<p>{}</p>",
            esc(result.description)
        );
        let tables = table::tables(result);
        for t in &tables.tables {
            out += &html_table(t);
        }
        if tables.marked {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(MARK_NOTE));
        }
        if result.experiment.escalates() {
            out += "<p>How far each contender got:</p><ul>\n";
            for r in result.reach() {
                let _ = writeln!(out, "<li>{}</li>", esc(&table::reach_text(&r)));
            }
            out += "</ul>\n";
        }
        if !tables.notes.is_empty() {
            out += "<ol class=\"note failed\">\n";
            for (who, reason) in &tables.notes {
                let _ = writeln!(out, "<li>{}: {}</li>", esc(who), esc(reason));
            }
            out += "</ol>\n";
        }
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(result.note));
        let prefix = format!("{name}-");
        for plot in plots.iter().filter(|p| p.file_name.starts_with(&prefix)) {
            let _ = writeln!(
                out,
                "<figure>{}<figcaption class=\"note\">{}</figcaption></figure>",
                plot.svg.trim(),
                esc(plot.title)
            );
        }
    }
    out += "</body></html>\n";
    out
}

fn machine(report: &Report) -> String {
    let m = &report.machine;
    let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let rows = [
        (
            "cores",
            format!(
                "{}{}",
                m.cores,
                m.cpu_model
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        ),
        ("kernel", m.kernel.clone()),
        (
            "memory",
            m.mem_total_bytes.map_or("?".to_string(), |b| {
                format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
            }),
        ),
        ("vm.max_map_count", opt(m.vm_max_map_count)),
        ("kernel.pid_max", opt(m.kernel_pid_max)),
        ("kernel.threads-max", opt(m.kernel_threads_max)),
    ];
    let mut out = String::from("<table><caption>machine</caption>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    out += "</table>\n";
    out
}

fn html_table(t: &table::Table) -> String {
    let mut out = format!("<table><caption>{}</caption>\n<tr>", esc(&t.caption));
    for h in &t.header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out += "</tr>\n";
    for row in &t.rows {
        out += "<tr>";
        for (i, cell) in row.iter().enumerate() {
            let class = if cell.starts_with("FAILED") {
                " class=\"failed\""
            } else {
                ""
            };
            let tag = if i == 0 { "th" } else { "td" };
            let _ = write!(out, "<{tag}{class}>{}</{tag}>", esc(cell));
        }
        out += "</tr>\n";
    }
    out += "</table>\n";
    out
}

/// Text as HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
