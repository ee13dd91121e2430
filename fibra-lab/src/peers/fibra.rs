//! fibra fibers: `fibra::spawn`, `fibra::sleep`, park/unpark ping-pong.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::child::Figures;
use crate::experiments::switch::{self as switch_exp, Placement};
use crate::experiments::{churn, spawn as spawn_exp};
use crate::machine::vm_rss_bytes;

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
    runtime(workers)?.block_on(move || {
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

pub fn switch(rounds: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(move || {
        let turn = Arc::new(AtomicU64::new(0));
        let slots: Arc<[OnceLock<fibra::Fiber>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
        let t0 = Instant::now();
        let a = {
            let (turn, slots) = (turn.clone(), slots.clone());
            fibra::spawn(move || player(0, rounds, turn, slots, workers > 1))
        };
        let b = fibra::spawn(move || player(1, rounds, turn, slots, workers > 1));
        let a = joined(a.join())?;
        let b = joined(b.join())?;
        Ok(switch_exp::figures(rounds, t0.elapsed(), Some((&a, &b))))
    })
}

pub fn churn(n: u64, workers: usize) -> Result<Figures, String> {
    runtime(workers)?.block_on(move || {
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
