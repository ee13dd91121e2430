//! The lab's own load generator, for machines without `wrk` (the io experiment) and for the
//! soak's HTTP load: two threads, each owning half of the connections. Each round a thread
//! sends one request on every connection it owns, then reads every answer, timing each request
//! from its write to its answer's last byte (closed-loop, like wrk: a connection never has
//! more than one request in flight).
//!
//! The io experiment keeps every connection open for the whole run, as wrk does. A [`Churn`]
//! plan (the soak) closes most connections after a few requests and opens new ones in the
//! next round: half of them close from the client's side, half ask the server to close
//! (`Connection: close`) and check that it does. Connections that fail are reopened too, so a
//! churning run keeps its connection count until it stops.
//!
//! [`Counts`] are shared by the threads and readable while the load runs: every request
//! written and every answer read, so a caller can check that none went missing.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use super::{quantile, Load};

const THREADS: u64 = 2;
pub(crate) const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const REQUEST_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
/// A server silent for this long on one connection has failed it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the load's end (its deadline, or the first look at the stop flag set) the
/// last round may still run.
const GRACE: Duration = Duration::from_secs(15);
/// A churning thread whose every connection failed waits this long before opening again
/// (the server is gone or out of descriptors: no point spinning).
const REOPEN_PAUSE: Duration = Duration::from_millis(10);

/// Connection churn: which connections close after a few requests, and after how many.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Connections (of all threads together) that stay open for the whole run.
    pub kept_alive: u64,
    /// Each other connection closes after 1 to this many requests (varying from one
    /// connection to the next), and a new one takes its place in the next round.
    pub max_requests: u32,
}

/// What the generator did so far, all threads together; relaxed counters, read while it runs.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests written whole.
    pub sent: AtomicU64,
    /// Answers read whole (2xx or not): `sent - answered` requests went unanswered.
    pub answered: AtomicU64,
    /// Connections opened.
    pub opened: AtomicU64,
    /// Failed connects, writes and reads, non-2xx answers, and servers that did not close
    /// after `Connection: close`.
    pub errors: AtomicU64,
}

/// When the load ends.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// At this instant; a round still running then has [`GRACE`] to finish.
    Deadline(Instant),
    /// Once the flag is set; the round under way has [`GRACE`] to finish.
    Stopped(&'a AtomicBool),
}

impl Until<'_> {
    fn reached(&self) -> bool {
        match self {
            Until::Deadline(at) => Instant::now() >= *at,
            Until::Stopped(flag) => flag.load(Relaxed),
        }
    }
}

/// One load run.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub conns: u64,
    pub until: Until<'a>,
    /// `None`: every connection stays open for the whole run.
    pub churn: Option<Churn>,
    /// Keep every request's latency (the io experiment's p50/p99). A long run leaves this off:
    /// the samples would grow without bound.
    pub latencies: bool,
    pub counts: &'a Counts,
}

/// The io experiment's load: `conns` keep-alive connections for `duration`.
pub fn run(addr: SocketAddr, conns: u64, duration: Duration) -> Result<Load, String> {
    let counts = Counts::default();
    let started = Instant::now();
    let plan = Plan {
        conns,
        until: Until::Deadline(started + duration),
        churn: None,
        latencies: true,
        counts: &counts,
    };
    let mut latencies_ms = drive(addr, &plan)?;
    let elapsed = started.elapsed().as_secs_f64();
    let errors = counts.errors.load(Relaxed);
    if latencies_ms.is_empty() {
        return Err(format!("no request was answered ({errors} errors)"));
    }
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Load {
        req_per_s: latencies_ms.len() as f64 / elapsed,
        p50_ms: quantile(&latencies_ms, 0.50),
        p99_ms: quantile(&latencies_ms, 0.99),
        errors,
    })
}

