//! `fibra-lab soak SECONDS` (run by `scripts/soak.sh`, not in CI): mixed load in one process
//! for a while, to show that memory, descriptors and threads stay flat and nothing is lost.
//!
//! # What runs
//! One fibra runtime (2 workers) serving HTTP with `http_hello`'s server (the io experiment's
//! fibra server), under the lab's own generator (`load::builtin`, two threads of this process)
//! with connection churn: 64 connections, 16 kept alive, the others closed after 1–16
//! requests, half by the client and half by the server (`Connection: close`), and reopened.
//! Beside it, in the same runtime (`work.rs`): spawn churn (joined, detached, panicking,
//! nested and scoped fibers), channels (`bounded(64)`, rendezvous, `unbounded()`, `select!`),
//! 1,000 sleepers, and blocking excursions (`fibra::blocking`, `spawn_blocking`; the pool's
//! keep-alive is 1 s, see [`BLOCKING_KEEP_ALIVE`]). Nothing here
//! changes process-wide state: no panic hook, no signal handler, no resource limit.
//!
//! # Timeline
//! 1. Descriptors and threads are read before the load starts (the baseline for step 5),
//!    after an empty session has opened the one descriptor fibra keeps for the process.
//! 2. Every [`PERIOD`] a line: elapsed, RSS, open fds, threads, live fibers, and the rate of
//!    each kind of operation over the period. One extra line at the end of the warm-up:
//!    [`WARM_UP_SHARE`] of the run or [`MAX_WARM_UP`], whichever is less.
//! 3. At SECONDS the last sample (still under load) is compared with the warm-up's.
//! 4. Clean stop: the generator stops and closes its connections; the fibers stop and are
//!    joined; the server's connection fibers end, leaving 2 live fibers (the root and the
//!    accept loop); the root returns and `block_on` shuts the runtime down, which must take
//!    less than [`SHUTDOWN_TIMEOUT`] (else a dump of the runtime goes to stderr).
//! 5. After the shutdown the process has the descriptors and threads of step 1.
//!
//! # The last line, and when the soak fails
//! `soak: seconds=N rss_growth_pct=X fd_growth=Y thread_growth=Z lost=L`, where `lost` sums,
//! each counted at both ends: requests sent − answered, channel items sent − received,
//! fibers spawned − (joined + detached ones ended), sleeps begun − ended, blocking jobs
//! submitted − returned, and fibers still live after the drain beyond the root and the accept
//! loop. The exit status is 1, with a `soak: FAIL` line per reason, if `lost` != 0, a result
//! was wrong (a joined value, a sum, a sleep ended early, an HTTP error), some kind of
//! operation made no progress for a whole period, the shutdown hung or left descriptors or
//! threads behind, or growth passed a limit: [`MAX_RSS_GROWTH_PCT`], [`MAX_FD_GROWTH`],
//! [`MAX_THREAD_GROWTH`].

mod sample;
mod work;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use sample::{
    fd_targets, open_fds, thread_count, thread_names, Progress, RuntimeFigures, Sample, Window,
    READING_GAP,
};
use work::{Ctx, Tally};

use crate::load::builtin::{self, Churn, Counts, Plan, Until};
use crate::peers::fibra::http_hello;

/// A line every this often.
pub const PERIOD: Duration = Duration::from_secs(10);
/// The warm-up: this share of the run, or [`MAX_WARM_UP`] if that is less.
pub const WARM_UP_SHARE: f64 = 0.2;
pub const MAX_WARM_UP: Duration = Duration::from_secs(30);

