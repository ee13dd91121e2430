//! tokio tasks on a multi-thread runtime; `tokio::time::sleep`; `tokio::sync::Notify` ping-pong;
//! an HTTP server on hyper.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{mpsc, Notify};

use crate::child::{self, Figures};
use crate::experiments::chan::{self as chan_exp, Case, Flavour};
use crate::experiments::switch::{self as switch_exp, Placement};
use crate::experiments::{churn, spawn as spawn_exp};
use crate::machine::vm_rss_bytes;
use crate::peers::blocking_client::{self, Job as ClientJob};

fn runtime(workers: usize) -> Result<Runtime, String> {
    build(Builder::new_multi_thread().enable_time(), workers)
}

/// `runtime` with tokio's I/O driver too (sockets).
fn io_runtime(workers: usize) -> Result<Runtime, String> {
    build(
        Builder::new_multi_thread().enable_io().enable_time(),
        workers,
    )
}

fn build(builder: &mut Builder, workers: usize) -> Result<Runtime, String> {
    builder
        .worker_threads(workers.max(1))
        .build()
        .map_err(|e| format!("could not build the tokio runtime: {e}"))
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, String> {
    r.map_err(|e| format!("task failed: {e}"))
}

pub fn spawn(n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(async move {
        let rss_before = vm_rss_bytes()?;
        let t0 = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                spawn_exp::unit_spawned();
                tokio::spawn(async {
                    tokio::time::sleep(spawn_exp::UNIT_SLEEP).await;
                    spawn_exp::unit_woke();
                })
            })
            .collect();
        let spawn = t0.elapsed();
        tokio::time::sleep(spawn_exp::SAMPLE_AFTER).await;
        let rss_during = vm_rss_bytes()?;
        let alive_at_sample = spawn_exp::live_units();
        for h in handles {
            joined(h.await)?;
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

async fn player(me: u64, rounds: u64, turn: Arc<AtomicU64>, bells: Arc<[Notify; 2]>) -> Placement {
    let mut placement = Placement::new(rounds);
    for i in 0..rounds {
        placement.sample(i);
        while turn.load(Ordering::Acquire) % 2 != me {
            bells[me as usize].notified().await;
        }
        turn.fetch_add(1, Ordering::Release);
        bells[1 - me as usize].notify_one();
    }
    placement
}

pub fn switch(rounds: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(async move {
        let turn = Arc::new(AtomicU64::new(0));
        let bells = Arc::new([Notify::new(), Notify::new()]);
        let t0 = Instant::now();
        let a = tokio::spawn(player(0, rounds, turn.clone(), bells.clone()));
        let b = tokio::spawn(player(1, rounds, turn, bells));
        let a = joined(a.await)?;
        let b = joined(b.await)?;
        Ok(switch_exp::figures(rounds, t0.elapsed(), Some((&a, &b))))
    })
}

pub fn churn(n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(async move {
        let t0 = Instant::now();
        for batch in churn::batches(n) {
            let handles: Vec<_> = (0..batch).map(|_| tokio::spawn(async {})).collect();
            for h in handles {
                joined(h.await)?;
            }
        }
        Ok(churn::figures(n, t0.elapsed()))
    })
}

/// `chan`: tokio::sync::mpsc, tokio::sync::Mutex and RwLock between tasks (all spawned: `block_on`'s
/// own future runs outside the workers, which would add a thread hop per message).
pub fn chan(case: Case, n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(async move {
        let t0 = Instant::now();
        match case {
            Case::PingPong => ping_pong(n).await?,
            Case::Producers { producers, flavour } => {
                let sum = match flavour {
                    // tokio has no rendezvous channel: capacity 1 is the closest.
                    Flavour::Buffered => {
                        bounded_producers(producers, n, chan_exp::CAPACITY).await?
                    }
                    Flavour::Rendezvous => bounded_producers(producers, n, 1).await?,
                    Flavour::Unbounded => unbounded_producers(producers, n).await?,
                };
                if sum != chan_exp::expected_sum(n) {
                    return Err(format!("items lost: sum {sum}"));
                }
            }
            Case::Mutex => {
                let counter = Arc::new(tokio::sync::Mutex::new(0u64));
                let units: Vec<_> = (0..chan_exp::MANY)
                    .map(|_| {
                        let counter = counter.clone();
                        tokio::spawn(async move {
                            for _ in 0..n {
                                *counter.lock().await += 1;
                            }
                        })
                    })
                    .collect();
                for u in units {
                    joined(u.await)?;
                }
                let total = *counter.lock().await;
                if total != chan_exp::MANY * n {
                    return Err(format!("lost increments: {total}"));
                }
            }
            Case::RwLock => {
                let counter = Arc::new(tokio::sync::RwLock::new(0u64));
                let units: Vec<_> = (0..chan_exp::MANY)
                    .map(|_| {
                        let counter = counter.clone();
                        tokio::spawn(async move {
                            for _ in 0..n {
                                *counter.write().await += 1;
                            }
                        })
                    })
                    .collect();
                for u in units {
                    joined(u.await)?;
                }
                let total = *counter.read().await;
                if total != chan_exp::MANY * n {
                    return Err(format!("lost increments: {total}"));
                }
            }
        }
        Ok(chan_exp::figures(chan_exp::ops(case, n), t0.elapsed()))
    })
}

/// `n` round trips between two tasks over two `mpsc::channel(1)`.
async fn ping_pong(n: u64) -> Result<(), String> {
    let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
    let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).await.is_err() {
                break;
            }
        }
    });
    let pinger = tokio::spawn(async move {
        for i in 0..n {
            ping_tx.send(i).await.map_err(|_| "echo task gone")?;
            pong_rx.recv().await.ok_or("echo task gone")?;
        }
        Ok::<(), &str>(())
    });
    joined(pinger.await)??;
    joined(echo.await)
}

