//! `io`: an HTTP/1.1 hello server per contender, driven over loopback keep-alive connections
//! by `wrk` (or the lab's own generator): req/s, p50/p99 latency, server RSS; in `--full` also
//! the server's RSS with 10,000 idle keep-alive connections open, and the conns rows
//! (`conns`): as many connections as the descriptor limit allows, idle then pinging once a
//! second, from the lab's own client in a separate process.
//!
//! Unlike the other experiments, the child process is only the server: the lab itself runs
//! the load against the address the child announces and reads the child's RSS from /proc.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{conns, short_count, Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::{Figures, Server};
use crate::load::Generator;
use crate::machine;
use crate::peers::Contender;
use crate::task_stat;

pub const DESCRIPTION: &str =
    "HTTP/1.1 hello server under keep-alive load (wrk, or the lab's generator): req/s, p50/p99 latency, server RSS";

pub const NOTE: &str =
    "Servers: fibra = fibra/examples/http_hello.rs itself (a fiber per connection, \
httparse); fibra-hyper = fibra/examples/hyper_hello.rs itself (hyper 1.x's http1 server on \
fibra sockets, a fiber per connection awaiting hyper's connection future, fibra's Timer for \
the header read timeout); threads = a thread per connection on std::net (64 KiB stacks); tokio = tokio + \
hyper 1.x, a task per connection (hyper::server::conn::http1, keep-alive, no Date header, \
the same header read timeout as fibra-hyper on hyper-util's TokioTimer); \
go = net/http; may = may_minihttp's hello server (HttpServiceFactory) on the may runtime, \
stackful coroutines with 32 KiB stacks, a connection's coroutine started on the worker that \
polls its socket, may's defaults otherwise (workers pinned to cores; a Date and a Server \
header). Two workers (GOMAXPROCS 2). \
Load: wrk -t2 -c<conns> --latency when wrk is on PATH, else the lab's own generator (2 threads, \
closed loop); the load generator shares the machine's cores with the server, so req/s is a \
loopback figure of both. RSS = the server's peak VmRSS sampled every 100 ms under load; \
idle = the server's VmRSS with that many keep-alive connections open and quiet (--full). \
Context switches: of the 2 server threads that used the most CPU during the load (of every \
thread for threads), from /proc/PID/task/*/status, per 1,000 requests served; voluntary = \
the thread blocked (slept in epoll_wait, a futex), involuntary = it lost its core while it could run (preempted, or a \
sched_yield that let another thread in); run-queue wait = time those threads were runnable \
but off a core (/proc/PID/task/*/schedstat), % of the load's wall time each. How may's and \
fibra's workers wait for work: docs/lab/IDLE.md. \
\"fibra shared poller\" rows (--full): fibra with RuntimeBuilder::shared_poller, one epoll for \
all workers instead of one per worker (the default); \"fibra migration\" rows (--full): fibra with \
the unsafe RuntimeBuilder::migrate_started_fibers opt-in, so a started fiber may resume on \
whichever worker is free (as a tokio task can; the server holds no thread-local across a park); \
neither variant is in the plots. \
RLIMIT_NOFILE is raised to its hard limit for the lab, the load generator and the server. \
Listen drops: SYNs the kernel dropped at a full listen queue during the load (TcpExt \
ListenDrops, machine-wide), as the load opens all its connections at once. \
\"conns open, 1 req/s each\" rows (--full): the same servers hold N connections from the lab's own \
client, a separate process on the same cores (one thread, one epoll, sockets spread over \
loopback source addresses 127.0.0.x, at most 64 connects in flight); N = 10,000 and the largest \
the hard RLIMIT_NOFILE (in the label) allows each process with 500 descriptors spare, 100,000 \
if it allows that. Each connection has one request answered, then the server's RSS is read \
with all of them idle; then each sends one request a second for 10 s, staggered evenly (p50/p99 \
from the write to the answer's last byte; RSS = the peak). Per connection = (RSS − RSS before \
connecting) / N. The 100,000 figure is a projection from that idle cost unless N reached \
100,000. Errors count failed connects (by errno), resets, non-2xx and missing answers, and \
slots skipped because the previous ping was unanswered; listen drops are the machine's.";

