//! The sync `redis` crate, unchanged, on hooked fibers against a real `redis-server`
//! (feature `hooks`; the server is started here, `servers/mod.rs`): the count is exact, and
//! 1 ms sleepers on the same two workers keep waking while the clients run (a blocked worker
//! would freeze them). No timing target: the rates are printed, not asserted.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;
mod servers;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{note, watchdog_for};

#[test]
fn redis_two_hundred_fibers_thousand_incr_each_with_sleepers() {
    let _w = watchdog_for("redis_two_hundred_fibers", Duration::from_secs(120));
    const CLIENTS: usize = 200;
    const INCRS: usize = 1_000;
    const SLEEPERS: usize = 10;
    let Some(server) = servers::start_redis() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let client = redis::Client::open(url.as_str()).unwrap();
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    let (elapsed, wakes_during, lateness) = rt.run(|| {
        let running = Arc::new(AtomicBool::new(true));
        let wakes_during = Arc::new(AtomicUsize::new(0));
        let sleepers: Vec<_> = (0..SLEEPERS)
            .map(|_| {
                let (running, wakes_during) = (running.clone(), wakes_during.clone());
                fibra::spawn(move || {
                    let mut late = Vec::new();
                    while running.load(SeqCst) {
                        let t = Instant::now();
                        std::thread::sleep(Duration::from_millis(1)); // hooked: parks
                        late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
                        if running.load(SeqCst) {
                            wakes_during.fetch_add(1, SeqCst);
                        }
                    }
                    late
                })
            })
            .collect();
        let start = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let client = client.clone();
                fibra::spawn(move || {
                    let mut con = client.get_connection().unwrap();
                    let mut last = 0;
                    for _ in 0..INCRS {
                        let n: usize = redis::cmd("INCR").arg("hits").query(&mut con).unwrap();
                        assert!(n > last, "INCR went from {last} to {n}");
                        last = n;
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let elapsed = start.elapsed();
        running.store(false, SeqCst);
        let mut lateness: Vec<Duration> = sleepers
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        lateness.sort();
        let m = fibra::debug::metrics().unwrap();
        assert_eq!(
            m.spares_started, 0,
            "a worker was blocked: the monitor added a thread"
        );
        (elapsed, wakes_during.load(SeqCst), lateness)
    });
    let mut con = client.get_connection().unwrap();
    let total: usize = redis::cmd("GET").arg("hits").query(&mut con).unwrap();
    assert_eq!(total, CLIENTS * INCRS, "every INCR counted once");
    let p99 = lateness[lateness.len() * 99 / 100];
    note(&format!(
        "redis: {} INCR in {elapsed:?} ({:.0}/s, debug build); sleepers woke {wakes_during} times \
         meanwhile, p99 lateness {p99:?}",
        CLIENTS * INCRS,
        (CLIENTS * INCRS) as f64 / elapsed.as_secs_f64()
    ));
    // Loose: a worker blocked in a socket call would leave its sleepers asleep for the run.
    // 20 wake-ups of 10 sleepers is ~2 ms of their 1 ms rounds, over a run of many ms.
    assert!(
        wakes_during >= 2 * SLEEPERS,
        "sleepers woke {wakes_during} times during {elapsed:?}: frozen by the clients"
    );
}
