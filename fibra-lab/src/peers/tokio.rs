//! tokio tasks on a multi-thread runtime; `tokio::time::sleep`; `tokio::sync::Notify` ping-pong.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::Notify;

use crate::child::Figures;
use crate::experiments::switch::{self as switch_exp, Placement};
use crate::experiments::{churn, spawn as spawn_exp};
use crate::machine::vm_rss_bytes;

fn runtime(workers: usize) -> Result<Runtime, String> {
    Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_time()
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

/// `chan`: tokio::sync::mpsc between two tasks (both spawned: `block_on`'s own future runs
/// outside the workers, which would add a thread hop per message).
pub fn chan(rounds: u64, workers: usize) -> Result<Figures, String> {
    use crate::experiments::chan as chan_exp;
    use tokio::sync::mpsc;
    runtime(workers)?.block_on(async move {
        let (ping_tx, mut ping_rx) = mpsc::channel::<u64>(1);
        let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(1);
        let t0 = Instant::now();
        let echo = tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                if pong_tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        let pinger = tokio::spawn(async move {
            for i in 0..rounds {
                ping_tx.send(i).await.map_err(|_| "echo task gone")?;
                pong_rx.recv().await.ok_or("echo task gone")?;
            }
            Ok::<(), &str>(())
        });
        joined(pinger.await)??;
        joined(echo.await)?;
        let ping_pong = t0.elapsed();

        let items = rounds * chan_exp::ITEMS_PER_TRIP;
        let (tx, mut rx) = mpsc::channel::<u64>(chan_exp::CAPACITY);
        let t0 = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..items {
                if tx.send(i).await.is_err() {
                    break;
                }
            }
        });
        let consumer = tokio::spawn(async move {
            let mut sum = 0u64;
            while let Some(v) = rx.recv().await {
                sum += v;
            }
            sum
        });
        joined(producer.await)?;
        let sum = joined(consumer.await)?;
        let throughput = t0.elapsed();
        if sum != items * (items - 1) / 2 {
            return Err(format!("items lost: sum {sum}"));
        }
        Ok(chan_exp::figures(rounds, ping_pong, items, throughput))
    })
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