pub const FIGURES: &[Figure] =
    &concat::<{ LOAD_FIGURES.len() + conns::FIGURES.len() }>(LOAD_FIGURES, conns::FIGURES);

/// `a` then `b`, in a constant.
const fn concat<const N: usize>(a: &[Figure], b: &[Figure]) -> [Figure; N] {
    let mut out = [a[0]; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < a.len() { a[i] } else { b[i - a.len()] };
        i += 1;
    }
    out
}

/// The closed-loop rows' figures (and the idle row's).
const LOAD_FIGURES: &[Figure] = &[
    Figure {
        key: "req_per_s",
        title: "requests per second (higher is better)",
        cost: false,
    },
    Figure {
        key: "p50_ms",
        title: "p50 latency, ms",
        cost: true,
    },
    Figure {
        key: "p99_ms",
        title: "p99 latency, ms",
        cost: true,
    },
    Figure {
        key: "rss_mib",
        title: "server RSS under load (peak), MiB",
        cost: true,
    },
    Figure {
        key: "idle_rss_mib",
        title: "server RSS with the connections open and idle, MiB",
        cost: true,
    },
    Figure {
        key: CS_VOLUNTARY,
        title: "voluntary context switches of the busiest threads per 1,000 requests",
        cost: false,
    },
    Figure {
        key: CS_INVOLUNTARY,
        title:
            "involuntary context switches (preemptions) of the busiest threads per 1,000 requests",
        cost: true,
    },
    Figure {
        key: RUNQ_WAIT,
        title: "time the busiest threads waited on a run queue, % of the load's wall time each",
        cost: true,
    },
    Figure {
        key: "errors",
        title: "socket errors, timeouts and non-2xx answers",
        cost: false,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "req-per-s",
        key: "req_per_s",
        title: "io: requests per second vs connections",
        axis: "req/s",
        shape: PlotShape::LinesOverN,
    },
    PlotSpec {
        stem: "p99",
        key: "p99_ms",
        title: "io: p99 latency vs connections",
        axis: "p99 latency, ms",
        shape: PlotShape::LinesOverN,
    },
];

/// Context switches per 1,000 requests of the server's `workers` busiest threads over the load
/// (`task_stat`): voluntary (the thread blocked: it had nothing to do, or waited in a
/// syscall) and involuntary (the kernel preempted it while it could run).
pub const CS_VOLUNTARY: &str = "cs_vol_per_1k_req";
pub const CS_INVOLUNTARY: &str = "cs_invol_per_1k_req";
/// The time those threads were runnable but off a core (`schedstat`), as a % of the load's
/// wall time, averaged over them: what preemption costs the fibers queued behind them.
pub const RUNQ_WAIT: &str = "runq_wait_pct";

/// The row variant whose cell holds idle connections instead of load.
pub const IDLE_CASE: &str = "idle";
/// The row variant of fibra's server on one shared poller (`RuntimeBuilder::shared_poller`).
pub const SHARED_POLLER_CASE: &str = "shared-poller";
/// The row variant of fibra's server with the unsafe opt-in that lets started fibers move
/// between workers (`RuntimeBuilder::migrate_started_fibers`).
pub const MIGRATION_CASE: &str = "migration";

/// fibra's variants in `--full`, each at [`VARIANT_CONNECTIONS`]: (case, row label suffix).
const FIBRA_VARIANTS: &[(&str, &str)] = &[
    (SHARED_POLLER_CASE, "fibra shared poller"),
    (MIGRATION_CASE, "fibra migration"),
];

/// Loads at which `--full` also measures fibra's variants: the shared poller is the issue's
/// comparison of one poller per worker against one for all; migration shows what the
/// started-fibers-stay-put rule costs the latency tail.
const VARIANT_CONNECTIONS: &[u64] = &[100, 1_000];

fn connections(size: Size) -> &'static [u64] {
    match size {
        Size::Tiny => &[4, 16],
        Size::Quick => &[10, 100, 1_000],
        Size::Full => &[10, 100, 1_000, 10_000],
    }
}

/// Idle connections held open in the idle row: `--full` only (tiny has a small one, so the
/// tests cover it).
fn idle_connections(size: Size) -> Option<u64> {
    match size {
        Size::Tiny => Some(16),
        Size::Quick => None,
        Size::Full => Some(10_000),
    }
}
/// How long opening them may take (a few seconds on a 2-core VM).
const IDLE_BUDGET: Duration = Duration::from_secs(120);