/// Runs `plan` against `addr` on [`THREADS`] threads until it ends; returns the 2xx answers'
/// latencies in ms (empty unless `plan.latencies`). Errors only if a thread could not start
/// or opened none of its connections.
pub fn drive(addr: SocketAddr, plan: &Plan) -> Result<Vec<f64>, String> {
    let threads = THREADS.min(plan.conns).max(1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = |n: u64| n / threads + u64::from(t < n % threads);
                let mine = share(plan.conns);
                let kept = plan.churn.map_or(mine, |c| share(c.kept_alive).min(mine));
                thread::Builder::new()
                    .name(format!("loadgen-{t}"))
                    .spawn_scoped(s, move || drive_thread(addr, plan, mine, kept))
                    .map_err(|e| format!("could not start a load thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut latencies = Vec::new();
        for h in handles {
            let mine = h
                .join()
                .map_err(|_| "a load thread panicked".to_string())??;
            latencies.extend(mine);
        }
        Ok(latencies)
    })
}

/// One thread's connections: `mine` in all, the first `kept` of which never churn.
fn drive_thread(addr: SocketAddr, plan: &Plan, mine: u64, kept: u64) -> Result<Vec<f64>, String> {
    let counts = plan.counts;
    let mut latencies = Vec::new();
    let mut serial = 0u64; // connections this thread opened: picks each one's churn
    let open_one = |serial: &mut u64| {
        let n = *serial;
        *serial += 1;
        let lifetime = match plan.churn {
            Some(c) if n >= kept => Lifetime::churning(n, c.max_requests),
            _ => Lifetime::KeepAlive,
        };
        match open(addr) {
            Ok(stream) => {
                counts.opened.fetch_add(1, Relaxed);
                Some(Conn {
                    stream,
                    buf: Vec::with_capacity(512),
                    lifetime,
                    used: 0,
                })
            }
            Err(_) => {
                counts.errors.fetch_add(1, Relaxed);
                None
            }
        }
    };
    let mut streams: Vec<Conn> = (0..mine).filter_map(|_| open_one(&mut serial)).collect();
    if streams.is_empty() {
        return Err(format!(
            "could not open any of {mine} connections to {addr}"
        ));
    }
    let mut sent = Vec::with_capacity(streams.len());
    let mut ended: Option<Instant> = None; // when this thread first saw the load's end
    while !plan.until.reached() {
        if plan.churn.is_some() {
            // Replace the connections closed or failed in the last round; a failure ends this
            // round's reopening (it will likely fail again at once).
            while (streams.len() as u64) < mine {
                match open_one(&mut serial) {
                    Some(c) => streams.push(c),
                    None => break,
                }
            }
            if streams.is_empty() {
                thread::sleep(REOPEN_PAUSE);
                continue;
            }
        } else if streams.is_empty() {
            break;
        }
        sent.clear();
        for conn in &mut streams {
            let written = conn.stream.write_all(conn.next_request()).is_ok();
            if written {
                counts.sent.fetch_add(1, Relaxed);
            }
            sent.push((Instant::now(), written));
        }
        let mut alive = Vec::with_capacity(streams.len());
        for (mut conn, (at, written)) in streams.drain(..).zip(sent.iter().copied()) {
            // A server that stopped answering must not hold the lab for a read timeout per
            // connection: past the grace period, the rest of the round counts as errors.
            if ended.is_none() && plan.until.reached() {
                ended = Some(Instant::now());
            }
            let late = ended.is_some_and(|at| at.elapsed() > GRACE);
            match (written && !late).then(|| conn.read_response()) {
                Some(Ok(ok)) => {
                    counts.answered.fetch_add(1, Relaxed);
                    if ok && plan.latencies {
                        latencies.push(at.elapsed().as_secs_f64() * 1e3);
                    }
                    if !ok {
                        counts.errors.fetch_add(1, Relaxed); // a non-2xx answer: kept
                    }
                    conn.used += 1;
                    match conn.after_answer() {
                        After::Keep => alive.push(conn),
                        After::Closed => {}
                        After::NotClosedByServer => {
                            counts.errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                _ => {
                    counts.errors.fetch_add(1, Relaxed);
                }
            }
        }
        streams = alive;
    }
    Ok(latencies)
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(s)
}

/// How long a connection lives.
#[derive(Debug, Clone, Copy)]
enum Lifetime {
    KeepAlive,
    /// Closed after `requests` answers: by this side, or (`by_server`) by the server, asked
    /// with `Connection: close` on the last request.
    Churning {
        requests: u32,
        by_server: bool,
    },
}

impl Lifetime {
    /// The `n`th connection's lifetime: 1 to `max` requests, spread by a multiplicative hash
    /// of `n` (Knuth's constant) so neighbouring connections differ; odd `n` ask the server.
    fn churning(n: u64, max: u32) -> Lifetime {
        let spread = n.wrapping_mul(2_654_435_761) >> 7;
        Lifetime::Churning {
            requests: 1 + (spread % u64::from(max.max(1))) as u32,
            by_server: n % 2 == 1,
        }
    }
}

/// What became of a connection after an answer.
enum After {
    Keep,
    Closed,
    /// Asked to close, the server sent more bytes or kept the connection open.
    NotClosedByServer,
}

/// One connection and the bytes read past its last answer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    lifetime: Lifetime,
    /// Answers read on it.
    used: u32,
}

impl Conn {
    fn next_request(&self) -> &'static [u8] {
        match self.lifetime {
            Lifetime::Churning {
                requests,
                by_server: true,
            } if self.used + 1 == requests => REQUEST_CLOSE,
            _ => REQUEST,
        }
    }

    /// Closes the connection if its lifetime is over; a server asked to close must have
    /// closed (the next read sees end of stream, with no bytes before it).
    fn after_answer(&mut self) -> After {
        match self.lifetime {
            Lifetime::Churning {
                requests,
                by_server,
            } if self.used >= requests => {
                if by_server && !(self.buf.is_empty() && self.at_end()) {
                    return After::NotClosedByServer;
                }
                After::Closed
            }
            _ => After::Keep,
        }
    }

    /// Whether the server closed its side: the next read returns end of stream.
    fn at_end(&mut self) -> bool {
        matches!(self.stream.read(&mut [0u8; 64]), Ok(0))
    }

    /// Reads one whole answer; `Ok(true)` if it was a 2xx.
    fn read_response(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((len, ok)) = complete(&self.buf)? {
                self.buf.drain(..len);
                return Ok(ok);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The length of the complete answer at the front of `buf` and whether it is a 2xx, or `None`
/// while it is incomplete.
pub(crate) fn complete(buf: &[u8]) -> io::Result<Option<(usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let body = crate::http::content_length(res.headers)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))?;
    let ok = res.code.is_some_and(|c| (200..300).contains(&c));
    Ok((buf.len() >= head + body).then_some((head + body, ok)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_answers_by_content_length() {
        let hello = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete(hello).unwrap(), Some((hello.len(), true)));
        assert_eq!(complete(&hello[..hello.len() - 1]).unwrap(), None);
        let bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(complete(bad).unwrap(), Some((bad.len(), false)));
        assert!(complete(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(complete(b"\x00\x01 not http\r\n\r\n").is_err());
    }

    #[test]
    fn churning_lifetimes_cover_the_range_and_both_sides() {
        let lifetimes: Vec<_> = (0..64).map(|n| Lifetime::churning(n, 8)).collect();
        let mut seen = [false; 9];
        for l in &lifetimes {
            let Lifetime::Churning { requests, .. } = *l else {
                panic!("churning gave {l:?}")
            };
            assert!((1..=8).contains(&requests));
            seen[requests as usize] = true;
        }
        assert!(
            seen[1..].iter().all(|&s| s),
            "every length 1..=8 occurs: {seen:?}"
        );
        let by_server = lifetimes
            .iter()
            .filter(|l| {
                matches!(
                    l,
                    Lifetime::Churning {
                        by_server: true,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(by_server, 32);
    }
}
