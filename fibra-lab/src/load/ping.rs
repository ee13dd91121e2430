//! The many-connections client of io's conns rows, run as its own process
//! (`fibra-lab ping-client ADDR CONNS --secs S`, started by `experiments::conns`).
//!
//! One thread and one epoll (mio) hold every connection, with no buffer of its own until an
//! answer arrives in pieces: the client must hold as many connections as the server without
//! needing threads or much memory itself. Its stdout speaks one JSON line per phase:
//!
//! 1. Open: connect `conns` sockets, at most [`OPENING_AT_ONCE`] at a time (so no server's
//!    listen backlog overflows into SYN drops), and have one request answered on each (the
//!    server then holds whatever a served connection costs it). Print [`Opened`].
//! 2. Idle: wait for a line on stdin (the lab samples the server's RSS meanwhile).
//! 3. Ping: every connection sends one request a second for `secs` seconds, staggered so the
//!    rate is even (connection `j` of `m` at `j/m` s into each second). Each answer's latency
//!    runs from its request's write to its last byte. A connection whose previous request is
//!    still unanswered at its next slot skips the slot (counted as late). Print [`Done`].
//!
//! Failures are counted by kind, never dropped: a failed connect (EMFILE, refused, no local
//! port…), a connection not open within [`OPEN_TIMEOUT`], a reset, a bad or unsolicited
//! answer, a request unanswered [`GRACE`] after the last slot.
//!
//! Sockets are bound to loopback source addresses 127.0.0.1, .2, … with at most
//! [`PER_SOURCE`] connections each, so each source's share stays well inside the ephemeral
//! port range (32768–60999 by default), and close with `SO_LINGER` 0 (a reset, no TIME_WAIT):
//! a run leaves no ports behind for the next one.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use super::builtin::{complete, REQUEST};
use super::quantile;

/// Connects (and first requests) in flight at once. std's listeners have a backlog of 128,
/// tokio's 1,024, Go's `somaxconn` (4,096 here): 64 overflows none of them.
pub const OPENING_AT_ONCE: usize = 64;
/// Connections per loopback source address: well under the 28,232 ports of the default
/// ephemeral range, so a source never runs out even with other programs' connections.
pub const PER_SOURCE: u64 = 10_000;
/// A connection not connected and answered within this is a failure.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the last slot unanswered requests may still be answered.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long opening every connection may take in all.
const OPEN_BUDGET: Duration = Duration::from_secs(120);

/// Phase 1's report: connections open and the failures of the others.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opened {
    pub open: u64,
    /// Failure kind → count.
    pub errors: BTreeMap<String, u64>,
}

/// Phase 3's report.
#[derive(Debug, Serialize, Deserialize)]
pub struct Done {
    /// Requests written whole.
    pub sent: u64,
    /// 2xx answers read whole.
    pub answered: u64,
    /// Slots skipped because the connection's previous request was still unanswered.
    pub late: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers a second over the ping window.
    pub req_per_s: f64,
    /// Failure kind → count (failed connections, bad answers, requests never answered).
    pub errors: BTreeMap<String, u64>,
}

/// The wire format of a phase's line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    Opened(Opened),
    Done(Done),
}