/// How long each load runs: short in the quick profile, which must stay near 2 minutes.
fn load_duration(size: Size) -> Duration {
    Duration::from_secs(match size {
        Size::Tiny | Size::Quick => 1,
        Size::Full => 5,
    })
}

/// http_hello disconnects clients idle for 10 s by default; opening 10,000 idle connections
/// one by one can take longer than that, so the lab's fibra server waits longer (the other
/// servers have no read timeout).
const READ_TIMEOUT_ENV: &str = "FIBRA_HTTP_READ_TIMEOUT_MS";
const READ_TIMEOUT_MS: &str = "120000";

/// Descriptors a process needs beyond one per connection (std streams, epoll, listener…).
const FD_MARGIN: u64 = 64;

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let workers = cores.clamp(1, 2);
    let params = |n: u64, case: Option<&str>| Params {
        n,
        workers,
        pin_one_cpu: false,
        case: case.map(str::to_string),
    };
    let mut rows: Vec<Row> = connections(size)
        .iter()
        .map(|&n| Row {
            label: format!("{} conns", short_count(n)),
            cells: super::same_for_all(contenders, &params(n, None)),
        })
        .collect();
    if size == Size::Full {
        for &(case, name) in FIBRA_VARIANTS {
            for &n in VARIANT_CONNECTIONS {
                rows.push(Row {
                    label: format!("{} conns, {name}", short_count(n)),
                    cells: super::same_for_all(contenders, &params(n, Some(case))),
                });
            }
        }
    }
    if let Some(n) = idle_connections(size) {
        rows.push(Row {
            label: format!("{} idle conns", short_count(n)),
            cells: super::same_for_all(contenders, &params(n, Some(IDLE_CASE))),
        });
    }
    // The limit both processes of a conns row live under (the lab raises its soft limit to
    // it, and they inherit it); getrlimit does not fail on Linux.
    let limit = machine::raise_nofile().unwrap_or(0);
    for n in conns::sizes(size, limit) {
        rows.push(Row {
            label: conns::label(n, limit),
            cells: super::same_for_all(contenders, &params(n, Some(conns::CASE))),
        });
    }
    rows
}

/// Why a contender has no cell in a row, if it has none.
pub fn not_applicable(contender: Contender, params: &Params) -> Option<String> {
    if contender == Contender::Fibra {
        return None;
    }
    match params.case.as_deref() {
        Some(SHARED_POLLER_CASE) => {
            Some("a fibra variant: one poller shared by its workers".into())
        }
        Some(MIGRATION_CASE) => Some("a fibra variant: started fibers may change workers".into()),
        _ => None,
    }
}

