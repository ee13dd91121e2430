//! HTTP load for the io experiment: `wrk` when it is on PATH, else the lab's own generator.
//! Both keep `conns` keep-alive connections busy for a while and report the same figures.

pub mod builtin;
pub mod ping;
pub mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Set to `builtin` to use the lab's own generator even when `wrk` is installed.
pub const LOADGEN_ENV: &str = "FIBRA_LAB_LOADGEN";

/// What one load run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub req_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors, timeouts and non-2xx answers.
    pub errors: u64,
}

/// Which generator drives the load.
#[derive(Debug, Clone)]
pub enum Generator {
    Wrk(PathBuf),
    Builtin,
}

impl Generator {
    /// `wrk` from PATH unless [`LOADGEN_ENV`] asks for the built-in one.
    pub fn choose() -> Generator {
        if std::env::var(LOADGEN_ENV).is_ok_and(|v| v == "builtin") {
            return Generator::Builtin;
        }
        wrk::find().map_or(Generator::Builtin, Generator::Wrk)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Generator::Wrk(_) => "wrk",
            Generator::Builtin => "built-in generator",
        }
    }

    /// For the lab's output: which generator, and where.
    pub fn describe(&self) -> String {
        match self {
            Generator::Wrk(path) => format!("wrk ({})", path.display()),
            Generator::Builtin => {
                format!("the built-in generator (no wrk on PATH, or {LOADGEN_ENV}=builtin)")
            }
        }
    }

    /// Drives `conns` connections to `addr` for `duration`.
    pub fn run(&self, addr: SocketAddr, conns: u64, duration: Duration) -> Result<Load, String> {
        match self {
            Generator::Wrk(path) => wrk::run(path, addr, conns, duration),
            Generator::Builtin => builtin::run(addr, conns, duration),
        }
    }
}

/// The `q` quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