/// Limits on growth between the warm-up's sample and the last (both under load).
/// RSS: stacks, buffers and allocator arenas are warm by then; 10% leaves room for the
/// allocator's own drift while a leak of one small allocation per request or per spawn
/// (millions of them) passes it within a minute.
pub const MAX_RSS_GROWTH_PCT: f64 = 10.0;
/// Descriptors and threads compare floors, the least reading over the period (or half the
/// warm-up, if less) before each sample (`sample.rs`). With 64 connections churning (both
/// ends in this process) the floors of one 180 s run ranged over 126–137, so 16; a leak of one
/// descriptor in 10,000 churned connections (thousands a second) passes it within a minute.
pub const MAX_FD_GROWTH: i64 = 16;
/// Threads: the blocking pool grows and shrinks with the excursions (3 at a time, idle
/// threads kept [`BLOCKING_KEEP_ALIVE`]), and the monitor may start spare workers (at most 2
/// here) when a worker is stuck; a spare started under this load stays until the load ends
/// (it keeps finding work, so it is never idle long enough to retire).
pub const MAX_THREAD_GROWTH: i64 = 4;
/// The blocking pool's keep-alive here (the default is 10 s): a fiber woken by its job can
/// submit the next before that job's thread is idle again, which starts one more thread; with
/// 1 s such threads retire well within a period, so the floors show the pool's steady size,
/// and starting and retiring threads is part of the load.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Stall reports printed (each a line on stderr); the rest are only counted. On a machine
/// shared with other work a worker preempted for 10 ms is reported as stuck, so reports are
/// expected and do not fail the soak.
const STALLS_SHOWN: u64 = 3;

const WORKERS: usize = 2;
/// The HTTP load (see the module doc).
const CONNS: u64 = 64;
const CHURN: Churn = Churn {
    kept_alive: 16,
    max_requests: 16,
};
/// The server's read timeout: longer than any pause of the generator's.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the drain may take for the server's connection fibers to end and the detached
/// fibers to finish (each takes a few ms; a server lingers at most 1 s on a closing one).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Live fibers once the load has drained: the root and the accept loop.
const FIBERS_AFTER_DRAIN: usize = 2;
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the root fiber saw after the drain.
struct Drained {
    /// Live fibers once the load had drained (or at [`DRAIN_TIMEOUT`]).
    live_fibers: usize,
    stall_reports: u64,
    spares_started: u64,
    /// Fiber runs per worker slot (configured workers, then spare slots).
    runs_per_slot: Vec<u64>,
}

