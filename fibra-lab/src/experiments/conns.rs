//! io's conns rows (`--full`): "100,000 concurrent connections without 100,000 OS threads",
//! measured. Each io server holds N keep-alive connections from the lab's own client in a
//! separate process (`load::ping`); the lab reads the server's RSS before connecting, with
//! every connection open and idle, and at its peak while each connection sends one request a
//! second; the client reports the latency of those requests.
//!
//! N is 10,000 and the largest the descriptor limit allows both processes (the hard
//! RLIMIT_NOFILE less [`FD_HEADROOM`], in thousands; 100,000 at most). The row says the limit,
//! and a figure projects the server's RSS at 100,000 connections from the measured cost per
//! connection, marked as a projection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{short_count, Experiment, Figure, Params, Size};
use crate::child::{Figures, Server};
use crate::load::ping::{self, Done, Opened, Report};
use crate::machine;
use crate::peers::Contender;

/// The io row variant of these rows.
pub const CASE: &str = "conns";

/// Descriptors kept free beyond one per connection, in each process: std streams, epoll,
/// the listener, the runtime's own (eventfds, timers, Go's netpoller), with room to spare.
pub const FD_HEADROOM: u64 = 500;
/// The headline size: measured if the limit allows it, projected otherwise.
pub const HEADLINE: u64 = 100_000;

/// The figures these rows add to io's tables (io's `idle_rss_mib` and `rss_mib` too).
pub const FIGURES: &[Figure] = &[
    Figure {
        key: "idle_b_per_conn",
        title: "server RSS per connection, all open and idle: (RSS at N − RSS before connecting) / N, bytes",
        cost: true,
    },
    Figure {
        key: "ping_b_per_conn",
        title: "server RSS per connection, each sending 1 request/s: (peak RSS − RSS before connecting) / N, bytes",
        cost: true,
    },
    Figure {
        key: "ping_p50_ms",
        title: "p50 latency of the 1 request/s pings, ms",
        cost: true,
    },
    Figure {
        key: "ping_p99_ms",
        title: "p99 latency of the 1 request/s pings, ms",
        cost: true,
    },
    Figure {
        key: "ping_requests",
        title: "pings answered (N × the window's seconds if none is lost)",
        cost: false,
    },
    Figure {
        key: "ping_req_per_s",
        title: "pings answered per second (N if the rate held)",
        cost: false,
    },
    Figure {
        key: "ping_errors",
        title: "errors: failed connections (EMFILE, refused, timed out…), resets, non-2xx or missing answers, late slots",
        cost: false,
    },
    Figure {
        key: "listen_drops",
        title: "SYNs dropped at a full listen queue during the run (TcpExt ListenDrops, whole machine)",
        cost: false,
    },
    Figure {
        key: "projected_100k_mib",
        title: "PROJECTED (not measured) server RSS at 100,000 idle connections: RSS before connecting + 100,000 × the idle cost per connection, MiB",
        cost: true,
    },
];

/// Connection counts for `size` under a descriptor limit of `limit`.
pub fn sizes(size: Size, limit: u64) -> Vec<u64> {
    let largest = (limit.saturating_sub(FD_HEADROOM) / 1_000 * 1_000).min(HEADLINE);
    match size {
        Size::Tiny => [50].into_iter().filter(|&n| n <= largest).collect(),
        Size::Quick => Vec::new(),
        Size::Full => {
            let mut n: Vec<u64> = [10_000, largest]
                .into_iter()
                .filter(|&n| n > 0 && n <= largest)
                .collect();
            n.dedup();
            n
        }
    }
}

/// The row's label: what it measures and under which limit.
pub fn label(n: u64, limit: u64) -> String {
    format!(
        "{} conns open, 1 req/s each (RLIMIT_NOFILE {limit})",
        short_count(n)
    )
}

/// How long the pings run: each connection sends one request a second.
pub fn window(size: Size) -> Duration {
    Duration::from_secs(match size {
        Size::Tiny | Size::Quick => 1,
        Size::Full => 10,
    })
}