/// The `ping-client` subcommand.
pub fn main(addr: SocketAddr, conns: u64, secs: u64) -> ExitCode {
    match run(addr, conns, Duration::from_secs(secs.max(1))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ping-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: SocketAddr, conns: u64, window: Duration) -> Result<(), String> {
    crate::machine::raise_nofile()?;
    let mut client = Client::new(addr)?;
    let opened = client.open_all(conns);
    say(&Report::Opened(opened))?;
    // The lab samples the server while every connection sits idle, then says go.
    let mut line = String::new();
    let n = io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading stdin: {e}"))?;
    if n == 0 {
        return Err("stdin closed before the ping phase (the lab is gone)".into());
    }
    let done = client.ping(window);
    say(&Report::Done(done))
}

fn say(report: &Report) -> Result<(), String> {
    let line = serde_json::to_string(report).map_err(|e| format!("encoding a report: {e}"))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing a report: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    /// Connected, the first request sent.
    Warming,
    Open,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// When the request in flight was written (or, while opening, when the connect began).
    since: Option<Instant>,
    /// A partly read answer; empty (no allocation) between answers mostly.
    buf: Vec<u8>,
}

/// What reading a connection's answers found.
enum Answer {
    /// The first request was answered: the connection is open.
    Warmed,
    /// A request's answer, `ok` if 2xx, with its latency.
    Ping { ok: bool, latency: Duration },
}

struct Client {
    addr: SocketAddr,
    poll: Poll,
    /// Slot `i` is connection `i` (its token); `None` once it failed.
    conns: Vec<Option<Conn>>,
    errors: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    in_flight: u64,
}

impl Client {
    fn new(addr: SocketAddr) -> Result<Client, String> {
        Ok(Client {
            addr,
            poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
            conns: Vec::new(),
            errors: BTreeMap::new(),
            latencies_ms: Vec::new(),
            in_flight: 0,
        })
    }

    fn fail(&mut self, i: usize, what: &str, e: Option<&io::Error>) {
        let kind = e.map_or(String::new(), |e| format!(": {}", error_kind(e)));
        *self.errors.entry(format!("{what}{kind}")).or_default() += 1;
        if let Some(mut c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if c.phase == Phase::Open && c.since.is_some() {
                self.in_flight -= 1;
            }
        }
    }

    /// Phase 1.
    fn open_all(&mut self, total: u64) -> Opened {
        let sources = total.div_ceil(PER_SOURCE).clamp(1, 250);
        let give_up = Instant::now() + OPEN_BUDGET;
        let mut events = Events::with_capacity(1024);
        let mut opening: Vec<usize> = Vec::with_capacity(OPENING_AT_ONCE);
        let mut next = 0u64;
        while next < total || !opening.is_empty() {
            while opening.len() < OPENING_AT_ONCE && next < total {
                let i = self.conns.len();
                let source = Ipv4Addr::new(127, 0, 0, 1 + (next % sources) as u8);
                match connect(self.addr, source) {
                    Ok(mut stream) => {
                        let registered = self.poll.registry().register(
                            &mut stream,
                            Token(i),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                        self.conns.push(Some(Conn {
                            stream,
                            phase: Phase::Connecting,
                            since: Some(Instant::now()),
                            buf: Vec::new(),
                        }));
                        match registered {
                            Ok(()) => opening.push(i),
                            Err(e) => self.fail(i, "register", Some(&e)),
                        }
                    }
                    Err(e) => {
                        self.conns.push(None);
                        *self
                            .errors
                            .entry(format!("connect: {}", error_kind(&e)))
                            .or_default() += 1;
                    }
                }
                next += 1;
            }
            if Instant::now() > give_up {
                for i in std::mem::take(&mut opening) {
                    self.fail(i, "open budget spent", None);
                }
                for _ in next..total {
                    *self.errors.entry("open budget spent".into()).or_default() += 1;
                }
                break;
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(100)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    *self.errors.entry(format!("epoll: {e}")).or_default() += 1;
                }
            }
            for event in events.iter() {
                self.on_event(event.token().0);
            }
            let now = Instant::now();
            opening.retain(|&i| {
                let Some(c) = &self.conns[i] else {
                    return false;
                };
                c.phase != Phase::Open
            });
            for i in opening.clone() {
                let late = self.conns[i]
                    .as_ref()
                    .and_then(|c| c.since)
                    .is_some_and(|t| now.duration_since(t) > OPEN_TIMEOUT);
                if late {
                    let what = format!("not open within {} s", OPEN_TIMEOUT.as_secs());
                    self.fail(i, &what, None);
                    opening.retain(|&j| j != i);
                }
            }
        }
        let open = self.conns.iter().flatten().count() as u64;
        Opened {
            open,
            errors: self.errors.clone(),
        }
    }

    /// A readiness event on connection `i`.
    fn on_event(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.phase == Phase::Connecting {
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(i, "connect", Some(&e)),
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                // Not connected yet (a spurious wake-up): wait for the next event.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, "connect", Some(&e)),
            }
            if let Err(e) = write_request(&mut c.stream) {
                return self.fail(i, "first request", Some(&e));
            }
            c.phase = Phase::Warming;
            c.since = Some(Instant::now());
        }
        // Edge-triggered: read until the socket has nothing more. One request is in flight
        // at most, so a second answer is unsolicited (`read_answer` says so).
        loop {
            let Some(c) = self.conns[i].as_mut() else {
                return;
            };
            match read_answer(c) {
                Ok(Some(Answer::Warmed)) => {}
                Ok(Some(Answer::Ping { ok, latency })) => {
                    self.in_flight -= 1;
                    if ok {
                        self.latencies_ms.push(latency.as_secs_f64() * 1e3);
                    } else {
                        *self.errors.entry("non-2xx answer".into()).or_default() += 1;
                    }
                }
                Ok(None) => return,
                Err(e) => return self.fail(i, "read", Some(&e)),
            }
        }
    }

    /// Phase 3.
    fn ping(&mut self, window: Duration) -> Done {
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].is_some())
            .collect();
        let m = open.len() as u128;
        let total = m * u128::from(window.as_secs().max(1) as u32);
        let started = Instant::now();
        let due = |s: u128| started + Duration::from_nanos((s * 1_000_000_000 / m.max(1)) as u64);
        let end = started + window;
        let mut events = Events::with_capacity(1024);
        let (mut s, mut sent, mut late, mut not_sent) = (0u128, 0u64, 0u64, 0u64);
        loop {
            let now = Instant::now();
            while s < total && due(s) <= now {
                let i = open[(s % m) as usize];
                s += 1;
                let Some(c) = self.conns[i].as_mut() else {
                    not_sent += 1;
                    continue;
                };
                if c.since.is_some() {
                    late += 1;
                    continue;
                }
                match write_request(&mut c.stream) {
                    Ok(()) => {
                        c.since = Some(Instant::now());
                        self.in_flight += 1;
                        sent += 1;
                    }
                    Err(e) => self.fail(i, "write", Some(&e)),
                }
            }
            let until = if s < total {
                due(s)
            } else if self.in_flight == 0 || now >= end + GRACE {
                break;
            } else {
                end + GRACE
            };
            let wait = until
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    *self.errors.entry(format!("epoll: {e}")).or_default() += 1;
                }
            }
            for event in events.iter() {
                self.on_event(event.token().0);
            }
        }
        if self.in_flight > 0 {
            *self
                .errors
                .entry(format!(
                    "no answer {} s after the last slot",
                    GRACE.as_secs()
                ))
                .or_default() += self.in_flight;
        }
        if not_sent > 0 {
            *self
                .errors
                .entry("slots of failed connections".into())
                .or_default() += not_sent;
        }
        let mut lat = std::mem::take(&mut self.latencies_ms);
        lat.sort_by(f64::total_cmp);
        Done {
            sent,
            answered: lat.len() as u64,
            late,
            p50_ms: quantile(&lat, 0.50),
            p99_ms: quantile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            req_per_s: lat.len() as f64 / window.as_secs_f64(),
            errors: self.errors.clone(),
        }
    }
}

