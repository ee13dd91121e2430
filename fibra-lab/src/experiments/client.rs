//! `client`: the client side of the classic green-threads benchmark. C units (fibers, threads,
//! tasks, goroutines) share R HTTP GETs against one local server that the lab starts once per
//! row, so every contender talks to the same thing: req/s and p99 per concurrency. The `redis`
//! row: unchanged blocking `redis` INCRs from 200 units beside 1 ms sleepers, against a
//! `redis-server` the lab starts: INCR/s and the sleepers' p99 lateness.
//!
//! Like `io`, the target lives outside the child: [`Target::start`] runs it for a row, and
//! each child finds it through [`ADDR_ENV`] (and the work through [`REQUESTS_ENV`]).

use std::path::Path;
use std::time::Duration;

use super::{short_count, Experiment, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::{self, Figures, Server};
use crate::peers::Contender;

#[path = "../../../fibra/tests/servers/base.rs"]
mod servers;

pub const DESCRIPTION: &str =
    "HTTP client: GETs at concurrency 10/100/1,000 against one shared local server (req/s, p99); redis INCRs beside 1 ms sleepers";

pub const NOTE: &str = "Clients: fibra = a GET written on fibra::net (httparse); fibra-hooks = \
unchanged ureq 2 (and the sync redis crate) on fibra fibers with the `hooks` feature, run from \
fibra/examples/lab_hooks.rs, which the lab builds with `cargo build -p fibra --features hooks` \
(the lab itself never links the hooks); threads = the same ureq code on OS threads; tokio = \
hyper 1.x's client (client::conn::http1) on tokio; go = net/http's Client (one Transport, \
MaxIdleConnsPerHost = the concurrency). Each unit keeps one keep-alive connection (ureq: an \
Agent per unit; Go: its pooled Transport) and makes its share of the GETs one after another; \
the clock runs from before the first unit is spawned until the last is joined, so a unit's \
start and its connect count. Latency = one GET, connect included for a unit's first. \
Syscalls per GET (perf stat, 30,000 GETs, 10 clients), epoll_wait aside: fibra's own GET 2 \
(send, recv); ureq 2 on threads 9 (3 setsockopt resetting its timeouts to what they are, a \
non-blocking peek to check the pooled connection with 2 ioctl(FIONBIO) around it, \
getsockname, send, recv), 3 when hooked (peek, send, recv: the hooks answer FIONBIO, the \
timeout sets that change nothing and a connected socket's getsockname without the kernel, and \
the reply's recv parks without a failed try). \
User-space instructions per GET (callgrind, 1 worker): fibra's own client 3.3k in all; \
hooked ureq 28.7k (worker thread), of which the hooks 0.8k and fibra's core 0.3k: the gap between ureq and \
fibra's own client is ureq's. \
Server, shared by every contender and started once per row: fibra's \
fibra/examples/http_hello.rs (the io experiment's fibra server) on 2 workers, on the same 2 \
cores as the clients. Redis row: 200 units × INCR on their own connection against a \
redis-server the lab starts on a free loopback port (no persistence), beside 10 units that \
sleep 1 ms in a loop (fibers on the same runtime for fibra-hooks; threads beside threads, \
whose lateness is the kernel scheduler's, not a shared worker's; \
tasks with tokio::time::sleep for tokio's redis client, tokio-comp); lateness = wake-up time \
past the 1 ms. Two workers (GOMAXPROCS 2).";

pub use crate::peers::blocking_client::{Job, ADDR_ENV, REDIS_CASE, REQUESTS_ENV};

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "req_per_s",
        title: "GETs per second (higher is better)",
        cost: false,
    },
    Figure {
        key: "p99_ms",
        title: "p99 latency of one GET, ms",
        cost: true,
    },
    Figure {
        key: "incr_per_s",
        title: "redis INCRs per second (higher is better)",
        cost: false,
    },
    Figure {
        key: "sleeper_p99_ms",
        title: "1 ms sleepers' p99 lateness beside the redis clients, ms",
        cost: true,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "req-per-s",
        key: "req_per_s",
        title: "client: GETs per second vs concurrency",
        axis: "req/s",
        shape: PlotShape::LinesOverN,
    },
    PlotSpec {
        stem: "p99",
        key: "p99_ms",
        title: "client: p99 latency of one GET vs concurrency",
        axis: "p99 latency, ms",
        shape: PlotShape::LinesOverN,
    },
];

