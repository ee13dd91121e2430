//! A small HTTP/1.1 server on fibra: every connection is one fiber running plain blocking
//! code. It answers every request with `Hello, World!`.
//!
//! ```text
//! cargo run --release --example http_hello -- 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! ```
//!
//! - Keep-alive (HTTP/1.1 by default; HTTP/1.0 with `Connection: keep-alive`) and pipelining:
//!   every complete request in the buffer is answered, and the answers go out in one write.
//! - Requests are parsed with `httparse`; a malformed one gets `400 Bad Request`, a head
//!   larger than [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers gets
//!   `431 Request Header Fields Too Large`, a chunked body `501`; each then closes.
//! - A client idle for longer than the read timeout (10 s; `FIBRA_HTTP_READ_TIMEOUT_MS`
//!   overrides it) is disconnected, so slow clients cannot pile up.
//!
//! The lab's `io` experiment measures this server.

use std::io::{self, Read, Write};
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};

/// Largest request head (request line and headers) accepted: 8 KiB, the line size of
/// nginx's `large_client_header_buffers` and Apache's `LimitRequestLine`.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers per request (hyper's default limit is 100; a hello server needs few).
pub const MAX_HEADERS: usize = 32;
/// Largest request body skipped (the server reads no body, but must consume it to stay in
/// step on a keep-alive connection).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long, and how much, a closing connection drains the client's input (nginx's
/// `lingering_timeout` is 5 s; a hello server can be stingier).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Initial read buffer: a typical request head (100-500 bytes) fits; it doubles up to
/// [`MAX_HEAD_BYTES`] only for larger ones, so an idle keep-alive connection holds 1 KiB.
const INITIAL_BUF: usize = 1024;

const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const HELLO_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BODY_TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let result = fibra::run(move || -> io::Result<()> {
        let listener = TcpListener::bind(addr.as_str())?;
        eprintln!("http_hello: listening on http://{}", listener.local_addr()?);
        serve(listener, read_timeout())
    });
    if let Err(e) = result {
        eprintln!("http_hello: {e}");
        std::process::exit(1);
    }
}

/// The read timeout: `FIBRA_HTTP_READ_TIMEOUT_MS`, or 10 s.
pub fn read_timeout() -> Duration {
    std::env::var("FIBRA_HTTP_READ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Accepts forever, one fiber per connection, each started on the least loaded worker
/// (`Builder::spread`): a connection's fiber stays where it starts, and a burst of
/// connections would otherwise all start next to this loop.
pub fn serve(listener: TcpListener, read_timeout: Duration) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        let handler = move || {
            // Errors end the connection; the client sees it closed (nothing to report here).
            let _ = connection(stream, read_timeout);
        };
        if let Err(e) = fibra::Builder::new().spread().spawn(handler) {
            // No stack for it (the stream went with the closure and is closed): shed this
            // connection, keep serving.
            eprintln!("http_hello: connection dropped: {e}");
        }
    }
}

/// What to do after a request.
enum Next {
    KeepAlive,
    Close,
}

/// One connection: read, answer every complete request buffered, write the answers, repeat.
fn connection(mut stream: TcpStream, read_timeout: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(read_timeout))?;
    let mut buf = vec![0u8; INITIAL_BUF];
    let (mut start, mut end) = (0usize, 0usize); // unparsed bytes are buf[start..end]
    let mut out = Vec::new(); // allocated on the first answer: idle connections hold none
    loop {
        // Answer every complete request already buffered (pipelining).
        loop {
            match parse(&buf[start..end]) {
                Parsed::Request { len, body, next } => {
                    let total = len + body;
                    if start + total > end {
                        if total > MAX_HEAD_BYTES {
                            // The body would not fit the buffer: skip it as it streams in.
                            let buffered = end - start - len;
                            skip(&mut stream, &mut buf, body - buffered)?;
                            start = end;
                        } else {
                            break; // wait for the rest of the body
                        }
                    } else {
                        start += total;
                    }
                    match next {
                        Next::KeepAlive => out.extend_from_slice(HELLO),
                        Next::Close => {
                            out.extend_from_slice(HELLO_CLOSE);
                            return finish(&mut stream, &mut buf, &out);
                        }
                    }
                }
                Parsed::Partial => break,
                Parsed::Reject(response) => {
                    out.extend_from_slice(response);
                    return finish(&mut stream, &mut buf, &out);
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        // Make room: move the unparsed tail to the front.
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            if buf.len() >= MAX_HEAD_BYTES {
                // A full buffer that is still not a complete request head.
                return finish(&mut stream, &mut buf, TOO_LARGE);
            }
            buf.resize((buf.len() * 2).min(MAX_HEAD_BYTES), 0);
        }
        match stream.read(&mut buf[end..]) {
            Ok(0) => return Ok(()), // the client closed (or half-closed) its side
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()), // idle too long
            Err(e) => return Err(e),
        }
    }
}

/// Writes the last response and closes gracefully: the write side first, then input is
/// drained for a moment (nginx's "lingering close"). Closing with unread input would send
/// an RST, which can destroy the response in the client's buffers before it is read.
fn finish(stream: &mut TcpStream, sink: &mut [u8], out: &[u8]) -> io::Result<()> {
    stream.write_all(out)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(LINGER))?;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match stream.read(sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// Reads and drops `n` body bytes (through `sink`, the connection's buffer: a stack array
/// here would be probed page by page and stay resident in every connection's fiber stack).
fn skip(stream: &mut TcpStream, sink: &mut [u8], mut n: usize) -> io::Result<()> {
    while n > 0 {
        let want = n.min(sink.len());
        let got = stream.read(&mut sink[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        n -= got;
    }
    Ok(())
}

enum Parsed {
    /// A complete head of `len` bytes followed by a `body` of that many bytes.
    Request {
        len: usize,
        body: usize,
        next: Next,
    },
    Partial,
    Reject(&'static [u8]),
}

/// Not inlined: its 1 KiB header array then lives only while parsing, not in the frame under
/// every parked read (a parked connection's stack stays within one page).
#[inline(never)]
fn parse(data: &[u8]) -> Parsed {
    if data.is_empty() {
        return Parsed::Partial;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(TOO_LARGE),
        Err(_) => return Parsed::Reject(BAD_REQUEST),
    };
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut body = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if v.windows(5).any(|w| w == b"close") {
                keep_alive = false;
            } else if v.windows(10).any(|w| w == b"keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok());
            match parsed {
                Some(n) if n <= MAX_BODY_BYTES => body = n,
                Some(_) => return Parsed::Reject(BODY_TOO_LARGE),
                None => return Parsed::Reject(BAD_REQUEST),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Reject(NOT_IMPLEMENTED);
        }
    }
    let next = if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    };
    Parsed::Request { len, body, next }
}
