//! Issue 15's redis target: the sync `redis` crate, unchanged, INCR from 200 hooked fibers on
//! 2 workers against the same crate on 200 OS threads, each beside 10 sleepers waking every
//! 1 ms (fibers on the same runtime; threads beside the OS threads), in alternating rounds:
//! `cargo bench -p fibra --features hooks --bench hooks_redis`. Prints INCR/s and the
//! sleepers' p99 lateness per round and the medians. Needs `redis-server`
//! (scripts/install-servers.sh); without it, it says so and exits.

#[path = "../tests/servers/mod.rs"]
mod servers;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const INCRS: usize = 1_000;
const SLEEPERS: usize = 10;
const ROUNDS: usize = 5;

struct Round {
    per_sec: f64,
    p99: Duration,
}

fn sleeper(running: &AtomicBool) -> Vec<Duration> {
    let mut late = Vec::new();
    while running.load(SeqCst) {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    late
}

fn incr_all(client: &redis::Client) {
    let mut con = client.get_connection().unwrap();
    for _ in 0..INCRS {
        let _: usize = redis::cmd("INCR").arg("hits").query(&mut con).unwrap();
    }
}

fn summarise(elapsed: Duration, mut late: Vec<Duration>) -> Round {
    late.sort();
    Round {
        per_sec: (CLIENTS * INCRS) as f64 / elapsed.as_secs_f64(),
        p99: late[late.len() * 99 / 100],
    }
}

fn fibers(client: &redis::Client) -> Round {
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let running = Arc::new(AtomicBool::new(true));
        let sleepers: Vec<_> = (0..SLEEPERS)
            .map(|_| {
                let r = running.clone();
                fibra::spawn(move || sleeper(&r))
            })
            .collect();
        let start = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let c = client.clone();
                fibra::spawn(move || incr_all(&c))
            })
            .collect();
        clients.into_iter().for_each(|h| h.join().unwrap());
        let elapsed = start.elapsed();
        running.store(false, SeqCst);
        let late = sleepers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        summarise(elapsed, late)
    })
}

fn threads(client: &redis::Client) -> Round {
    let running = Arc::new(AtomicBool::new(true));
    let sleepers: Vec<_> = (0..SLEEPERS)
        .map(|_| {
            let r = running.clone();
            std::thread::spawn(move || sleeper(&r))
        })
        .collect();
    // Connections first, then the clock: thread start-up is not what is compared.
    let go = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (c, go) = (client.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                incr_all(&c)
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    clients.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    running.store(false, SeqCst);
    let late = sleepers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    summarise(elapsed, late)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(server) = servers::start_redis() else {
        return;
    };
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
    let (mut f, mut t) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let a = fibers(&client);
        let b = threads(&client);
        println!(
            "round {round}: hooked fibers (2 workers) {:>8.0} INCR/s, sleepers' p99 late {:>6.2} ms \
             | 200 OS threads {:>8.0} INCR/s, p99 late {:>6.2} ms",
            a.per_sec,
            a.p99.as_secs_f64() * 1e3,
            b.per_sec,
            b.p99.as_secs_f64() * 1e3
        );
        f.push(a);
        t.push(b);
    }
    let med = |v: &[Round]| {
        (
            median(v.iter().map(|r| r.per_sec).collect()),
            median(v.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect()),
        )
    };
    let ((fr, fl), (tr, tl)) = (med(&f), med(&t));
    println!(
        "median of {ROUNDS}: hooked fibers {fr:.0} INCR/s (p99 late {fl:.2} ms), \
         OS threads {tr:.0} INCR/s (p99 late {tl:.2} ms): fibers/threads {:.2}x",
        fr / tr
    );
}
