//! The hooked fibra peer, parent side: `fibra/examples/lab_hooks.rs`, built on demand with
//! `cargo build -p fibra --features hooks --example lab_hooks` (`$CARGO` if set; release when
//! this lab is a release build) and run as a child like the Go peer.
//!
//! Why a separate program: the `hooks` feature interposes libc's socket and sleep calls for
//! the whole process. Linked into this binary it would make every other contender run hooked,
//! and as a dependency feature of a workspace member it would be unified into every crate of
//! `cargo test --workspace` (resolver 2). So only this one build ever enables it.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLE: &str = "lab_hooks";

/// The hooked program, built if needed (cargo decides); `Err` says why the peer cannot run.
pub fn prepare() -> Result<PathBuf, String> {
    // This lab is built inside the workspace; its sources stay beside it.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace directory")?;
    if !workspace
        .join("fibra/examples")
        .join(format!("{EXAMPLE}.rs"))
        .is_file()
    {
        return Err(format!(
            "fibra's sources are not at {} (the hooked program is built from them)",
            workspace.display()
        ));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "-p",
            "fibra",
            "--features",
            "hooks",
            "--example",
            EXAMPLE,
        ])
        .arg("--message-format=json-render-diagnostics");
    if release {
        cmd.arg("--release");
    }
    println!(
        "fibra-hooks: building fibra/examples/{EXAMPLE}.rs (cargo build{} -p fibra --features hooks)",
        if release { " --release" } else { "" }
    );
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // The first error is the cause; the last line only counts them.
        let last = err
            .lines()
            .find(|l| l.starts_with("error"))
            .or_else(|| err.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("");
        return Err(format!(
            "building the hooked program failed ({}): {}",
            out.status,
            last.trim()
        ));
    }
    executable(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "cargo built the hooked program but named no executable".into())
}

/// The example's executable in cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == EXAMPLE)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_example_among_cargo_messages() {
        let messages = concat!(
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"fibra\"},\"executable\":null}\n",
            "not json\n",
            "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"lab_hooks\"},",
            "\"executable\":\"/t/release/examples/lab_hooks\"}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        assert_eq!(
            executable(messages),
            Some(PathBuf::from("/t/release/examples/lab_hooks"))
        );
        assert_eq!(executable("{\"reason\":\"build-finished\"}"), None);
    }
}
