//! End-to-end: the built lab, smallest sizes, one repetition.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(args)
        .output()
        .expect("run fibra-lab")
}

fn temp_json(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fibra-lab-test-{}-{name}.json", std::process::id()))
}

fn read_report(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    let _ = std::fs::remove_file(path);
    serde_json::from_str(&text).expect("well-formed JSON")
}

/// Every cell of every experiment of the report, as (experiment, row, cell).
fn cells(report: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for exp in report["experiments"].as_array().expect("experiments") {
        let name = exp["experiment"]
            .as_str()
            .expect("experiment name")
            .to_string();
        for row in exp["rows"].as_array().expect("rows") {
            let label = row["label"].as_str().expect("row label").to_string();
            for cell in row["cells"].as_array().expect("cells") {
                out.push((name.clone(), label.clone(), cell.clone()));
            }
        }
    }
    out
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn tiny_run_reports_a_figure_for_every_contender() {
    let json = temp_json("all");
    let output = lab(&[
        "run",
        "spawn",
        "switch",
        "churn",
        "--size",
        "tiny",
        "--reps",
        "1",
        "--peers",
        "threads,tokio,fibra",
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let report = read_report(&json);

    assert!(report["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    let experiments: Vec<&str> = report["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .filter_map(|e| e["experiment"].as_str())
        .collect();
    assert_eq!(experiments, ["spawn", "switch", "churn"]);

    let cells = cells(&report);
    for contender in ["threads", "tokio", "fibra"] {
        for experiment in ["spawn", "switch", "churn"] {
            assert!(
                cells
                    .iter()
                    .any(|(e, _, c)| e == experiment && c["contender"] == contender),
                "no {contender} cell in {experiment}"
            );
        }
    }
    for (experiment, row, cell) in &cells {
        assert_eq!(
            cell["status"], "ok",
            "{experiment} / {row} / {}: {cell}",
            cell["contender"]
        );
        let figures = cell["figures"].as_object().expect("figures");
        assert!(!figures.is_empty(), "{experiment} / {row}: no figures");
        for (key, summary) in figures {
            let median = summary["median"].as_f64().expect("numeric median");
            assert!(
                median.is_finite() && median >= 0.0,
                "{experiment} / {row} / {key} = {median}"
            );
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("fibra / best peer"), "{stdout}");
    assert!(stdout.contains("vm.max_map_count"), "{stdout}");
}

#[test]
fn a_crashing_contender_is_reported_not_fatal() {
    let json = temp_json("crash");
    let output = lab(&[
        "run",
        "churn",
        "--size",
        "tiny",
        "--reps",
        "2",
        "--peers",
        "threads,crash",
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let report = read_report(&json);
    let cells = cells(&report);

    let crash = cells
        .iter()
        .find(|(_, _, c)| c["contender"] == "crash")
        .map(|(_, _, c)| c)
        .expect("a crash cell");
    assert_eq!(crash["status"], "failed", "{crash}");
    assert_eq!(crash["reps_done"], 0, "{crash}");
    let reason = crash["reason"].as_str().expect("a reason");
    assert!(reason.contains("signal 6"), "{reason}");

    let threads = cells
        .iter()
        .find(|(_, _, c)| c["contender"] == "threads")
        .map(|(_, _, c)| c)
        .expect("a threads cell");
    assert_eq!(threads["status"], "ok", "{threads}");
    assert_eq!(
        threads["figures"]["ns_per_unit"]["samples"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAILED [1]"), "{stdout}");
    assert!(stdout.contains("SIGABRT"), "{stdout}");
}

#[test]
fn list_names_experiments_and_contenders() {
    let output = lab(&["--list"]);
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["spawn", "switch", "churn", "fibra", "threads", "tokio"] {
        assert!(
            stdout.contains(name),
            "{name} missing from --list:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("crash"),
        "test-only contender listed:\n{stdout}"
    );
}
