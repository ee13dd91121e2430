//! hyper's HTTP/1.1 server on fibra, with nothing from tokio: a fiber per connection drives
//! hyper's connection future with `fibra::await_future`, over a fibra `TcpStream` (hyper's
//! `rt::{Read, Write}`, feature `hyper`), with fibra's timers behind hyper's `Timer`.
//! It answers every request with `Hello, World!`.
//!
//! ```text
//! cargo run --release -p fibra --features hyper --example hyper_hello -- 127.0.0.1:8080
//! curl http://127.0.0.1:8080/
//! ```
//!
//! - The same answer and headers as the lab's tokio + hyper server (`Content-Type`,
//!   `Content-Length`, no `Date`), keep-alive on, `TCP_NODELAY` set.
//! - A client that sends no request head for the header read timeout (10 s;
//!   `FIBRA_HTTP_READ_TIMEOUT_MS` overrides it, as for `http_hello`) is disconnected: hyper's
//!   `header_read_timeout`, on `fibra::compat::hyper::Timer`.
//!
//! The lab's `io` experiment measures this server (the `fibra-hyper` contender).

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use fibra::compat::hyper::Timer;
use fibra::net::TcpListener;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

/// hyper's connection futures nest deeper than `http_hello`'s plain code: 64 KiB is enough in
/// release builds, but debug builds need more (tests/async_hyper.rs gives 1 MiB).
const STACK: usize = if cfg!(debug_assertions) {
    1 << 20
} else {
    64 * 1024
};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let rt = match fibra::Runtime::builder().stack_size(STACK).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyper_hello: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.run(move || -> io::Result<()> {
        let listener = TcpListener::bind(addr.as_str())?;
        eprintln!(
            "hyper_hello: listening on http://{}",
            listener.local_addr()?
        );
        serve(listener, header_read_timeout())
    });
    if let Err(e) = result {
        eprintln!("hyper_hello: {e}");
        std::process::exit(1);
    }
}

/// `FIBRA_HTTP_READ_TIMEOUT_MS`, or 10 s.
pub fn header_read_timeout() -> Duration {
    std::env::var("FIBRA_HTTP_READ_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Accepts forever, one fiber per connection, each started on the least loaded worker
/// (`Builder::spread`, as `http_hello` does).
pub fn serve(listener: TcpListener, header_read_timeout: Duration) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(Timer)
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .auto_date_header(false);
    loop {
        let (stream, _) = listener.accept()?;
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(stream, service_fn(hello));
        let handler = move || {
            // A client that goes away mid-request is its own business.
            let _ = fibra::await_future(conn);
        };
        if let Err(e) = fibra::Builder::new().spread().spawn(handler) {
            eprintln!("hyper_hello: connection dropped: {e}");
        }
    }
}

const HELLO: &[u8] = b"Hello, World!";

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(HELLO)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(HELLO.len()));
    Ok(response)
}
