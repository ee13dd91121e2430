//! OS threads: `std::thread` with 64 KiB stacks, park/unpark (a futex on Linux), a
//! thread-per-connection HTTP server on `std::net`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::child::{self, Figures};
use crate::experiments::chan::{self as chan_exp, Case, Flavour};
use crate::experiments::{churn, spawn as spawn_exp, switch as switch_exp};
use crate::http;
use crate::machine::vm_rss_bytes;
use crate::peers::blocking_client::{self, Job as ClientJob};

fn start<F: FnOnce() + Send + 'static>(f: F, created: u64) -> Result<JoinHandle<()>, String> {
    thread::Builder::new()
        .stack_size(spawn_exp::THREAD_STACK)
        .spawn(f)
        .map_err(|e| format!("OS thread creation failed after {created} threads: {e}"))
}

pub fn spawn(n: u64) -> Result<Figures, String> {
    let rss_before = vm_rss_bytes()?;
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n {
        spawn_exp::unit_spawned();
        // On failure the process exits; the sleeping threads die with it.
        handles.push(start(
            || {
                thread::sleep(spawn_exp::UNIT_SLEEP);
                spawn_exp::unit_woke();
            },
            i,
        )?);
    }
    let spawn = t0.elapsed();
    thread::sleep(spawn_exp::SAMPLE_AFTER);
    let rss_during = vm_rss_bytes()?;
    let alive_at_sample = spawn_exp::live_units();
    for h in handles {
        h.join().map_err(|_| "a thread panicked".to_string())?;
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
}

pub fn switch(rounds: u64) -> Result<Figures, String> {
    let turn = Arc::new(AtomicU64::new(0));
    let slots: Arc<[OnceLock<Thread>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let ready = Arc::new(Barrier::new(3));
    let players = (0..2u64)
        .map(|me| {
            let (turn, slots, ready) = (turn.clone(), slots.clone(), ready.clone());
            start(
                move || {
                    let _ = slots[me as usize].set(thread::current());
                    ready.wait();
                    let other = slots[1 - me as usize].get().cloned();
                    let Some(other) = other else { return };
                    for _ in 0..rounds {
                        while turn.load(Ordering::Acquire) % 2 != me {
                            thread::park();
                        }
                        turn.fetch_add(1, Ordering::Release);
                        other.unpark();
                    }
                },
                me,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    ready.wait();
    let t0 = Instant::now();
    for p in players {
        p.join().map_err(|_| "a thread panicked".to_string())?;
    }
    Ok(switch_exp::figures(rounds, t0.elapsed(), None))
}

pub fn churn(n: u64) -> Result<Figures, String> {
    let t0 = Instant::now();
    let mut created = 0;
    for batch in churn::batches(n) {
        let handles = (0..batch)
            .map(|i| start(|| {}, created + i))
            .collect::<Result<Vec<_>, _>>()?;
        for h in handles {
            h.join().map_err(|_| "a thread panicked".to_string())?;
        }
        created += batch;
    }
    Ok(churn::figures(n, t0.elapsed()))
}

/// `chan`: crossbeam-channel, std::sync::Mutex and std::sync::RwLock between OS threads.
pub fn chan(case: Case, n: u64) -> Result<Figures, String> {
    let t0 = Instant::now();
    match case {
        Case::PingPong => ping_pong(n)?,
        Case::Producers { producers, flavour } => {
            let (tx, rx) = match flavour {
                Flavour::Buffered => crossbeam_channel::bounded::<u64>(chan_exp::CAPACITY),
                Flavour::Rendezvous => crossbeam_channel::bounded::<u64>(0),
                Flavour::Unbounded => crossbeam_channel::unbounded::<u64>(),
            };
            let senders = (0..producers)
                .map(|p| {
                    let tx = tx.clone();
                    start(
                        move || {
                            for i in chan_exp::share(p, producers, n) {
                                if tx.send(i).is_err() {
                                    break;
                                }
                            }
                        },
                        p,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            drop(tx);
            let sum: u64 = rx.iter().sum();
            for s in senders {
                s.join().map_err(|_| "a thread panicked".to_string())?;
            }
            if sum != chan_exp::expected_sum(n) {
                return Err(format!("items lost: sum {sum}"));
            }
        }
        Case::Mutex => {
            let counter = Arc::new(Mutex::new(0u64));
            let units = (0..chan_exp::MANY)
                .map(|i| {
                    let counter = counter.clone();
                    start(
                        move || {
                            for _ in 0..n {
                                *counter.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                            }
                        },
                        i,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            for u in units {
                u.join().map_err(|_| "a thread panicked".to_string())?;
            }
            let total = *counter.lock().unwrap_or_else(|e| e.into_inner());
            if total != chan_exp::MANY * n {
                return Err(format!("lost increments: {total}"));
            }
        }
        Case::RwLock => {
            let counter = Arc::new(std::sync::RwLock::new(0u64));
            let units = (0..chan_exp::MANY)
                .map(|i| {
                    let counter = counter.clone();
                    start(
                        move || {
                            for _ in 0..n {
                                *counter.write().unwrap_or_else(|e| e.into_inner()) += 1;
                            }
                        },
                        i,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            for u in units {
                u.join().map_err(|_| "a thread panicked".to_string())?;
            }
            let total = *counter.read().unwrap_or_else(|e| e.into_inner());
            if total != chan_exp::MANY * n {
                return Err(format!("lost increments: {total}"));
            }
        }
    }
    Ok(chan_exp::figures(chan_exp::ops(case, n), t0.elapsed()))
}

/// `n` round trips with an echo thread over two `bounded(1)` channels.
fn ping_pong(n: u64) -> Result<(), String> {
    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(1);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(1);
    let echo = start(
        move || {
            for v in ping_rx.iter() {
                if pong_tx.send(v).is_err() {
                    break;
                }
            }
        },
        0,
    )?;
    for i in 0..n {
        ping_tx.send(i).map_err(|_| "echo thread gone")?;
        pong_rx.recv().map_err(|_| "echo thread gone")?;
    }
    drop(ping_tx);
    echo.join().map_err(|_| "a thread panicked".to_string())
}

/// `blocking`: 1,000 threads sleep 1 ms in a loop while one more blocks.
pub fn blocking(n: u64) -> Result<Figures, String> {
    use crate::experiments::blocking as exp;
    let (kind, _) = exp::decode(n);
    let board = exp::board();
    // The units start ticking together once all exist: a thousand threads already waking every
    // millisecond slow the creation of the rest (and the whole run) on a small machine.
    let all_created = Arc::new(Barrier::new(exp::UNITS + 1));
    let units = (0..exp::UNITS as u64)
        .map(|i| {
            let board = board.clone();
            let all_created = all_created.clone();
            thread::Builder::new()
                .stack_size(spawn_exp::THREAD_STACK)
                .spawn(move || {
                    all_created.wait();
                    exp::unit_loop(&board, || thread::sleep(exp::TICK))
                })
                .map_err(|e| format!("OS thread creation failed after {i} threads: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    all_created.wait();
    thread::sleep(exp::WARM_UP);
    let b = board.clone();
    let blocker = thread::spawn(move || {
        b.block_starts();
        exp::block(kind);
        b.block_ends();
    });
    blocker
        .join()
        .map_err(|_| "the blocker panicked".to_string())?;
    thread::sleep(exp::WARM_UP);
    board.stop.store(true, Ordering::Relaxed);
    let logs = units
        .into_iter()
        .map(|h| h.join().map_err(|_| "a thread panicked".to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(board.figures(logs))
}

/// io: a thread per connection (64 KiB stacks) on `std::net`, until the lab kills the process.
pub fn io_server() -> Result<Figures, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    child::announce(listener.local_addr())?;
    let mut started = 0u64;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                start(move || io_connection(stream), started)?;
                started += 1;
            }
            // Out of descriptors: let some connections close rather than spin.
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => return Err(format!("accept failed: {e}")),
        }
    }
}

fn io_connection(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; http::MAX_HEAD_BYTES];
    let mut end = 0;
    let mut out = Vec::with_capacity(4096);
    loop {
        match stream.read(&mut buf[end..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
        let answered = http::answer(&buf[..end], &mut out);
        if stream.write_all(&out).is_err() || answered.close {
            return;
        }
        out.clear();
        buf.copy_within(answered.consumed..end, 0);
        end -= answered.consumed;
    }
}

/// `fs`: one OS thread per unit, `pread` (`FileExt::read_at`) on one shared `std::fs::File`.
pub fn fs(job: &crate::experiments::fs::Job) -> Result<Figures, String> {
    use crate::experiments::fs as exp;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::AtomicBool;
    use std::sync::RwLock;
    let file =
        std::fs::File::open(&job.path).map_err(|e| format!("{}: {e}", job.path.display()))?;
    // The clock starts once every thread exists (creating 1,024 threads is not reading): the
    // threads wait for this lock, which is held until then.
    let gate = RwLock::new(());
    let abort = AtomicBool::new(false);
    thread::scope(|s| {
        let held = gate.write().map_err(|_| "poisoned gate")?;
        let units = (0..job.case.conc)
            .map(|unit| {
                let (file, gate, abort) = (&file, &gate, &abort);
                thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn_scoped(s, move || {
                        drop(gate.read());
                        if abort.load(Ordering::Relaxed) {
                            return Err("aborted".to_string());
                        }
                        exp::unit_loop(job, unit, |b, o| file.read_at(b, o))
                    })
                    .map_err(|e| format!("thread {unit}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>();
        if units.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        drop(held);
        let runs = units?
            .into_iter()
            .map(|u| {
                u.join()
                    .map_err(|_| "a reader thread panicked".to_string())?
            })
            .collect::<Result<Vec<_>, String>>()?;
        exp::figures(runs)
    })
}

/// `client`: a thread per unit running the unchanged blocking clients
/// (`peers::blocking_client`): ureq GETs, or sync redis INCRs beside sleeper threads.
pub fn client(job: &ClientJob) -> Result<Figures, String> {
    let spawn = |f: Box<dyn FnOnce() -> Result<Vec<Duration>, String> + Send>| {
        thread::Builder::new()
            .spawn(f)
            .map_err(|e| format!("thread spawn failed: {e}"))
    };
    let join = |h: JoinHandle<Result<Vec<Duration>, String>>| {
        h.join()
            .map_err(|_| "a client thread panicked".to_string())?
    };
    if !job.redis {
        let start = Instant::now();
        let units = (0..job.units)
            .map(|i| {
                let (addr, share) = (job.addr, job.share(i));
                spawn(Box::new(move || blocking_client::ureq_unit(addr, share)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut latencies = Vec::with_capacity(job.requests as usize);
        for unit in units {
            latencies.extend(join(unit)?);
        }
        return Ok(blocking_client::http_figures(start.elapsed(), latencies));
    }
    let client = job.redis_client()?;
    let key = blocking_client::redis_key();
    let running = Arc::new(AtomicBool::new(true));
    let sleepers = (0..blocking_client::SLEEPERS)
        .map(|_| {
            let running = running.clone();
            spawn(Box::new(move || {
                Ok(blocking_client::sleep_lateness(&running))
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let units = (0..job.units)
        .map(|i| {
            let (client, key, share) = (client.clone(), key.clone(), job.share(i));
            spawn(Box::new(move || {
                blocking_client::redis_unit(&client, &key, share).map(|()| Vec::new())
            }))
        })
        .collect::<Result<Vec<_>, _>>();
    let done = units.and_then(|units| units.into_iter().try_for_each(|u| join(u).map(drop)));
    let wall = start.elapsed();
    running.store(false, Ordering::Relaxed);
    let mut lateness = Vec::new();
    for sleeper in sleepers {
        lateness.extend(join(sleeper)?);
    }
    done?;
    blocking_client::check_count(&client, &key, job.requests)?;
    Ok(blocking_client::redis_figures(job.requests, wall, lateness))
}