/// `producers` tasks send `n` items through `mpsc::channel(capacity)` to a consumer task.
async fn bounded_producers(producers: u64, n: u64, capacity: usize) -> Result<u64, String> {
    let (tx, mut rx) = mpsc::channel::<u64>(capacity);
    let consumer = tokio::spawn(async move {
        let mut sum = 0u64;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        sum
    });
    let senders: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in chan_exp::share(p, producers, n) {
                    if tx.send(i).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        joined(s.await)?;
    }
    joined(consumer.await)
}

/// `producers` tasks send `n` items through `mpsc::unbounded_channel` to a consumer task.
async fn unbounded_producers(producers: u64, n: u64) -> Result<u64, String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let consumer = tokio::spawn(async move {
        let mut sum = 0u64;
        while let Some(v) = rx.recv().await {
            sum += v;
        }
        sum
    });
    let senders: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in chan_exp::share(p, producers, n) {
                    if tx.send(i).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        joined(s.await)?;
    }
    joined(consumer.await)
}

/// `blocking`: 1,000 tasks sleep 1 ms in a loop while one blocks (see the experiment).
pub fn blocking(n: u64, workers: usize) -> Result<Figures, String> {
    use crate::experiments::blocking::{self as exp, Mode};
    let (kind, mode) = exp::decode(n);
    let board = exp::board();
    runtime(workers)?.block_on(async move {
        let units: Vec<_> = (0..exp::UNITS)
            .map(|_| {
                let board = board.clone();
                tokio::spawn(async move {
                    let mut state = exp::UnitLog::default();
                    while !board.stop.load(Ordering::Relaxed) {
                        let phase0 = board.phase.load(Ordering::Relaxed);
                        let t0 = Instant::now();
                        tokio::time::sleep(exp::TICK).await;
                        board.record(&mut state, t0, phase0);
                    }
                    state
                })
            })
            .collect();
        tokio::time::sleep(exp::WARM_UP).await;
        let b = board.clone();
        let blocker = tokio::spawn(async move {
            b.block_starts();
            match mode {
                Mode::Offloaded => tokio::task::spawn_blocking(move || exp::block(kind))
                    .await
                    .map_err(|e| format!("spawn_blocking failed: {e}"))?,
                _ => exp::block(kind),
            }
            b.block_ends();
            Ok::<(), String>(())
        });
        joined(blocker.await)??;
        tokio::time::sleep(exp::WARM_UP).await;
        board.stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::with_capacity(units.len());
        for h in units {
            logs.push(joined(h.await)?);
        }
        Ok(board.figures(logs))
    })
}

/// io: tokio + hyper 1.x, one task per connection (`hyper::server::conn::http1`, keep-alive on)
/// on a multi-thread runtime, until the lab kills the process.
pub fn io_server(workers: usize) -> Result<Figures, String> {
    let rt = io_runtime(workers)?;
    // The same hyper configuration as the fibra-hyper server (fibra/examples/hyper_hello.rs):
    // a header read timeout on the runtime's own timer (FIBRA_HTTP_READ_TIMEOUT_MS, as the
    // lab sets for every server; each request arms and disarms a sleep), keep-alive, and the
    // same headers as the other servers (no `Date`).
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(crate::peers::fibra::hyper_hello::header_read_timeout())
        .keep_alive(true)
        .auto_date_header(false);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        child::announce(listener.local_addr())?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = http.serve_connection(TokioIo::new(stream), service_fn(hello));
                    tokio::spawn(async move {
                        // A client that goes away mid-request is its own business.
                        let _ = conn.await;
                    });
                }
                // Out of descriptors: let some connections close rather than spin.
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => return Err(format!("accept failed: {e}")),
            }
        }
    })
}

const HELLO: &[u8] = b"Hello, World!";

/// Every request gets `Hello, World!` with the headers the other servers send.
async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(HELLO)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(HELLO.len()));
    Ok(response)
}