/// A non-blocking connect from `source` (port chosen by the kernel) to `addr`, under way.
fn connect(addr: SocketAddr, source: Ipv4Addr) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    // A reset on close, no TIME_WAIT: the next run finds every port free.
    sock.set_linger(Some(Duration::ZERO))?;
    sock.set_tcp_nodelay(true)?;
    if addr.ip().is_loopback() {
        sock.bind(&SocketAddr::from((source, 0)).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// Writes the whole request; a socket with nothing in flight always takes these few bytes.
fn write_request(stream: &mut TcpStream) -> io::Result<()> {
    match stream.write(REQUEST) {
        Ok(n) if n == REQUEST.len() => Ok(()),
        Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "short write")),
        Err(e) => Err(e),
    }
}

/// Reads what `c` has and completes at most one answer.
fn read_answer(c: &mut Conn) -> io::Result<Option<Answer>> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some((len, ok)) = complete(&c.buf)? {
            c.buf.drain(..len);
            if c.buf.is_empty() {
                // Give the memory back: most connections sit idle between answers.
                c.buf = Vec::new();
            }
            let Some(since) = c.since.take() else {
                return Err(io::Error::other("unsolicited answer"));
            };
            return Ok(Some(match c.phase {
                Phase::Open => Answer::Ping {
                    ok,
                    latency: since.elapsed(),
                },
                _ if !ok => return Err(io::Error::other("non-2xx answer to the first request")),
                _ => {
                    c.phase = Phase::Open;
                    Answer::Warmed
                }
            }));
        }
        match c.stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A short name for a failure: the errno's name where it has one (EMFILE, ECONNREFUSED…).
fn error_kind(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::EADDRINUSE) => "EADDRINUSE",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::ENOBUFS) => "ENOBUFS",
        _ => return e.to_string(),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_short_and_others_keep_their_text() {
        assert_eq!(
            error_kind(&io::Error::from_raw_os_error(libc::EMFILE)),
            "EMFILE"
        );
        assert_eq!(error_kind(&io::Error::other("boom")), "boom");
    }

    #[test]
    fn reports_round_trip_as_one_json_line() {
        let report = Report::Opened(Opened {
            open: 3,
            errors: BTreeMap::from([("connect: ECONNREFUSED".to_string(), 1)]),
        });
        let line = serde_json::to_string(&report).unwrap();
        assert!(!line.contains('\n'));
        match serde_json::from_str::<Report>(&line).unwrap() {
            Report::Opened(o) => assert_eq!((o.open, o.errors.len()), (3, 1)),
            Report::Done(_) => panic!("decoded the wrong phase"),
        }
    }
}
