//! The HTTP/1.1 the io experiment's threads server speaks (fibra's is
//! `fibra/examples/http_hello.rs` itself, tokio's is hyper), and the client experiment's
//! native GET ([`get`]). The server: keep-alive and pipelining of body-less requests,
//! parsed with `httparse`, every one answered with `Hello, World!`. It is only as much HTTP as
//! the benchmark needs: a request with a body, a malformed one or an oversized head gets an
//! error status and the connection is closed.

/// Bytes a connection buffers; a head that does not fit is refused (as http_hello does).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
const HELLO_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What [`answer`] did with a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answered {
    /// Bytes of complete requests consumed from the front of the buffer.
    pub consumed: usize,
    /// Close the connection once the answers are written.
    pub close: bool,
}

/// Appends to `out` the answer to every complete request at the front of `data`.
/// A partial request of [`MAX_HEAD_BYTES`] or more (a connection's whole buffer) is refused.
pub fn answer(data: &[u8], out: &mut Vec<u8>) -> Answered {
    let mut consumed = 0;
    loop {
        let rest = &data[consumed..];
        if rest.is_empty() {
            return Answered {
                consumed,
                close: false,
            };
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let refuse = |out: &mut Vec<u8>, response: &[u8]| {
            out.extend_from_slice(response);
            Answered {
                consumed: data.len(),
                close: true,
            }
        };
        match req.parse(rest) {
            Ok(httparse::Status::Complete(len)) => {
                consumed += len;
                match keep_alive(&req) {
                    Some(true) => out.extend_from_slice(HELLO),
                    Some(false) => return refuse(out, HELLO_CLOSE),
                    None => return refuse(out, BAD_REQUEST),
                }
            }
            Ok(httparse::Status::Partial) if rest.len() >= MAX_HEAD_BYTES => {
                return refuse(out, TOO_LARGE)
            }
            Ok(httparse::Status::Partial) => {
                return Answered {
                    consumed,
                    close: false,
                }
            }
            Err(httparse::Error::TooManyHeaders) => return refuse(out, TOO_LARGE),
            Err(_) => return refuse(out, BAD_REQUEST),
        }
    }
}

/// The client experiment's native GET: one keep-alive request on `stream`, the response read
/// to the end of its `Content-Length` body and checked to be a 200. `buf` is the caller's
/// read buffer, reused across requests.
pub fn get(
    stream: &mut (impl std::io::Read + std::io::Write),
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            _ => return Err(Error::new(ErrorKind::InvalidData, "bad response head")),
        };
        if resp.code != Some(200) {
            return Err(Error::other(format!("status {:?}", resp.code)));
        }
        let length = content_length(resp.headers)
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no Content-Length"))?;
        let mut have = buf.len() - head;
        while have < length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            have += n;
        }
        // No pipelining: a well-behaved server sends nothing past the body.
        return if have == length {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::InvalidData, "bytes past the body"))
        };
    }
}

/// Whether the connection stays open after `req`; `None` for a request with a body.
/// A response's `Content-Length`, if it has a valid one.
pub fn content_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let h = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    std::str::from_utf8(h.value).ok()?.trim().parse().ok()
}

fn keep_alive(req: &httparse::Request) -> Option<bool> {
    let mut keep = req.version.unwrap_or(1) >= 1;
    for h in req.headers.iter() {
        let value = h.value.to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("connection") {
            if value.windows(5).any(|w| w == b"close") {
                keep = false;
            } else if value.windows(10).any(|w| w == b"keep-alive") {
                keep = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value.trim_ascii() != b"0")
        {
            return None;
        }
    }
    Some(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn answers_pipelined_requests_and_keeps_the_partial_tail() {
        let data = [GET, GET, b"GET / HT"].concat();
        let mut out = Vec::new();
        let a = answer(&data, &mut out);
        assert_eq!(a.consumed, 2 * GET.len());
        assert!(!a.close);
        assert_eq!(out, [HELLO, HELLO].concat());
    }

    /// A scripted peer: reads come from `input` in the given chunks, writes are kept.
    struct Script {
        input: Vec<&'static [u8]>,
        written: Vec<u8>,
    }

    impl std::io::Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.input.is_empty() {
                return Ok(0);
            }
            let chunk = self.input.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    impl std::io::Write for Script {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn get_reads_a_response_split_anywhere_and_refuses_errors() {
        let mut buf = Vec::new();
        let (head, body) = HELLO.split_at(20);
        let (body1, body2) = body.split_at(body.len() - 3);
        let mut ok = Script {
            input: vec![head, body1, body2],
            written: Vec::new(),
        };
        get(&mut ok, &mut buf).unwrap();
        assert!(ok.written.starts_with(b"GET / HTTP/1.1\r\n"));
        let mut short = Script {
            input: vec![&HELLO[..HELLO.len() - 1]],
            written: Vec::new(),
        };
        assert!(get(&mut short, &mut buf).is_err());
        let mut bad = Script {
            input: vec![BAD_REQUEST],
            written: Vec::new(),
        };
        assert!(get(&mut bad, &mut buf).is_err());
    }

    #[test]
    fn closes_on_request_and_on_bad_input() {
        let mut out = Vec::new();
        assert!(answer(b"GET / HTTP/1.0\r\n\r\n", &mut out).close);
        assert_eq!(out, HELLO_CLOSE);
        out.clear();
        assert!(answer(b"\x00garbage\r\n\r\n", &mut out).close);
        assert_eq!(out, BAD_REQUEST);
        out.clear();
        assert!(answer(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &mut out).close);
        assert_eq!(out, BAD_REQUEST);
        out.clear();
        let huge = vec![b'a'; MAX_HEAD_BYTES];
        assert!(answer(&[b"GET /", &huge[..]].concat(), &mut out).close);
        assert_eq!(out, TOO_LARGE);
    }
}
