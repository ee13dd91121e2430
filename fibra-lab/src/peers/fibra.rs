//! fibra fibers: `fibra::spawn`, `fibra::sleep`, park/unpark ping-pong, and the
//! `http_hello` example's server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::child::{self, Figures};
use crate::experiments::chan::{self as chan_exp, Case, Flavour};
use crate::experiments::switch::{self as switch_exp, Placement};
use crate::experiments::{churn, io as io_exp, spawn as spawn_exp};
use crate::machine::vm_rss_bytes;
use crate::peers::blocking_client::{http_figures, Job as ClientJob};

// The io experiment measures the example itself: its server code is compiled in here, as
// fibra's own `tests/net_http.rs` does, so there is one fibra HTTP server, not two (the soak
// serves with it too).
#[path = "../../../fibra/examples/http_hello.rs"]
#[allow(dead_code)] // the example's `main` and the constants only its binary uses
pub mod http_hello;

// The fibra-hyper contender: the `hyper_hello` example's server, compiled in the same way.
#[path = "../../../fibra/examples/hyper_hello.rs"]
#[allow(dead_code)] // the example's `main`
pub mod hyper_hello;

fn runtime(workers: usize) -> Result<fibra::Runtime, String> {
    fibra::Runtime::builder()
        .workers(workers.max(1))
        .build()
        .map_err(|e| format!("could not build the fibra runtime: {e}"))
}

fn joined<T>(r: Result<T, fibra::JoinError>) -> Result<T, String> {
    r.map_err(|e| format!("fiber failed: {e}"))
}

pub fn spawn(n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.run(move || {
        let rss_before = vm_rss_bytes()?;
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                spawn_exp::unit_spawned();
                fibra::spawn(|| {
                    fibra::sleep(spawn_exp::UNIT_SLEEP);
                    spawn_exp::unit_woke();
                })
            })
            .collect();
        let spawn = t0.elapsed();
        fibra::sleep(spawn_exp::SAMPLE_AFTER);
        let rss_during = vm_rss_bytes()?;
        let alive_at_sample = spawn_exp::live_units();
        for h in handles {
            joined(h.join())?;
        }
        Ok(spawn_exp::Sample {
            n,
            spawn,
            wall: t0.elapsed(),
            rss_before,
            rss_during,
            alive_at_sample,
        }
        .figures())
    })
}

fn player(
    me: u64,
    rounds: u64,
    turn: Arc<AtomicU64>,
    slots: Arc<[OnceLock<fibra::Fiber>; 2]>,
    across_workers: bool,
) -> Placement {
    let _ = slots[me as usize].set(fibra::current());
    let other = loop {
        if let Some(f) = slots[1 - me as usize].get() {
            break f.clone();
        }
        if across_workers {
            // Keep this worker busy so the partner can only start on the other one; a started
            // fiber stays on its worker, so the pair then ping-pongs across threads throughout.
            std::hint::spin_loop();
        } else {
            fibra::yield_now();
        }
    };
    let mut placement = Placement::new(rounds);
    for i in 0..rounds {
        placement.sample(i);
        while turn.load(Ordering::Acquire) % 2 != me {
            fibra::park();
        }
        turn.fetch_add(1, Ordering::Release);
        other.unpark();
    }
    placement
}

