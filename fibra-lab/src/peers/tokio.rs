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