/// One repetition of one cell: a fresh server child, then load (or idle connections) from here.
pub fn measure(
    program: Option<&Path>,
    contender: Contender,
    params: &Params,
    size: Size,
) -> Result<Figures, String> {
    let envs = [(READ_TIMEOUT_ENV, READ_TIMEOUT_MS)];
    if params.case.as_deref() == Some(conns::CASE) {
        return conns::measure(program, contender, params, size, &envs);
    }
    // Raised here so the server and wrk inherit it.
    let limit = machine::raise_nofile()?;
    if limit < params.n + FD_MARGIN {
        return Err(format!(
            "RLIMIT_NOFILE cannot be raised above {limit} (its hard limit), too few for {} connections: raise the hard limit (ulimit -Hn) and run again",
            params.n
        ));
    }
    let mut server = Server::start(program, super::Experiment::Io, contender, params, &envs)?;
    let figures = if params.case.as_deref() == Some(IDLE_CASE) {
        idle(&server, params.n)
    } else {
        under_load(
            &server,
            busiest_threads(contender, params),
            params.n,
            load_duration(size),
        )
    };
    // A server that died mid-run explains a load failure better than the load's own error.
    match server.died() {
        Some(reason) => Err(reason),
        None => figures,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Whose context switches count: a runtime's workers, the `workers` threads that use the most
/// CPU; every thread of the thread-per-connection server, whose connections are its workers.
fn busiest_threads(contender: Contender, params: &Params) -> usize {
    match contender {
        Contender::Threads => usize::MAX,
        _ => params.workers,
    }
}

fn under_load(
    server: &Server,
    busiest: usize,
    conns: u64,
    duration: Duration,
) -> Result<Figures, String> {
    let generator = Generator::choose();
    let pid = server.pid();
    let threads_before = task_stat::snapshot(pid)?;
    let drops_before = conns::listen_drops();
    let started = Instant::now();
    let peak = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let load = thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(rss) = machine::rss_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        let load = generator.run(server.addr, conns, duration);
        done.store(true, Ordering::Relaxed);
        load
    });
    let threads_after = task_stat::snapshot(pid)?;
    let threads = busiest.min(threads_after.len()).max(1);
    let wall_ns = started.elapsed().as_nanos().max(1) as f64 * threads as f64;
    let load = load.map_err(|e| format!("{}: {e}", generator.name()))?;
    let switches = task_stat::busiest_delta(&threads_before, &threads_after, busiest);
    // The generators report a rate over their run, which is `duration` long.
    let kilo_requests = (load.req_per_s * duration.as_secs_f64() / 1_000.0).max(0.001);
    let peak = peak.load(Ordering::Relaxed).max(machine::rss_of(pid)?);
    // The load opens all its connections at once: a burst the listen queue must absorb.
    let drops = conns::listen_drops()
        .zip(drops_before)
        .map(|(after, before)| after.saturating_sub(before));
    let mut figures = Figures::from([
        ("req_per_s".to_string(), load.req_per_s),
        ("p50_ms".to_string(), load.p50_ms),
        ("p99_ms".to_string(), load.p99_ms),
        ("rss_mib".to_string(), mib(peak)),
        ("errors".to_string(), load.errors as f64),
        (
            CS_VOLUNTARY.to_string(),
            switches.voluntary as f64 / kilo_requests,
        ),
        (
            CS_INVOLUNTARY.to_string(),
            switches.involuntary as f64 / kilo_requests,
        ),
        (
            RUNQ_WAIT.to_string(),
            100.0 * switches.runq_wait_ns as f64 / wall_ns,
        ),
    ]);
    if let Some(drops) = drops {
        figures.insert("listen_drops".to_string(), drops as f64);
    }
    Ok(figures)
}

/// Opens `conns` keep-alive connections, one request answered on each, then samples the
/// server's RSS while they sit idle.
fn idle(server: &Server, conns: u64) -> Result<Figures, String> {
    let give_up = Instant::now() + IDLE_BUDGET;
    let mut open = Vec::with_capacity(conns as usize);
    for i in 0..conns {
        if Instant::now() > give_up {
            return Err(format!(
                "only {i} of {conns} idle connections opened in {} s",
                IDLE_BUDGET.as_secs()
            ));
        }
        let conn = hello(server.addr)
            .map_err(|e| format!("idle connection {} of {conns} failed: {e}", i + 1))?;
        open.push(conn);
    }
    // Let the server settle (fibers park, tasks return to the reactor) before the sample.
    thread::sleep(Duration::from_millis(500));
    let rss = machine::rss_of(server.pid())?;
    drop(open);
    Ok(Figures::from([("idle_rss_mib".to_string(), mib(rss))]))
}

/// A connection that has had one request answered.
fn hello(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"Hello, World!") {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&chunk[..n]);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_plan_has_fibra_variants_that_only_fibra_fills() {
        let all = [Contender::Fibra, Contender::Tokio, Contender::Go];
        let rows = plan(Size::Full, 2, &all);
        for (case, name) in FIBRA_VARIANTS {
            let variant: Vec<_> = rows.iter().filter(|r| r.label.ends_with(name)).collect();
            assert_eq!(variant.len(), VARIANT_CONNECTIONS.len(), "{name}");
            for row in variant {
                for (contender, params) in &row.cells {
                    assert_eq!(params.case.as_deref(), Some(*case));
                    let skipped = not_applicable(*contender, params).is_some();
                    assert_eq!(skipped, *contender != Contender::Fibra, "{name}");
                }
            }
        }
        let quick = plan(Size::Quick, 2, &all);
        assert!(quick
            .iter()
            .all(|r| r.cells.iter().all(|(_, p)| p.case.is_none())));
    }
}