pub fn main(seconds: u64) -> ExitCode {
    match soak(Duration::from_secs(seconds)) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The sample times: every [`PERIOD`], the warm-up's end, and the end; the warm-up's index.
fn schedule(run: Duration) -> (Vec<Duration>, usize) {
    let warm_up = run.mul_f64(WARM_UP_SHARE).min(MAX_WARM_UP);
    let mut at: Vec<Duration> = (1..)
        .map(|k| PERIOD * k)
        .take_while(|&t| t < run)
        .chain([warm_up, run])
        .collect();
    at.sort();
    at.dedup();
    let warm = at.iter().position(|&t| t == warm_up).unwrap_or(0);
    (at, warm)
}

/// Runs the soak and prints its lines, the verdict last; returns the reasons it failed (none:
/// it passed), each already printed as a `soak: FAIL` line.
fn soak(run: Duration) -> Result<Vec<String>, String> {
    let stalls = Arc::new(AtomicU64::new(0));
    let counted = stalls.clone();
    let rt = fibra::Runtime::builder()
        .workers(WORKERS)
        .blocking_keep_alive(BLOCKING_KEEP_ALIVE)
        .on_stall(move |r| {
            if counted.fetch_add(1, Relaxed) < STALLS_SHOWN {
                eprintln!("soak: stall report (only the first {STALLS_SHOWN} are shown): {r}");
            }
        })
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    // fibra keeps one descriptor for the whole process, opened by the first session that maps
    // stacks (a pidfd of its own, for `process_madvise`; `sys/linux/mem.rs`): an empty
    // session opens it before the baseline is read.
    rt.run(|| fibra::spawn(|| ()).join())
        .map_err(|e| format!("an empty session failed: {e}"))?;
    let fds_before = open_fds()?;
    let fd_targets_before = fd_targets();
    let threads_before = thread_count()?;
    let ctx = Ctx {
        tally: Arc::new(Tally::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let http = Counts::default();
    let load_stop = AtomicBool::new(false);
    let mut failures = Vec::new();

    let (addr_tx, addr_rx) = mpsc::channel();
    let (drain_tx, drain_rx) = fibra::chan::oneshot::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let session = {
        let (rt, ctx) = (rt.clone(), ctx.clone());
        thread::Builder::new()
            .name("soak-runtime".into())
            .spawn(move || {
                let drained = rt.run(move || root(&ctx, addr_tx, drain_rx));
                let _ = done_tx.send(drained);
            })
            .map_err(|e| format!("cannot start the runtime's thread: {e}"))?
    };
    let addr: SocketAddr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the server did not start".to_string())??;
    let figures = || {
        rt.metrics()
            .first()
            .map(RuntimeFigures::of)
            .unwrap_or_default()
    };
    let mut threads_named = (String::new(), String::new()); // at the warm-up's end, at the end

    let (samples, warm) = thread::scope(|s| -> Result<_, String> {
        let plan = Plan {
            conns: CONNS,
            until: Until::Stopped(&load_stop),
            churn: Some(CHURN),
            latencies: false,
            counts: &http,
        };
        let load = thread::Builder::new()
            .name("soak-load".into())
            .spawn_scoped(s, move || builtin::drive(addr, &plan))
            .map_err(|e| format!("cannot start the load: {e}"))?;
        let t0 = Instant::now();
        let progress = || Progress::read(&http, &ctx.tally);
        let (times, warm) = schedule(run);
        // Floors over the same span at every sample, and none reaching back before the load
        // had started at the warm-up's end.
        let mut window = Window::new(PERIOD.min(times[warm] / 2));
        let first = Sample::take(0.0, &mut window, figures(), progress())?;
        let mut samples = vec![first];
        for (i, &at) in times.iter().enumerate() {
            loop {
                let left = (t0 + at).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                thread::sleep(left.min(READING_GAP));
                window.read()?;
            }
            let secs = t0.elapsed().as_secs_f64();
            let now = Sample::take(secs, &mut window, figures(), progress())?;
            if i == warm {
                threads_named.0 = thread_names();
            }
            if i + 1 == times.len() {
                threads_named.1 = thread_names();
            }
            let prev = samples.last().copied().unwrap_or(first);
            let label = match i {
                _ if i == warm => " (warm-up end)",
                _ if i + 1 == times.len() => " (end)",
                _ => "",
            };
            println!("{}", now.line(label, &prev));
            let stalled = now.progress.stalled_since(&prev.progress);
            if !stalled.is_empty() {
                failures.push(format!(
                    "no progress in {} between {:.0} s and {:.0} s",
                    stalled.join(", "),
                    prev.secs,
                    now.secs
                ));
            }
            samples.push(now);
        }
        load_stop.store(true, Relaxed);
        match load.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(format!("the load generator: {e}")),
            Err(_) => failures.push("the load generator panicked".into()),
        }
        Ok((samples, warm + 1)) // samples[0] is the start
    })?;

    // Stop the fibers, drain, shut down.
    let stopping = Instant::now();
    let _ = drain_tx.send(());
    let drained = match done_rx.recv_timeout(SHUTDOWN_TIMEOUT) {
        Ok(d) => d,
        Err(_) => {
            eprintln!(
                "soak: the runtime did not stop within {} s; its fibers:\n{}",
                SHUTDOWN_TIMEOUT.as_secs(),
                rt.dump()
            );
            return Err("hang: the runtime did not shut down".into());
        }
    };
    let stopped_in = stopping.elapsed();
    if session.join().is_err() {
        failures.push("the runtime's thread panicked".into());
    }
    let fds_after = open_fds()?;
    let threads_after = thread_count()?;
    if fds_after != fds_before {
        let after = fd_targets();
        let new: Vec<_> = after
            .iter()
            .filter(|t| !fd_targets_before.contains(t))
            .collect();
        let gone: Vec<_> = fd_targets_before
            .iter()
            .filter(|t| !after.contains(t))
            .collect();
        println!("soak: descriptors after the shutdown, new: {new:?}; gone: {gone:?}");
    }
    if threads_after != threads_before {
        println!("soak: threads after the shutdown: {}", thread_names());
    }

    let t = &ctx.tally;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    let diff = |a: u64, b: u64| a.abs_diff(b);
    let (sent, answered) = (get(&http.sent), get(&http.answered));
    let http_errors = get(&http.errors);
    println!(
        "soak: http: {sent} requests sent, {answered} answered, {} connections opened, {http_errors} errors",
        get(&http.opened)
    );
    let accounted = get(&t.joined_ok) + get(&t.joined_panicked) + get(&t.detached_done);
    println!(
        "soak: fibers: {} spawned, {} joined, {} panicked (joined), {} detached ({} ended); {} live after the drain (expected {FIBERS_AFTER_DRAIN})",
        get(&t.spawned),
        get(&t.joined_ok),
        get(&t.joined_panicked),
        get(&t.detached),
        get(&t.detached_done),
        drained.live_fibers
    );
    let sums_equal = get(&t.sum_sent) == get(&t.sum_received);
    println!(
        "soak: channels: {} items sent, {} received, value sums {}; {} selects ({} timed out)",
        get(&t.items_sent),
        get(&t.items_received),
        if sums_equal { "equal" } else { "DIFFER" },
        get(&t.selects),
        get(&t.select_timeouts)
    );
    println!(
        "soak: sleeps: {} begun, {} ended, {} early; blocking: {} submitted, {} returned; wrong results: {}",
        get(&t.sleeps_begun),
        get(&t.sleeps_ended),
        get(&t.sleeps_early),
        get(&t.blocking_submitted),
        get(&t.blocking_returned),
        get(&t.wrong)
    );
    println!(
        "soak: runtime: {} stall reports, {} spares started, fiber runs per worker slot {:?}; stopped in {:.2} s; fds {fds_before} before, {fds_after} after; threads {threads_before} before, {threads_after} after",
        stalls.load(Relaxed).max(drained.stall_reports),
        drained.spares_started,
        drained.runs_per_slot,
        stopped_in.as_secs_f64()
    );
    let lost = diff(sent, answered)
        + diff(get(&t.items_sent), get(&t.items_received))
        + diff(get(&t.spawned), accounted)
        + diff(get(&t.sleeps_begun), get(&t.sleeps_ended))
        + diff(get(&t.blocking_submitted), get(&t.blocking_returned))
        + diff(drained.live_fibers as u64, FIBERS_AFTER_DRAIN as u64);

    let (w, end) = (samples[warm], samples[samples.len() - 1]);
    let rss_growth_pct = (end.rss_bytes as f64 / w.rss_bytes as f64 - 1.0) * 100.0;
    let fd_growth = end.fds_floor as i64 - w.fds_floor as i64;
    let thread_growth = end.threads_floor as i64 - w.threads_floor as i64;
    println!(
        "soak: warm-up end at {:.0} s → end at {:.0} s: rss {:.1} → {:.1} MiB, fds floor {} → {}, threads floor {} → {}, fibers {} → {}, stacks {} → {}",
        w.secs,
        end.secs,
        w.rss_bytes as f64 / (1024.0 * 1024.0),
        end.rss_bytes as f64 / (1024.0 * 1024.0),
        w.fds_floor,
        end.fds_floor,
        w.threads_floor,
        end.threads_floor,
        w.runtime.live_fibers,
        end.runtime.live_fibers,
        w.runtime.stacks_in_use,
        end.runtime.stacks_in_use
    );
    if thread_growth > 0 {
        println!("soak: threads at the warm-up's end: {}", threads_named.0);
        println!("soak: threads at the end: {}", threads_named.1);
    }

    let mut check = |bad: bool, why: String| {
        if bad {
            failures.push(why);
        }
    };
    check(lost != 0, format!("lost = {lost}"));
    check(http_errors != 0, format!("{http_errors} HTTP errors"));
    check(!sums_equal, "channel value sums differ".into());
    check(
        get(&t.wrong) != 0,
        format!("{} wrong results", get(&t.wrong)),
    );
    check(
        get(&t.sleeps_early) != 0,
        format!("{} sleeps ended early", get(&t.sleeps_early)),
    );
    check(
        fds_after != fds_before || threads_after != threads_before,
        format!(
            "after the shutdown: {fds_after} fds (before: {fds_before}), {threads_after} threads (before: {threads_before})"
        ),
    );
    check(
        rss_growth_pct > MAX_RSS_GROWTH_PCT,
        format!("RSS grew {rss_growth_pct:.1}% (limit {MAX_RSS_GROWTH_PCT}%)"),
    );
    check(
        fd_growth > MAX_FD_GROWTH,
        format!("fds grew by {fd_growth} (limit {MAX_FD_GROWTH})"),
    );
    check(
        thread_growth > MAX_THREAD_GROWTH,
        format!("threads grew by {thread_growth} (limit {MAX_THREAD_GROWTH})"),
    );
    for f in &failures {
        eprintln!("soak: FAIL: {f}");
    }
    println!(
        "soak: seconds={} rss_growth_pct={rss_growth_pct:.1} fd_growth={fd_growth} thread_growth={thread_growth} lost={lost}",
        run.as_secs()
    );
    Ok(failures)
}

/// The root fiber: starts the server and the load fibers, waits for the drain signal, stops
/// and joins the fibers, and waits for the server's connections to end.
fn root(
    ctx: &Ctx,
    addr_tx: mpsc::Sender<Result<SocketAddr, String>>,
    drain: fibra::chan::OneshotReceiver<()>,
) -> Drained {
    let listener = match fibra::net::TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            let _ = addr_tx.send(Err(format!("cannot bind 127.0.0.1:0: {e}")));
            return Drained {
                live_fibers: 0,
                stall_reports: 0,
                spares_started: 0,
                runs_per_slot: Vec::new(),
            };
        }
    };
    let addr = listener.local_addr().map_err(|e| e.to_string());
    // Never joined: it accepts until the session's end unwinds it.
    let _server = fibra::Builder::new()
        .name("http-accept")
        .spawn(move || http_hello::serve(listener, READ_TIMEOUT))
        .expect("a stack for the accept loop");
    let fibers = work::start(ctx);
    let _ = addr_tx.send(addr);

    let _ = drain.recv(); // a dropped sender (the driver failed) drains as well
    ctx.stop.store(true, Relaxed);
    for f in fibers {
        if f.join().is_err() {
            Tally::add(&ctx.tally.wrong, 1);
        }
    }
    let t = &ctx.tally;
    let until = Instant::now() + DRAIN_TIMEOUT;
    let metrics = || fibra::debug::metrics().expect("called from a fiber");
    while Instant::now() < until
        && (t.detached_done.load(Relaxed) < t.detached.load(Relaxed)
            || metrics().live_fibers > FIBERS_AFTER_DRAIN)
    {
        fibra::sleep(Duration::from_millis(5));
    }
    let m = metrics();
    Drained {
        live_fibers: m.live_fibers,
        stall_reports: m.stall_reports,
        spares_started: m.spares_started,
        runs_per_slot: m.workers.iter().map(|w| w.fibers_run).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_marks_the_warm_up() {
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs).collect::<Vec<_>>();
        let (at, warm) = schedule(Duration::from_secs(60));
        assert_eq!(secs(&at), [10, 12, 20, 30, 40, 50, 60]);
        assert_eq!(at[warm], Duration::from_secs(12));
        let (at, warm) = schedule(Duration::from_secs(180));
        assert_eq!(at.len(), 18);
        assert_eq!(at[warm], Duration::from_secs(30)); // 20% would be 36 s
        let (at, warm) = schedule(Duration::from_secs(50));
        assert_eq!(secs(&at), [10, 20, 30, 40, 50]);
        assert_eq!(at[warm], Duration::from_secs(10));
    }
}
