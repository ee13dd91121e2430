//! The client experiment's child side in std, `ureq` 2 and the sync `redis` crate only: one
//! file shared by the lab's threads contender and the hooked fibra program
//! (`fibra/examples/lab_hooks.rs` includes it by path), so both run the very same unchanged
//! blocking code and report the same figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where the row's server listens (`127.0.0.1:port`), for the child.
pub const ADDR_ENV: &str = "FIBRA_LAB_CLIENT_ADDR";
/// How many GETs (or INCRs) the child's units share.
pub const REQUESTS_ENV: &str = "FIBRA_LAB_CLIENT_REQUESTS";
/// The row variant against redis-server instead of HTTP.
pub const REDIS_CASE: &str = "redis";
/// Units that sleep 1 ms in a loop beside the redis clients.
pub const SLEEPERS: usize = 10;
/// What the shared server answers to every GET.
const HELLO: &str = "Hello, World!";

/// What a child is asked to do, from its arguments and environment.
pub struct Job {
    pub addr: SocketAddr,
    /// Concurrent units.
    pub units: u64,
    /// GETs (INCRs) they share.
    pub requests: u64,
    pub redis: bool,
}

impl Job {
    pub fn from_child(n: u64, case: Option<&str>) -> Result<Job, String> {
        let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let addr = env(ADDR_ENV)?
            .parse()
            .map_err(|e| format!("{ADDR_ENV}: {e}"))?;
        let requests = env(REQUESTS_ENV)?
            .parse()
            .map_err(|e| format!("{REQUESTS_ENV}: {e}"))?;
        let redis = match case {
            None => false,
            Some(REDIS_CASE) => true,
            Some(other) => return Err(format!("client: no case {other:?}")),
        };
        Ok(Job {
            addr,
            units: n.max(1),
            requests,
            redis,
        })
    }

    /// The requests unit `i` makes: an even share, the first units one more.
    pub fn share(&self, i: u64) -> u64 {
        self.requests / self.units + u64::from(i < self.requests % self.units)
    }

    /// A redis client for the row's server.
    pub fn redis_client(&self) -> Result<redis::Client, String> {
        redis::Client::open(format!("redis://{}/", self.addr)).map_err(|e| format!("redis: {e}"))
    }
}

/// One unit's GETs with ureq, unchanged: an `Agent` of its own (so one keep-alive connection,
/// opened by the first GET), each body read whole and checked. Every GET's latency.
pub fn ureq_unit(addr: SocketAddr, share: u64) -> Result<Vec<Duration>, String> {
    let url = format!("http://{addr}/");
    let agent = ureq::AgentBuilder::new().build();
    let mut latencies = Vec::with_capacity(share as usize);
    for _ in 0..share {
        let t = Instant::now();
        let body = agent
            .get(&url)
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .into_string()
            .map_err(|e| format!("GET {url}: body: {e}"))?;
        if body != HELLO {
            return Err(format!("GET {url}: unexpected body {body:?}"));
        }
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

/// The key a child's INCRs count on: its own, so the count can be checked.
pub fn redis_key() -> String {
    format!("fibra-lab:client:{}", std::process::id())
}

/// One unit's INCRs with the sync redis crate, unchanged, on a connection of its own.
pub fn redis_unit(client: &redis::Client, key: &str, share: u64) -> Result<(), String> {
    let mut con = client
        .get_connection()
        .map_err(|e| format!("redis connect: {e}"))?;
    for _ in 0..share {
        let _: i64 = redis::cmd("INCR")
            .arg(key)
            .query(&mut con)
            .map_err(|e| format!("INCR: {e}"))?;
    }
    Ok(())
}

/// After the run: the counter holds exactly `expected` (no INCR lost or doubled); then the key
/// is removed.
pub fn check_count(client: &redis::Client, key: &str, expected: u64) -> Result<(), String> {
    let mut con = client
        .get_connection()
        .map_err(|e| format!("redis connect: {e}"))?;
    let got: u64 = redis::cmd("GETDEL")
        .arg(key)
        .query(&mut con)
        .map_err(|e| format!("GETDEL: {e}"))?;
    if got == expected {
        Ok(())
    } else {
        Err(format!("the counter holds {got}, not {expected}"))
    }
}

/// A sleeper unit on a blocking sleep: how late each 1 ms sleep woke, until `running` turns
/// false.
pub fn sleep_lateness(running: &AtomicBool) -> Vec<Duration> {
    let mut late = Vec::new();
    while running.load(Ordering::Relaxed) {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    late
}

/// The figures of a GET run: every request's latency, and the wall time of the whole run.
pub fn http_figures(wall: Duration, mut latencies: Vec<Duration>) -> BTreeMap<String, f64> {
    BTreeMap::from([
        (
            "req_per_s".to_string(),
            latencies.len() as f64 / wall.as_secs_f64(),
        ),
        ("p99_ms".to_string(), p99_ms(&mut latencies)),
    ])
}

/// The figures of a redis run: INCRs done in `wall`, and the sleepers' lateness.
pub fn redis_figures(
    incrs: u64,
    wall: Duration,
    mut lateness: Vec<Duration>,
) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("incr_per_s".to_string(), incrs as f64 / wall.as_secs_f64()),
        ("sleeper_p99_ms".to_string(), p99_ms(&mut lateness)),
    ])
}

fn p99_ms(samples: &mut [Duration]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = (samples.len() * 99 / 100).min(samples.len() - 1);
    samples[i].as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_requests() {
        for (units, requests) in [(10, 1_000), (7, 100), (1_000, 1_000), (16, 3)] {
            let job = Job {
                addr: "127.0.0.1:1".parse().unwrap(),
                units,
                requests,
                redis: false,
            };
            let total: u64 = (0..units).map(|i| job.share(i)).sum();
            assert_eq!(total, requests, "{units} units");
            assert!((0..units).all(|i| job.share(i) <= requests / units + 1));
        }
    }

    #[test]
    fn p99_picks_the_99th_percentile() {
        let mut ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(p99_ms(&mut ms), 100.0);
        let mut one = vec![Duration::from_millis(3)];
        assert_eq!(p99_ms(&mut one), 3.0);
        assert_eq!(p99_ms(&mut []), 0.0);
    }
}
