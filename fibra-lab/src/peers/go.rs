//! The Go peer, parent side: the bundled Go program (`fibra-lab/go/`, compiled into this binary
//! as text) is built once with the `go` on PATH into `target/go-peer/<hash>/` and reused while
//! its source and the Go version stay the same. The program speaks the child protocol itself
//! (`crate::child`), so the lab launches it like any other contender.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAIN_GO: &str = include_str!("../../go/main.go");
const GO_MOD: &str = include_str!("../../go/go.mod");

/// The Go peer's program, built if needed; `Err` says why the Go peer cannot run.
pub fn prepare() -> Result<PathBuf, String> {
    let version = go_version()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let cache = cache_root(&exe).join(format!("{:016x}", fnv1a(&[MAIN_GO, GO_MOD, &version])));
    let program = cache.join("fibra-lab-go");
    if program.is_file() {
        return Ok(program);
    }
    build(&cache, &program).map_err(|e| format!("building the Go peer failed: {e}"))?;
    Ok(program)
}

/// `go version`'s line, or why there is no usable `go`.
fn go_version() -> Result<String, String> {
    let out = Command::new("go")
        .arg("version")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no `go` on PATH (scripts/install-peers.sh installs it)".to_string()
            }
            _ => format!("cannot run `go version`: {e}"),
        })?;
    if !out.status.success() {
        return Err(format!("`go version` failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `target/go-peer` when this binary lives in `target/<profile>/`, else the temp directory.
fn cache_root(exe: &Path) -> PathBuf {
    exe.parent()
        .and_then(Path::parent)
        .filter(|target| target.join("CACHEDIR.TAG").is_file())
        .map_or_else(
            || std::env::temp_dir().join("fibra-lab-go-peer"),
            |target| target.join("go-peer"),
        )
}

/// Writes the sources to a private directory and builds there, then renames the program into
/// place: concurrent labs (parallel tests) never see a half-written program.
fn build(cache: &Path, program: &Path) -> Result<(), String> {
    let work = cache.join(format!("build-{}", std::process::id()));
    // `go build` refuses to run without a build cache, which defaults to one under $HOME: a
    // CI environment may have no HOME, so fall back to one beside the program.
    let go_cache = std::env::var_os("GOCACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| cache.with_file_name("gocache"), PathBuf::from);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = (|| {
        fs::write(work.join("main.go"), MAIN_GO).map_err(|e| e.to_string())?;
        fs::write(work.join("go.mod"), GO_MOD).map_err(|e| e.to_string())?;
        let out = Command::new("go")
            .args(["build", "-o", "fibra-lab-go", "."])
            .current_dir(&work)
            // Never fetch a toolchain or module: the program has no dependency.
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOCACHE", &go_cache)
            .output()
            .map_err(|e| format!("cannot run `go build`: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("`go build` failed: {}", err.trim()));
        }
        fs::rename(work.join("fibra-lab-go"), program).map_err(|e| e.to_string())
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// FNV-1a over the parts: a cache key that is stable across runs and Rust versions.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_every_part() {
        assert_ne!(fnv1a(&["a", "bc"]), fnv1a(&["ab", "c"]));
        assert_eq!(fnv1a(&["x"]), fnv1a(&["x"]));
    }
}
