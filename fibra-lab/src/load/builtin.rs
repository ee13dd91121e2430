//! The lab's own load generator, for machines without `wrk`: two threads, each owning half of
//! the keep-alive connections. Each round a thread sends one request on every connection it
//! owns, then reads every answer, timing each request from its write to its answer's last byte
//! (closed-loop, like wrk: a connection never has more than one request in flight).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{quantile, Load};

const THREADS: u64 = 2;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
/// A server silent for this long on one connection has failed it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the load's end the last round may still run.
const GRACE: Duration = Duration::from_secs(15);

/// What one thread measured.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    errors: u64,
}

pub fn run(addr: SocketAddr, conns: u64, duration: Duration) -> Result<Load, String> {
    let threads = THREADS.min(conns).max(1);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine = conns / threads + u64::from(t < conns % threads);
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || drive(addr, mine, deadline))
                .map_err(|e| format!("could not start a load thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut total = Tally::default();
    for h in handles {
        let tally = h
            .join()
            .map_err(|_| "a load thread panicked".to_string())??;
        total.latencies_ms.extend(tally.latencies_ms);
        total.errors += tally.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if total.latencies_ms.is_empty() {
        return Err(format!("no request was answered ({} errors)", total.errors));
    }
    total.latencies_ms.sort_by(f64::total_cmp);
    Ok(Load {
        req_per_s: total.latencies_ms.len() as f64 / elapsed,
        p50_ms: quantile(&total.latencies_ms, 0.50),
        p99_ms: quantile(&total.latencies_ms, 0.99),
        errors: total.errors,
    })
}

fn drive(addr: SocketAddr, conns: u64, deadline: Instant) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut streams = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        match open(addr) {
            Ok(s) => streams.push(Conn {
                stream: s,
                buf: Vec::with_capacity(512),
            }),
            Err(_) => tally.errors += 1,
        }
    }
    if streams.is_empty() {
        return Err(format!(
            "could not open any of {conns} connections to {addr}"
        ));
    }
    let mut sent = Vec::with_capacity(streams.len());
    while Instant::now() < deadline && !streams.is_empty() {
        sent.clear();
        for conn in &mut streams {
            sent.push((Instant::now(), conn.stream.write_all(REQUEST).is_ok()));
        }
        let mut alive = Vec::with_capacity(streams.len());
        for (mut conn, (at, written)) in streams.drain(..).zip(sent.iter().copied()) {
            // A server that stopped answering must not hold the lab for a read timeout per
            // connection: past the grace period, the rest of the round counts as errors.
            let late = Instant::now() > deadline + GRACE;
            match (written && !late).then(|| conn.read_response()) {
                Some(Ok(true)) => {
                    tally.latencies_ms.push(at.elapsed().as_secs_f64() * 1e3);
                    alive.push(conn);
                }
                // A non-2xx answer: counted, and the connection kept.
                Some(Ok(false)) => {
                    tally.errors += 1;
                    alive.push(conn);
                }
                _ => tally.errors += 1,
            }
        }
        streams = alive;
    }
    Ok(tally)
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(s)
}

/// One keep-alive connection and the bytes read past its last answer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
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
fn complete(buf: &[u8]) -> io::Result<Option<(usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let body = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
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
}