/// Before sampling RSS: let fibers park and tasks return to the reactor.
const SETTLE: Duration = Duration::from_millis(500);
/// Opening every connection: the client's own budget is 120 s.
const OPEN_WAIT: Duration = Duration::from_secs(150);
/// Below this share of connections open, the row would measure a smaller N: it fails.
const MIN_OPEN_PERMILLE: u64 = 990;

/// One repetition: a fresh server, the client in its own process, RSS and latency.
pub fn measure(
    program: Option<&Path>,
    contender: Contender,
    params: &Params,
    size: Size,
    envs: &[(&str, &str)],
) -> Result<Figures, String> {
    let limit = machine::raise_nofile()?;
    let n = params.n;
    if limit < n + FD_HEADROOM {
        return Err(format!(
            "RLIMIT_NOFILE is {limit} (its hard limit), too few for {n} connections and {FD_HEADROOM} spare"
        ));
    }
    // The plain io server: the same program as the io rows.
    let server_params = Params {
        case: None,
        ..params.clone()
    };
    let server = Server::start(program, Experiment::Io, contender, &server_params, envs)?;
    let pid = server.pid();
    thread::sleep(SETTLE);
    let before = machine::rss_of(pid)?;
    let drops_before = listen_drops();

    let window = window(size);
    let mut client = PingClient::start(server.addr, n, window)?;
    let opened = client.opened()?;
    if opened.open * 1_000 < n * MIN_OPEN_PERMILLE {
        return Err(format!(
            "only {} of {n} connections opened: {}",
            opened.open,
            kinds(&opened.errors)
        ));
    }
    thread::sleep(SETTLE);
    let idle = machine::rss_of(pid)?;
    client.go()?;
    let mut peak = idle;
    let give_up = Instant::now() + window + ping::GRACE + Duration::from_secs(30);
    let done = loop {
        if let Some(done) = client.done(Duration::from_millis(100))? {
            break done;
        }
        if let Ok(rss) = machine::rss_of(pid) {
            peak = peak.max(rss);
        }
        if Instant::now() > give_up {
            return Err("the ping client did not report in time".into());
        }
    };
    let drops = listen_drops()
        .zip(drops_before)
        .map(|(a, b)| a.saturating_sub(b));
    drop(client);
    let mut server = server;
    if let Some(reason) = server.died() {
        return Err(reason);
    }

    let open = opened.open.max(1) as f64;
    let per_conn = |rss: u64| (rss as f64 - before as f64) / open;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let errors: u64 = done.errors.values().sum::<u64>() + done.late;
    let mut figures = Figures::from([
        ("conns_open".to_string(), opened.open as f64),
        ("rss_before_mib".to_string(), mib(before as f64)),
        ("idle_rss_mib".to_string(), mib(idle as f64)),
        ("rss_mib".to_string(), mib(peak as f64)),
        ("idle_b_per_conn".to_string(), per_conn(idle)),
        ("ping_b_per_conn".to_string(), per_conn(peak)),
        ("ping_p50_ms".to_string(), done.p50_ms),
        ("ping_p99_ms".to_string(), done.p99_ms),
        ("ping_max_ms".to_string(), done.max_ms),
        ("ping_sent".to_string(), done.sent as f64),
        ("ping_requests".to_string(), done.answered as f64),
        ("ping_req_per_s".to_string(), done.req_per_s),
        ("ping_late".to_string(), done.late as f64),
        ("ping_errors".to_string(), errors as f64),
        ("fd_limit".to_string(), limit as f64),
        (
            "projected_100k_mib".to_string(),
            mib(before as f64 + HEADLINE as f64 * per_conn(idle)),
        ),
    ]);
    if let Some(drops) = drops {
        figures.insert("listen_drops".to_string(), drops as f64);
    }
    // Each kind of failure under its own key, in the JSON (the table shows the total).
    for (kind, count) in &done.errors {
        figures.insert(format!("error: {kind}"), *count as f64);
    }
    Ok(figures)
}