/// `fs`: one task per unit, each with its own `tokio::fs::File` (it keeps a position): seek,
/// then `read_exact`, the way tokio::fs reads at an offset.
pub fn fs(job: &crate::experiments::fs::Job, workers: usize) -> Result<Figures, String> {
    use crate::experiments::fs as exp;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let job = Arc::new(job.clone());
    runtime(workers)?.block_on(async move {
        let conc = job.case.conc;
        // Opened before the clock starts, like the other contenders' one file.
        let mut files = Vec::with_capacity(conc as usize);
        for _ in 0..conc {
            files.push(
                tokio::fs::File::open(&job.path)
                    .await
                    .map_err(|e| format!("{}: {e}", job.path.display()))?,
            );
        }
        let gate = Arc::new(tokio::sync::Barrier::new(conc as usize + 1));
        let units: Vec<_> = files
            .into_iter()
            .enumerate()
            .map(|(unit, mut file)| {
                let (gate, job) = (gate.clone(), job.clone());
                tokio::spawn(async move {
                    gate.wait().await;
                    let start = Instant::now();
                    let until = start + job.cap;
                    let mut end = start;
                    let unit = unit as u64;
                    let reads = exp::share(unit, job.case.conc, job.reads);
                    let mut buf = vec![0u8; job.case.block()];
                    let mut lat = Vec::with_capacity(reads.min(1 << 20) as usize);
                    for i in 0..reads {
                        let off = exp::offset(job.case, job.file_len, unit, i);
                        let t = Instant::now();
                        file.seek(std::io::SeekFrom::Start(off))
                            .await
                            .map_err(|e| format!("fs: seek to {off}: {e}"))?;
                        file.read_exact(&mut buf)
                            .await
                            .map_err(|e| format!("fs: read at {off}: {e}"))?;
                        end = Instant::now();
                        lat.push(exp::nanos(end - t));
                        if end >= until {
                            break;
                        }
                    }
                    Ok::<_, String>(exp::UnitRun { lat, start, end })
                })
            })
            .collect();
        gate.wait().await;
        let mut runs = Vec::with_capacity(units.len());
        for u in units {
            runs.push(joined(u.await)??);
        }
        exp::figures(runs)
    })
}

/// `client`: a task per unit. GETs with hyper 1.x's client (`client::conn::http1`, one
/// keep-alive connection per unit, its connection future on a task of its own), or INCRs with
/// redis's tokio client (a multiplexed connection per unit) beside sleeper tasks.
pub fn client(job: &ClientJob, workers: usize) -> Result<Figures, String> {
    let rt = io_runtime(workers)?;
    if job.redis {
        let client = job.redis_client()?;
        let key = blocking_client::redis_key();
        let figures = rt.block_on(redis_incrs(job, &client, &key))?;
        drop(rt);
        blocking_client::check_count(&client, &key, job.requests)?;
        return Ok(figures);
    }
    rt.block_on(async {
        let start = Instant::now();
        let units: Vec<_> = (0..job.units)
            .map(|i| tokio::spawn(hyper_unit(job.addr, job.share(i))))
            .collect();
        let mut latencies = Vec::with_capacity(job.requests as usize);
        for unit in units {
            latencies.extend(joined(unit.await)??);
        }
        Ok(blocking_client::http_figures(start.elapsed(), latencies))
    })
}

async fn hyper_unit(addr: SocketAddr, share: u64) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(share as usize);
    let mut sender = None;
    for _ in 0..share {
        let t = Instant::now();
        let s = match &mut sender {
            Some(s) => s,
            None => sender.insert(hyper_connect(addr).await?),
        };
        let request = Request::get("/")
            .header(HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = s
            .send_request(request)
            .await
            .map_err(|e| format!("GET: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("GET: status {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("GET: body: {e}"))?
            .to_bytes();
        if body != HELLO {
            return Err(format!("GET: unexpected body {body:?}"));
        }
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

async fn hyper_connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when the unit drops its sender.
        let _ = conn.await;
    });
    Ok(sender)
}

async fn redis_incrs(
    job: &ClientJob,
    client: &redis::Client,
    key: &str,
) -> Result<Figures, String> {
    let running = Arc::new(AtomicBool::new(true));
    let sleepers: Vec<_> = (0..blocking_client::SLEEPERS)
        .map(|_| {
            let running = running.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
                }
                late
            })
        })
        .collect();
    let start = Instant::now();
    let units: Vec<_> = (0..job.units)
        .map(|i| {
            let (client, key, share) = (client.clone(), key.to_string(), job.share(i));
            tokio::spawn(async move {
                let mut con = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("redis connect: {e}"))?;
                for _ in 0..share {
                    let _: i64 = redis::cmd("INCR")
                        .arg(&key)
                        .query_async(&mut con)
                        .await
                        .map_err(|e| format!("INCR: {e}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let mut done = Ok(());
    for unit in units {
        done = done.and(joined(unit.await).and_then(|r| r));
    }
    let wall = start.elapsed();
    running.store(false, Ordering::Relaxed);
    let mut lateness = Vec::new();
    for sleeper in sleepers {
        lateness.extend(joined(sleeper.await)?);
    }
    done?;
    Ok(blocking_client::redis_figures(job.requests, wall, lateness))
}
