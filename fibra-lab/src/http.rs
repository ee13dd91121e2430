//! The HTTP/1.1 the io experiment's threads server speaks (fibra's is
//! `fibra/examples/http_hello.rs` itself, tokio's is hyper): keep-alive and pipelining of body-less requests,
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

/// Whether the connection stays open after `req`; `None` for a request with a body.
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
