//! Runs `wrk -t2 -c<conns> -d<secs> --latency` and parses its report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::Load;

/// `wrk` on PATH, if any.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|p| p.is_file())
}

/// wrk's threads: two, like the servers' workers (and never more than connections).
const THREADS: u64 = 2;
/// Slack after the run's duration before `wrk` is killed (10k connections take a while to open).
const GRACE: Duration = Duration::from_secs(30);

pub fn run(wrk: &Path, addr: SocketAddr, conns: u64, duration: Duration) -> Result<Load, String> {
    let secs = duration.as_secs().max(1);
    let mut child = Command::new(wrk)
        .arg(format!("-t{}", THREADS.min(conns).max(1)))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .args(["--latency", "--timeout", "10s"])
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {}: {e}", wrk.display()))?;
    let deadline = Instant::now() + Duration::from_secs(secs) + GRACE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let waited = secs + GRACE.as_secs();
                return Err(format!("wrk still running after {waited} s (killed)"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not wait for wrk: {e}")),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("could not read wrk's output: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty());
        return Err(format!(
            "wrk failed ({}): {}",
            out.status,
            why.unwrap_or("no output")
        ));
    }
    parse(&stdout)
}

/// Figures from wrk's report (`Requests/sec`, the 50% and 99% lines of `--latency`, socket
/// errors and non-2xx answers).
pub fn parse(report: &str) -> Result<Load, String> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let req_per_s = field("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or("wrk's report has no Requests/sec line")?;
    let latency = |pct: &str| {
        field(pct)
            .and_then(duration_ms)
            .ok_or_else(|| format!("wrk's report has no {pct} latency line (--latency)"))
    };
    let p50_ms = latency("50%")?;
    let p99_ms = latency("99%")?;
    let mut errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    if let Some(socket) = field("Socket errors:") {
        errors += socket
            .split(',')
            .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(Load {
        req_per_s,
        p50_ms,
        p99_ms,
        errors,
    })
}

/// "95.00us", "1.23ms", "2.00s", "1.50m" in milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = text.split_at(split);
    let value: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3_600e3,
        _ => return None,
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 2s test @ http://127.0.0.1:8080/
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   102.34us   50.12us   2.10ms   90.00%
    Req/Sec    45.12k     2.10k   50.00k    70.00%
  Latency Distribution
     50%   95.00us
     75%  110.00us
     90%  130.00us
     99%    2.50ms
  180000 requests in 2.00s, 15.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:  90000.50
Transfer/sec:      7.50MB
";

    #[test]
    fn parses_a_report() {
        let load = parse(REPORT).unwrap();
        assert_eq!(load.req_per_s, 90000.5);
        assert!((load.p50_ms - 0.095).abs() < 1e-9);
        assert_eq!(load.p99_ms, 2.5);
        assert_eq!(load.errors, 11);
    }

    #[test]
    fn a_report_without_latency_is_an_error_not_a_panic() {
        let err = parse("Requests/sec: 10\n").unwrap_err();
        assert!(err.contains("50%"), "{err}");
        assert!(parse("garbage").is_err());
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
        assert_eq!(duration_ms("3parsecs"), None);
    }
}
