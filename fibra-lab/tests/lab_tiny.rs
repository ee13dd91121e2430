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

const EXPERIMENTS: [&str; 8] = [
    "spawn", "switch", "churn", "chan", "io", "blocking", "fs", "client",
];

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fibra-lab-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The SVG parses as XML and its root element is `<svg>`.
fn assert_well_formed_svg(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).expect("readable SVG");
    assert!(text.trim_start().starts_with("<svg"), "{}", path.display());
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}

#[test]
fn every_experiment_at_tiny_size_writes_json_svg_and_html() {
    let json = temp_json("all");
    let plots = temp_dir("plots");
    let html = temp_dir("report").with_extension("html");
    let mut args = vec!["run"];
    args.extend(EXPERIMENTS);
    args.extend([
        "--size",
        "tiny",
        "--reps",
        "1",
        "--peers",
        "threads,tokio,fibra",
    ]);
    let output = lab(&[
        &args[..],
        &[
            "--json",
            json.to_str().expect("utf-8 temp path"),
            "--plots",
            plots.to_str().expect("utf-8 temp path"),
            "--report",
            html.to_str().expect("utf-8 temp path"),
        ],
    ]
    .concat());
    assert!(output.status.success(), "{}", describe(&output));

    // The saved JSON draws the same plots again, measuring nothing.
    let replotted = temp_dir("replotted");
    let replot = lab(&[
        "replot",
        json.to_str().expect("utf-8 temp path"),
        "--plots",
        replotted.to_str().expect("utf-8 temp path"),
    ]);
    assert!(replot.status.success(), "{}", describe(&replot));
    let count = |dir: &PathBuf| std::fs::read_dir(dir).map_or(0, |d| d.count());
    assert_eq!(count(&replotted), count(&plots));
    let _ = std::fs::remove_dir_all(&replotted);

    let report = read_report(&json);
    assert!(report["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    let experiments: Vec<&str> = report["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .filter_map(|e| e["experiment"].as_str())
        .collect();
    assert_eq!(experiments, EXPERIMENTS);

    let cells = cells(&report);
    for contender in ["threads", "tokio", "fibra"] {
        for experiment in EXPERIMENTS {
            assert!(
                cells.iter().any(|(e, _, c)| e == experiment
                    && c["contender"] == contender
                    && c["status"] == "ok"),
                "no {contender} figures in {experiment}"
            );
        }
    }
    for (experiment, row, cell) in &cells {
        let who = format!("{experiment} / {row} / {}", cell["contender"]);
        match cell["status"].as_str() {
            Some("ok") => {}
            // Rows that do not apply to a contender (blocking's fibra-only modes).
            Some("skipped") => {
                assert!(!cell["reason"].as_str().unwrap_or("").is_empty(), "{who}");
                continue;
            }
            _ => panic!("{who}: {cell}"),
        }
        let figures = cell["figures"].as_object().expect("figures");
        assert!(!figures.is_empty(), "{who}: no figures");
        for (key, summary) in figures {
            let median = summary["median"].as_f64().expect("numeric median");
            assert!(
                median.is_finite() && median >= 0.0,
                "{who} / {key} = {median}"
            );
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("fibra / best peer"), "{stdout}");
    assert!(stdout.contains("vm.max_map_count"), "{stdout}");

    // At least one plot per experiment, each well-formed.
    let svgs: Vec<PathBuf> = std::fs::read_dir(&plots)
        .expect("the plots directory was written")
        .map(|e| e.expect("dir entry").path())
        .collect();
    for experiment in EXPERIMENTS {
        assert!(
            svgs.iter()
                .any(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n
                    .starts_with(&format!("{experiment}-"))
                    && n.ends_with(".svg"))),
            "no plot for {experiment} in {svgs:?}"
        );
    }
    for svg in &svgs {
        assert_well_formed_svg(svg);
    }

    // One self-contained page: the machine, every experiment, every plot inline.
    let page = std::fs::read_to_string(&html).expect("the HTML report was written");
    for needle in [
        "vm.max_map_count",
        "kernel.pid_max",
        "memory",
        "fibra / best peer",
    ] {
        assert!(page.contains(needle), "{needle} missing from the report");
    }
    for experiment in EXPERIMENTS {
        assert!(
            page.contains(&format!("<h2 id=\"{experiment}\">")),
            "{experiment}"
        );
    }
    assert_eq!(page.matches("<svg").count(), svgs.len());
    for external in ["<script", "<link", " src="] {
        assert!(
            !page.contains(external),
            "the report loads something: {external}"
        );
    }
    let _ = std::fs::remove_dir_all(&plots);
    let _ = std::fs::remove_file(&html);
}

/// A directory holding only `go` links to nothing: `go` is not found, the lab still runs.
#[test]
fn go_peer_without_go_is_skipped_and_the_lab_continues() {
    let empty_path = temp_dir("no-go-path");
    std::fs::create_dir_all(&empty_path).expect("temp dir");
    let json = temp_json("no-go");
    let output = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args([
            "run", "churn", "--size", "tiny", "--reps", "1", "--peers", "go,fibra",
        ])
        .args(["--json", json.to_str().expect("utf-8 temp path")])
        .env("PATH", &empty_path)
        .output()
        .expect("run fibra-lab");
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("go: skipped"), "{stdout}");
    assert!(stdout.contains("no `go` on PATH"), "{stdout}");
    let report = read_report(&json);
    let cells = cells(&report);
    assert!(cells.iter().all(|(_, _, c)| c["contender"] != "go"));
    assert!(cells
        .iter()
        .any(|(_, _, c)| c["contender"] == "fibra" && c["status"] == "ok"));
    let _ = std::fs::remove_dir_all(&empty_path);
}

/// With a `go` toolchain on PATH (scripts/install-peers.sh), the bundled Go program is built and
/// measured like the other peers; without one there is nothing to check here (the test above
/// covers that case).
/// Without redis-server the client experiment's redis row is skipped with the command that
/// installs it, and the HTTP rows are measured all the same.
#[test]
fn client_without_redis_server_skips_the_redis_row() {
    let json = temp_json("client-no-redis");
    let output = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(["run", "client", "--size", "tiny", "--reps", "1"])
        .args(["--peers", "threads,fibra", "--json"])
        .arg(&json)
        .env("PATH", "/nonexistent")
        .output()
        .expect("run fibra-lab");
    assert!(output.status.success(), "{}", describe(&output));
    let cells = cells(&read_report(&json));
    assert_eq!(cells.len(), 3 * 2, "two HTTP rows and the redis row");
    for (_, row, cell) in &cells {
        if row.starts_with("redis") {
            assert_eq!(cell["status"], "skipped", "{row}: {cell}");
            if cell["contender"] == "threads" {
                let reason = cell["reason"].as_str().unwrap_or("");
                assert!(reason.contains("scripts/install-servers.sh"), "{reason}");
            }
        } else {
            assert_eq!(cell["status"], "ok", "{row}: {cell}");
            assert!(
                cell["figures"]["req_per_s"]["median"]
                    .as_f64()
                    .unwrap_or(0.0)
                    > 0.0
            );
        }
    }
}

#[test]
fn go_peer_reports_figures_when_go_is_installed() {
    let has_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_go {
        eprintln!("no `go` on PATH: the Go peer is covered by the skip test only");
        return;
    }
    let json = temp_json("go");
    let output = lab(&[
        "run",
        "spawn",
        "switch",
        "churn",
        "chan",
        "io",
        "blocking",
        "client",
        "--size",
        "tiny",
        "--reps",
        "1",
        "--peers",
        "go",
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let report = read_report(&json);
    let cells = cells(&report);
    assert!(!cells.is_empty());
    for (experiment, row, cell) in &cells {
        assert_eq!(cell["contender"], "go");
        // Go has no unbounded channel, only the unwrapped blocking rows, and no redis client.
        let not_applicable = (experiment == "chan" && row.contains("unbounded"))
            || (experiment == "blocking" && !row.contains("unwrapped"))
            || (experiment == "client" && row.starts_with("redis"));
        let expected = if not_applicable { "skipped" } else { "ok" };
        assert_eq!(cell["status"], expected, "{experiment} / {row}: {cell}");
    }
}

/// The io experiment without `wrk`: the lab's own load generator drives every server, and the
/// figures and plots come out the same way. (With `wrk` installed, the test above covers it.)
#[test]
fn io_with_the_builtin_load_generator_writes_json_and_svg() {
    let json = temp_json("io-builtin");
    let plots = temp_dir("io-plots");
    let output = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(["run", "io", "--size", "tiny", "--reps", "1"])
        .args(["--peers", "threads,tokio,fibra,may"])
        .args(["--json", json.to_str().expect("utf-8 temp path")])
        .args(["--plots", plots.to_str().expect("utf-8 temp path")])
        .env("FIBRA_LAB_LOADGEN", "builtin")
        .output()
        .expect("run fibra-lab");
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("built-in generator"), "{stdout}");

    let report = read_report(&json);
    let cells = cells(&report);
    assert_eq!(
        cells.len(),
        4 * 4,
        "two load rows, an idle row and a conns row, of four contenders"
    );
    assert!(
        cells.iter().any(|(_, _, c)| c["contender"] == "may"),
        "may_minihttp is a contender"
    );
    for (_, row, cell) in &cells {
        let who = format!("{row} / {}", cell["contender"]);
        assert_eq!(cell["status"], "ok", "{who}: {cell}");
        if row.contains("conns open") {
            assert_conns_row(&who, &cell["figures"]);
            continue;
        }
        if row.contains("idle") {
            let rss = cell["figures"]["idle_rss_mib"]["median"].as_f64();
            assert!(
                rss.is_some_and(|v| v.is_finite() && v > 0.0),
                "{who}: {cell}"
            );
            continue;
        }
        let median = |key: &str| {
            let median = cell["figures"][key]["median"]
                .as_f64()
                .unwrap_or_else(|| panic!("{who}: no {key}"));
            assert!(median.is_finite() && median >= 0.0, "{who} / {key}");
            median
        };
        for key in ["req_per_s", "p50_ms", "p99_ms", "rss_mib", "errors"] {
            median(key);
        }
        // A busy server thread either blocks or is preempted now and then: over a second of
        // load its workers cannot have switched zero times.
        let switches = median("cs_vol_per_1k_req") + median("cs_invol_per_1k_req");
        assert!(switches > 0.0, "{who}: no context switch counted");
        // Waiting on a run queue is a share of each worker's wall time (a little slack for
        // the reads of /proc not being at the same instant as the clock's).
        assert!(median("runq_wait_pct") <= 110.0, "{who}");
        assert!(
            cell["figures"]["req_per_s"]["median"].as_f64() > Some(0.0),
            "{who}"
        );
        assert!(
            cell["figures"]["rss_mib"]["median"].as_f64() > Some(0.0),
            "{who}"
        );
    }
    for stem in ["io-req-per-s.svg", "io-p99.svg"] {
        assert_well_formed_svg(&plots.join(stem));
    }
    let _ = std::fs::remove_dir_all(&plots);
}

/// io's tiny conns row: 50 connections from the ping client, each pinging once in 1 s.
fn assert_conns_row(who: &str, figures: &Value) {
    let median = |key: &str| {
        let v = figures[key]["median"]
            .as_f64()
            .unwrap_or_else(|| panic!("{who}: no {key} in {figures}"));
        assert!(v.is_finite(), "{who} / {key} = {v}");
        v
    };
    assert_eq!(median("conns_open"), 50.0, "{who}");
    // One slot per connection in a 1 s window: every ping sent and answered, none late.
    assert_eq!(median("ping_sent"), 50.0, "{who}");
    assert_eq!(median("ping_requests"), 50.0, "{who}");
    assert_eq!(median("ping_errors"), 0.0, "{who}");
    assert!(median("ping_p50_ms") > 0.0, "{who}");
    assert!(median("ping_p99_ms") >= median("ping_p50_ms"), "{who}");
    // Connections cost the server memory, and the projection scales that cost up.
    assert!(median("idle_rss_mib") > median("rss_before_mib"), "{who}");
    assert!(median("idle_b_per_conn") > 0.0, "{who}");
    assert!(
        median("projected_100k_mib") > median("idle_rss_mib"),
        "{who}"
    );
    assert!(median("fd_limit") >= 50.0, "{who}");
}

/// A server that dies before announcing its address is that contender's failure, with the
/// server's own reason.
#[test]
fn a_crashing_io_server_is_reported_not_fatal() {
    let json = temp_json("io-crash");
    let output = lab(&[
        "run",
        "io",
        "--size",
        "tiny",
        "--reps",
        "1",
        "--peers",
        "crash",
        "--json",
        json.to_str().expect("utf-8 temp path"),
    ]);
    assert!(output.status.success(), "{}", describe(&output));
    let cells = cells(&read_report(&json));
    assert!(!cells.is_empty());
    for (_, row, cell) in &cells {
        assert_eq!(cell["status"], "failed", "{row}: {cell}");
        let reason = cell["reason"].as_str().expect("a reason");
        assert!(reason.contains("the server exited"), "{reason}");
        assert!(reason.contains("SIGABRT"), "{reason}");
    }
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
    for name in [
        "spawn", "switch", "churn", "io", "fibra", "threads", "tokio", "may",
    ] {
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