fn concurrency(size: Size) -> &'static [u64] {
    match size {
        Size::Tiny => &[4, 16],
        Size::Quick | Size::Full => &[10, 100, 1_000],
    }
}

/// GETs per measurement: the benchmark's 1,000 in the quick profile (which must stay short),
/// more in `--full` so the 10-unit row runs long enough to time well.
fn requests(size: Size) -> u64 {
    match size {
        Size::Tiny => 64,
        Size::Quick => 1_000,
        Size::Full => 10_000,
    }
}

/// Redis units, and the INCRs they share (issue 15's setting is 200 units × 1,000).
fn redis_work(size: Size) -> (u64, u64) {
    match size {
        Size::Tiny => (20, 400),
        Size::Quick => (200, 40_000),
        Size::Full => (200, 200_000),
    }
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let workers = cores.clamp(1, 2);
    let mut rows: Vec<Row> = concurrency(size)
        .iter()
        .map(|&n| Row {
            label: format!("{} clients", short_count(n)),
            cells: super::same_for_all(
                contenders,
                &Params {
                    n,
                    workers,
                    pin_one_cpu: false,
                    case: None,
                },
            ),
        })
        .collect();
    let (units, _) = redis_work(size);
    rows.push(Row {
        label: format!("redis, {units} clients"),
        cells: super::same_for_all(
            contenders,
            &Params {
                n: units,
                workers,
                pin_one_cpu: false,
                case: Some(REDIS_CASE.into()),
            },
        ),
    });
    rows
}

/// Why a contender has no cell in a row, if it has none.
pub fn not_applicable(contender: Contender, params: &Params) -> Option<String> {
    let redis = params.case.as_deref() == Some(REDIS_CASE);
    match contender {
        Contender::Fibra if redis => {
            Some("the redis row measures the unchanged sync crate: see fibra-hooks".into())
        }
        Contender::Go if redis => Some("the Go peer has no redis client (no modules)".into()),
        _ => None,
    }
}

/// What a row's children talk to: fibra's HTTP server, or redis-server. Stopped when dropped.
pub enum Target {
    Http(Server),
    Redis(servers::Server),
}

impl Target {
    /// Starts the row's server: redis-server for the redis row, else the io experiment's
    /// fibra server (a child of this binary).
    pub fn start(params: &Params) -> Result<Target, String> {
        if params.case.as_deref() == Some(REDIS_CASE) {
            return start_redis().map(Target::Redis);
        }
        let server_params = Params {
            case: None,
            ..params.clone()
        };
        Server::start(None, Experiment::Io, Contender::Fibra, &server_params, &[])
            .map(Target::Http)
            .map_err(|e| format!("the shared HTTP server did not start: {e}"))
    }

    pub fn addr(&self) -> String {
        match self {
            Target::Http(s) => s.addr.to_string(),
            Target::Redis(s) => format!("127.0.0.1:{}", s.port),
        }
    }
}

fn start_redis() -> Result<servers::Server, String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").is_file()));
    if !on_path {
        return Err("no redis-server on PATH (scripts/install-servers.sh installs it)".into());
    }
    servers::start_redis()
        .ok_or_else(|| "redis-server did not start (its reason is on stderr above)".into())
}

/// One repetition of one cell: a child process (`program`, or this binary) against `target`.
pub fn measure(
    program: Option<&Path>,
    contender: Contender,
    params: &Params,
    size: Size,
    timeout: Duration,
    target: &Target,
) -> Result<Figures, String> {
    let work = match params.case.as_deref() {
        Some(REDIS_CASE) => redis_work(size).1,
        _ => requests(size),
    };
    let (addr, work) = (target.addr(), work.to_string());
    let envs = [(ADDR_ENV, addr.as_str()), (REQUESTS_ENV, work.as_str())];
    child::launch(
        program,
        Experiment::Client,
        contender,
        params,
        timeout,
        &envs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_row_skips_the_native_client_and_go() {
        let rows = plan(
            Size::Quick,
            2,
            &[Contender::Fibra, Contender::FibraHooks, Contender::Go],
        );
        let redis = rows.last().unwrap();
        let skipped: Vec<bool> = redis
            .cells
            .iter()
            .map(|(c, p)| not_applicable(*c, p).is_some())
            .collect();
        assert_eq!(skipped, [true, false, true]);
        for row in &rows[..rows.len() - 1] {
            assert!(row
                .cells
                .iter()
                .all(|(c, p)| not_applicable(*c, p).is_none()));
        }
    }
}