/// "3× connect: ECONNREFUSED, 1× read: ECONNRESET".
fn kinds(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "no error reported".into();
    }
    errors
        .iter()
        .map(|(kind, n)| format!("{n}× {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SYNs the kernel dropped at listen queues so far (TcpExt ListenDrops, which includes
/// ListenOverflows): machine-wide, so another program's drops count too.
pub(super) fn listen_drops() -> Option<u64> {
    netstat_field(
        &std::fs::read_to_string("/proc/net/netstat").ok()?,
        "TcpExt:",
        "ListenDrops",
    )
}

/// A field of /proc/net/netstat: a line of names, then a line of values, per protocol.
fn netstat_field(text: &str, proto: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(proto));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// The client process, killed when dropped (its sockets reset, leaving no TIME_WAIT).
struct PingClient {
    child: Child,
    stdin: Option<ChildStdin>,
    reports: mpsc::Receiver<Report>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl PingClient {
    fn start(addr: SocketAddr, conns: u64, window: Duration) -> Result<PingClient, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let mut child = Command::new(exe)
            .arg("ping-client")
            .arg(addr.to_string())
            .arg(conns.to_string())
            .arg("--secs")
            .arg(window.as_secs().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start the ping client: {e}"))?;
        let (tx, reports) = mpsc::channel();
        let stdout = child.stdout.take();
        thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(report) = serde_json::from_str::<Report>(&line) {
                    if tx.send(report).is_err() {
                        return;
                    }
                }
            }
        });
        let stderr = child.stderr.take();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_string(&mut text);
            }
            text
        });
        Ok(PingClient {
            stdin: child.stdin.take(),
            child,
            reports,
            stderr: Some(stderr),
        })
    }

    fn opened(&mut self) -> Result<Opened, String> {
        match self.next(OPEN_WAIT)? {
            Some(Report::Opened(o)) => Ok(o),
            Some(Report::Done(_)) => Err("the ping client reported out of order".into()),
            None => Err(format!(
                "the ping client opened nothing within {} s",
                OPEN_WAIT.as_secs()
            )),
        }
    }

    fn go(&mut self) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the ping client has no stdin")?;
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("could not start the pings: {e}"))
    }

    /// The final report, if it comes within `wait`.
    fn done(&mut self, wait: Duration) -> Result<Option<Done>, String> {
        match self.next(wait)? {
            Some(Report::Done(d)) => Ok(Some(d)),
            Some(Report::Opened(_)) => Err("the ping client reported out of order".into()),
            None => Ok(None),
        }
    }

    fn next(&mut self, wait: Duration) -> Result<Option<Report>, String> {
        match self.reports.recv_timeout(wait) {
            Ok(report) => Ok(Some(report)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            // Its stdout closed: it exited; its stderr says why.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                let why = self
                    .stderr
                    .take()
                    .and_then(|h| h.join().ok())
                    .and_then(|s| {
                        s.lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                Err(format!("the ping client exited ({status}): {why}"))
            }
        }
    }
}

impl Drop for PingClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_descriptor_limit() {
        assert_eq!(sizes(Size::Full, 20_000), [10_000, 19_000]);
        assert_eq!(sizes(Size::Full, 1_048_576), [10_000, 100_000]);
        assert_eq!(sizes(Size::Full, 10_500), [10_000]);
        assert_eq!(sizes(Size::Full, 4_096), [3_000]);
        assert!(sizes(Size::Full, 400).is_empty());
        assert!(sizes(Size::Quick, 20_000).is_empty());
        assert_eq!(sizes(Size::Tiny, 20_000), [50]);
        assert!(label(19_000, 20_000).contains("RLIMIT_NOFILE 20000"));
    }

    #[test]
    fn reads_listen_drops_from_netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 7 9\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(netstat_field(text, "TcpExt:", "ListenDrops"), Some(9));
        assert_eq!(netstat_field(text, "TcpExt:", "Nope"), None);
        assert_eq!(netstat_field(text, "IpExt:", "InNoRoutes"), Some(0));
    }
}
