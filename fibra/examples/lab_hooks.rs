//! fibra-lab's `fibra-hooks` contender (the client experiment): the unchanged blocking clients
//! of `fibra-lab/src/peers/blocking_client.rs` (ureq 2 GETs, sync redis INCRs), the very code
//! the lab's threads contender runs, here on fibra fibers with the `hooks` feature, so their
//! sockets and sleeps park the fiber instead of the worker. The lab builds it
//! (`cargo build --release -p fibra --features hooks --example lab_hooks`) and runs it as a
//! child: it never links the hooks into its own binary, where they would reach every contender.
//!
//! It speaks the lab's child protocol (fibra-lab/src/child.rs):
//! `lab_hooks child client fibra-hooks <units> --workers <w> [--case redis]`, with the server in
//! `FIBRA_LAB_CLIENT_ADDR` and the GETs (INCRs) to share in `FIBRA_LAB_CLIENT_REQUESTS`;
//! it prints ONE JSON line `{"figures":{...}}`, or a reason on stderr and exits 1.

#[path = "../../fibra-lab/src/peers/blocking_client.rs"]
mod blocking_client;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blocking_client::Job;

type Figures = BTreeMap<String, f64>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match measure(&args) {
        Ok(figures) => {
            println!("{}", serde_json::json!({ "figures": figures }));
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("{}", reason.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// `child client fibra-hooks <units> --workers <w> [--case <c>]`: units, workers, case.
fn parse(args: &[String]) -> Result<(u64, usize, Option<&str>), String> {
    let usage = "usage: lab_hooks child client fibra-hooks <units> --workers <w> [--case <c>]";
    let [child, experiment, contender, units, rest @ ..] = args else {
        return Err(usage.into());
    };
    if (child.as_str(), experiment.as_str(), contender.as_str())
        != ("child", "client", "fibra-hooks")
    {
        return Err(format!("{usage} (got {args:?})"));
    }
    let units = units.parse().map_err(|e| format!("units {units:?}: {e}"))?;
    let (mut workers, mut case) = (2, None);
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--workers" => workers = value.parse().map_err(|e| format!("--workers: {e}"))?,
            "--case" => case = Some(value.as_str()),
            _ => return Err(format!("unknown flag {flag:?}; {usage}")),
        }
    }
    Ok((units, workers, case))
}

fn joined<T>(r: Result<T, fibra::JoinError>) -> Result<T, String> {
    r.map_err(|e| format!("fiber failed: {e}"))
}

fn measure(args: &[String]) -> Result<Figures, String> {
    let (units, workers, case) = parse(args)?;
    let job = Job::from_child(units, case)?;
    let rt = fibra::Runtime::builder()
        .workers(workers.max(1))
        .build()
        .map_err(|e| format!("could not build the fibra runtime: {e}"))?;
    if !job.redis {
        return rt.run(|| {
            let start = Instant::now();
            let fibers: Vec<_> = (0..job.units)
                .map(|i| {
                    let (addr, share) = (job.addr, job.share(i));
                    fibra::spawn(move || blocking_client::ureq_unit(addr, share))
                })
                .collect();
            let mut latencies = Vec::with_capacity(job.requests as usize);
            for fiber in fibers {
                latencies.extend(joined(fiber.join())??);
            }
            Ok(blocking_client::http_figures(start.elapsed(), latencies))
        });
    }
    let client = job.redis_client()?;
    let key = blocking_client::redis_key();
    let figures = rt.run(|| {
        let running = Arc::new(AtomicBool::new(true));
        // Fibers on the same runtime as the clients: a client that blocked its worker would
        // show here as lateness.
        let sleepers: Vec<_> = (0..blocking_client::SLEEPERS)
            .map(|_| {
                let running = running.clone();
                fibra::spawn(move || blocking_client::sleep_lateness(&running))
            })
            .collect();
        let start = Instant::now();
        let fibers: Vec<_> = (0..job.units)
            .map(|i| {
                let (client, key, share) = (client.clone(), key.clone(), job.share(i));
                fibra::spawn(move || blocking_client::redis_unit(&client, &key, share))
            })
            .collect();
        let mut done = Ok(());
        for fiber in fibers {
            done = done.and(joined(fiber.join()).and_then(|r| r));
        }
        let wall = start.elapsed();
        running.store(false, Ordering::Relaxed);
        let mut lateness: Vec<Duration> = Vec::new();
        for sleeper in sleepers {
            lateness.extend(joined(sleeper.join())?);
        }
        done?;
        Ok::<_, String>(blocking_client::redis_figures(job.requests, wall, lateness))
    })?;
    blocking_client::check_count(&client, &key, job.requests)?;
    Ok(figures)
}
