//! End-to-end: `fibra-lab soak` for two seconds (debug build): the periodic lines, the clean
//! stop, and a last line with nothing lost. Growth is not judged here: two seconds have no
//! warm-up worth the name (`scripts/soak.sh` runs the real thing).

use std::process::Command;

#[test]
fn a_short_soak_loses_nothing_and_ends_with_the_verdict_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(["soak", "2"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run fibra-lab soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let describe = || {
        format!(
            "status {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        )
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("soak: seconds=2 rss_growth_pct="),
        "{}",
        describe()
    );
    assert!(last.ends_with(" lost=0"), "{}", describe());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("(warm-up end) rss=") && l.contains(" fibers=")),
        "{}",
        describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2 live after the drain (expected 2)")),
        "{}",
        describe()
    );
    for reason in [
        "lost =",
        "wrong results",
        "sleeps ended early",
        "HTTP errors",
        "after the shutdown",
    ] {
        assert!(
            !stderr.contains(&format!("FAIL: {reason}")),
            "{}",
            describe()
        );
    }
}

#[test]
fn soak_wants_a_positive_number_of_seconds() {
    let out = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(["soak", "0"])
        .output()
        .expect("run fibra-lab soak");
    assert!(!out.status.success());
}