/// `case`: [`switch_exp::PLACED`] lets the scheduler place the pair on 2 workers; otherwise
/// 2 workers force them apart.
pub fn switch(rounds: u64, workers: usize, case: Option<&str>) -> Result<Figures, String> {
    let across_workers = match case {
        None => workers > 1,
        Some(switch_exp::PLACED) => false,
        Some(other) => return Err(format!("switch: unknown case {other:?}")),
    };
    runtime(workers)?.run(move || {
        let turn = Arc::new(AtomicU64::new(0));
        let slots: Arc<[OnceLock<fibra::Fiber>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
        let t0 = Instant::now();
        let a = {
            let (turn, slots) = (turn.clone(), slots.clone());
            fibra::spawn(move || player(0, rounds, turn, slots, across_workers))
        };
        let b = fibra::spawn(move || player(1, rounds, turn, slots, across_workers));
        let a = joined(a.join())?;
        let b = joined(b.join())?;
        Ok(switch_exp::figures(rounds, t0.elapsed(), Some((&a, &b))))
    })
}

pub fn churn(n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.run(move || {
        let t0 = Instant::now();
        for batch in churn::batches(n) {
            let handles: Vec<_> = (0..batch).map(|_| fibra::spawn(|| {})).collect();
            for h in handles {
                joined(h.join())?;
            }
        }
        Ok(churn::figures(n, t0.elapsed()))
    })
}

/// `chan`: fibra::chan and fibra::sync::Mutex between fibers.
pub fn chan(case: Case, n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.run(move || {
        let t0 = Instant::now();
        match case {
            Case::PingPong => ping_pong(n)?,
            Case::Producers { producers, flavour } => {
                let (tx, rx) = match flavour {
                    Flavour::Buffered => fibra::chan::bounded::<u64>(chan_exp::CAPACITY),
                    Flavour::Rendezvous => fibra::chan::bounded::<u64>(0),
                    Flavour::Unbounded => fibra::chan::unbounded::<u64>(),
                };
                let senders: Vec<_> = (0..producers)
                    .map(|p| {
                        let tx = tx.clone();
                        fibra::spawn(move || {
                            for i in chan_exp::share(p, producers, n) {
                                if tx.send(i).is_err() {
                                    break;
                                }
                            }
                        })
                    })
                    .collect();
                drop(tx);
                let sum: u64 = rx.iter().sum();
                for s in senders {
                    joined(s.join())?;
                }
                if sum != chan_exp::expected_sum(n) {
                    return Err(format!("items lost: sum {sum}"));
                }
            }
            Case::Mutex => {
                let lock = Arc::new(fibra::sync::Mutex::new(0u64));
                let total = lock.clone();
                contend(n, move || *lock.lock() += 1, move || *total.lock())?;
            }
            Case::RwLock => {
                let lock = Arc::new(fibra::sync::RwLock::new(0u64));
                let total = lock.clone();
                contend(n, move || *lock.write() += 1, move || *total.read())?;
            }
        }
        Ok(chan_exp::figures(chan_exp::ops(case, n), t0.elapsed()))
    })
}

/// [`chan_exp::MANY`] fibers each run `incr` `n` times; `total` then reads the counter.
fn contend(
    n: u64,
    incr: impl Fn() + Clone + Send + 'static,
    total: impl FnOnce() -> u64,
) -> Result<(), String> {
    let units: Vec<_> = (0..chan_exp::MANY)
        .map(|_| {
            let incr = incr.clone();
            fibra::spawn(move || (0..n).for_each(|_| incr()))
        })
        .collect();
    for u in units {
        joined(u.join())?;
    }
    let total = total();
    if total != chan_exp::MANY * n {
        return Err(format!("lost increments: {total}"));
    }
    Ok(())
}

/// `n` round trips with an echo fiber over two `bounded(1)` channels.
fn ping_pong(n: u64) -> Result<(), String> {
    let (ping_tx, ping_rx) = fibra::chan::bounded::<u64>(1);
    let (pong_tx, pong_rx) = fibra::chan::bounded::<u64>(1);
    let echo = fibra::spawn(move || {
        for v in ping_rx.iter() {
            if pong_tx.send(v).is_err() {
                break;
            }
        }
    });
    for i in 0..n {
        ping_tx.send(i).map_err(|_| "echo fiber gone")?;
        pong_rx.recv().map_err(|_| "echo fiber gone")?;
    }
    drop(ping_tx);
    joined(echo.join())
}

/// `blocking`: 1,000 fibers sleep 1 ms in a loop while one blocks (see the experiment).
pub fn blocking(n: u64, workers: usize) -> Result<Figures, String> {
    use crate::experiments::blocking::{self as exp, Mode};
    let (kind, mode) = exp::decode(n);
    let board = exp::board();
    let b2 = board.clone();
    let mut builder = fibra::Runtime::builder()
        .workers(workers.max(1))
        .monitor(mode != Mode::MonitorOff)
        .on_stall(move |r: &fibra::StallReport| {
            if r.fiber_name.as_deref() == Some("blocker") {
                b2.reported_at.lock().unwrap().get_or_insert(Instant::now());
            }
        });
    if mode == Mode::Migrate {
        // SAFETY: the units hold no `!Send` value and no thread-local reference across a park.
        builder = unsafe { builder.migrate_started_fibers() };
    }
    let rt = builder
        .build()
        .map_err(|e| format!("could not build the fibra runtime: {e}"))?;
    rt.run(move || {
        let units: Vec<_> = (0..exp::UNITS)
            .map(|_| {
                let board = board.clone();
                fibra::spawn(move || exp::unit_loop(&board, || fibra::sleep(exp::TICK)))
            })
            .collect();
        fibra::sleep(exp::WARM_UP);
        let b = board.clone();
        let blocker = fibra::Builder::new().name("blocker").spawn(move || {
            b.block_starts();
            match mode {
                Mode::Offloaded => fibra::run_blocking(|| exp::block(kind)),
                _ => exp::block(kind),
            }
            b.block_ends();
        });
        joined(blocker.map_err(|e| format!("spawn: {e}"))?.join())?;
        fibra::sleep(exp::WARM_UP);
        board.stop.store(true, Ordering::Relaxed);
        let logs = units
            .into_iter()
            .map(|h| joined(h.join()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(board.figures(logs))
    })
}

/// io: the `http_hello` example's server, until the lab kills the process; `case` picks a
/// variant (`experiments::io::SHARED_POLLER_CASE`, `MIGRATION_CASE`).
pub fn io_server(workers: usize, case: Option<&str>) -> Result<Figures, String> {
    let mut builder = fibra::Runtime::builder().workers(workers.max(1));
    match case {
        Some(io_exp::SHARED_POLLER_CASE) => builder = builder.shared_poller(),
        Some(io_exp::MIGRATION_CASE) => {
            // SAFETY: the server's fibers (http_hello::serve and its connections) hold no
            // `!Send` value and no thread-local reference across a park: they keep only
            // sockets and buffers, and std's own thread-locals are reached afresh in each call.
            builder = unsafe { builder.migrate_started_fibers() };
        }
        _ => {}
    }
    let rt = builder
        .build()
        .map_err(|e| format!("could not build the fibra runtime: {e}"))?;
    rt.run(|| {
        let listener = fibra::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        child::announce(listener.local_addr())?;
        http_hello::serve(listener, http_hello::read_timeout())
            .map_err(|e| format!("the server stopped: {e}"))?;
        Err("the server stopped".to_string())
    })
}

/// io: the `hyper_hello` example's server (hyper's http1 server on fibra), until the lab
/// kills the process. Its header read timeout is http_hello's read timeout (the same env).
pub fn io_hyper_server(workers: usize) -> Result<Figures, String> {
    let rt = fibra::Runtime::builder()
        .workers(workers.max(1))
        .build()
        .map_err(|e| format!("could not build the fibra runtime: {e}"))?;
    rt.run(|| {
        let listener = fibra::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        child::announce(listener.local_addr())?;
        hyper_hello::serve(listener, hyper_hello::header_read_timeout())
            .map_err(|e| format!("the server stopped: {e}"))?;
        Err("the server stopped".to_string())
    })
}

/// `fs`: one fiber per unit, `fibra::fs::File::read_at` on one shared file.
pub fn fs(job: &crate::experiments::fs::Job, workers: usize) -> Result<Figures, String> {
    use crate::experiments::fs as exp;
    let job = Arc::new(job.clone());
    runtime(workers)?.run(move || {
        let file = Arc::new(
            fibra::fs::File::open(&job.path).map_err(|e| format!("{}: {e}", job.path.display()))?,
        );
        // The units start reading together, once every fiber exists.
        let gate = Arc::new(fibra::sync::Barrier::new(job.case.conc as usize + 1));
        let units: Vec<_> = (0..job.case.conc)
            .map(|unit| {
                let (file, gate, job) = (file.clone(), gate.clone(), job.clone());
                // Independent, long-lived readers: `spread` (what `Builder::spread` documents
                // for them) starts them across the workers. Without it the burst of spawns all
                // started on this worker before the other judged a steal worth it (steal.rs),
                // and stayed there: 64 of 64 units on worker 0, 0.68× threads.
                fibra::Builder::new().spread().spawn(move || {
                    gate.wait();
                    exp::unit_loop(&job, unit, |b, o| file.read_at(b, o))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("spawn: {e}"))?;
        gate.wait();
        let runs = units
            .into_iter()
            .map(|u| joined(u.join())?)
            .collect::<Result<Vec<_>, String>>()?;
        exp::figures(runs)
    })
}

/// `client`: a fiber per unit, each with one `fibra::net::TcpStream` kept alive for its share
/// of the GETs (`crate::http::get`).
pub fn client(job: &ClientJob, workers: usize) -> Result<Figures, String> {
    if job.redis {
        return Err("the native fibra client speaks HTTP only".into());
    }
    runtime(workers)?.run(|| {
        let start = Instant::now();
        let units: Vec<_> = (0..job.units)
            .map(|i| {
                let (addr, share) = (job.addr, job.share(i));
                fibra::spawn(move || -> Result<Vec<std::time::Duration>, String> {
                    let mut latencies = Vec::with_capacity(share as usize);
                    let mut stream = None;
                    let mut buf = Vec::with_capacity(256);
                    for _ in 0..share {
                        let t = Instant::now();
                        let s = match &mut stream {
                            Some(s) => s,
                            None => {
                                let s = fibra::net::TcpStream::connect(addr)
                                    .map_err(|e| format!("connect: {e}"))?;
                                let _ = s.set_nodelay(true);
                                stream.insert(s)
                            }
                        };
                        crate::http::get(s, &mut buf).map_err(|e| format!("GET: {e}"))?;
                        latencies.push(t.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(job.requests as usize);
        for unit in units {
            latencies.extend(joined(unit.join())??);
        }
        Ok(http_figures(start.elapsed(), latencies))
    })
}
