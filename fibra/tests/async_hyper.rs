//! hyper 1.x on fibra (feature `hyper`): its HTTP/1 and HTTP/2 servers and clients over fibra
//! sockets, driven by `fibra::await_future`, with fibra's `Executor` and `Timer`.
#![cfg(feature = "hyper")]

mod common;

use std::convert::Infallible;
use std::io::Read;
use std::time::Duration;

use fibra::compat::hyper::{Executor, Timer};
use fibra::net::{TcpListener, TcpStream};
use fibra::os::unix::net::UnixStream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// hyper's futures are large in debug builds (a connection's poll nests deep): 64 KiB
/// stacks overflow there, so the tests give every fiber 1 MiB (virtual; touched pages only).
fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(workers)
        .stack_size(1 << 20)
        .build()
        .unwrap()
}

/// Answers `echo:<path>` followed by the request body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let mut out = format!("echo:{path}:").into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

#[derive(Clone, Copy)]
enum Proto {
    Http1,
    Http2,
}

/// A hyper server on `listener`: one fiber per connection.
fn serve(listener: TcpListener, proto: Proto) {
    fibra::spawn(move || loop {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        fibra::spawn(move || serve_conn(stream, proto));
    });
}

fn serve_conn<S>(stream: S, proto: Proto)
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(echo);
    let _ = match proto {
        Proto::Http1 => fibra::await_future(
            hyper::server::conn::http1::Builder::new()
                .timer(Timer)
                .serve_connection(stream, svc),
        ),
        Proto::Http2 => fibra::await_future(
            hyper::server::conn::http2::Builder::new(Executor::new())
                .timer(Timer)
                .serve_connection(stream, svc),
        ),
    };
}

/// One client connection sending `rounds` requests, each checked.
fn client<S>(stream: S, proto: Proto, id: usize, rounds: usize)
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let check = |resp: Response<Incoming>, i: usize| {
        assert_eq!(resp.status(), 200);
        let body = fibra::await_future(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(body, format!("echo:/c{id}/r{i}:body {i}").as_bytes());
    };
    let req = |i: usize| {
        Request::post(format!("http://localhost/c{id}/r{i}"))
            .body(Full::new(Bytes::from(format!("body {i}"))))
            .unwrap()
    };
    match proto {
        Proto::Http1 => {
            let (mut tx, conn) =
                fibra::await_future(hyper::client::conn::http1::handshake(stream)).unwrap();
            let conn = fibra::spawn(move || fibra::await_future(conn));
            for i in 0..rounds {
                let resp = fibra::await_future(tx.send_request(req(i))).unwrap();
                check(resp, i);
            }
            drop(tx); // the connection future ends once its sender is gone
            conn.join().unwrap().unwrap();
        }
        Proto::Http2 => {
            let (mut tx, conn) = fibra::await_future(
                hyper::client::conn::http2::Builder::new(Executor::new())
                    .timer(Timer)
                    .handshake(stream),
            )
            .unwrap();
            let conn = fibra::spawn(move || fibra::await_future(conn));
            // HTTP/2 multiplexes: send every request first, then read the answers.
            let pending: Vec<_> = (0..rounds).map(|i| tx.send_request(req(i))).collect();
            for (i, p) in pending.into_iter().enumerate() {
                check(fibra::await_future(p).unwrap(), i);
            }
            drop(tx);
            conn.join().unwrap().unwrap();
        }
    }
}

fn tcp_round_trips(proto: Proto) {
    rt(2).run(move || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, proto);
        let clients: Vec<_> = (0..8)
            .map(|id| {
                fibra::spawn(move || client(TcpStream::connect(addr).unwrap(), proto, id, 20))
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
}

#[test]
fn http1_server_and_client_over_tcp() {
    let _w = common::watchdog("http1_server_and_client_over_tcp");
    tcp_round_trips(Proto::Http1);
}

#[test]
fn http2_server_and_client_over_tcp() {
    let _w = common::watchdog("http2_server_and_client_over_tcp");
    tcp_round_trips(Proto::Http2);
}

#[test]
fn http1_and_http2_over_unix_streams() {
    let _w = common::watchdog("http1_and_http2_over_unix_streams");
    rt(2).run(|| {
        for proto in [Proto::Http1, Proto::Http2] {
            let (a, b) = UnixStream::pair().unwrap();
            let server = fibra::spawn(move || serve_conn(a, proto));
            client(b, proto, 7, 5);
            server.join().unwrap();
        }
    });
}

/// The `Timer` drives hyper's timeouts: a connection that sends no request head within
/// `header_read_timeout` is closed by the server.
#[test]
fn header_read_timeout_closes_an_idle_connection() {
    let _w = common::watchdog("header_read_timeout_closes_an_idle_connection");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = fibra::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let svc = hyper::service::service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            });
            fibra::await_future(
                hyper::server::conn::http1::Builder::new()
                    .timer(Timer)
                    .header_read_timeout(Duration::from_millis(20))
                    .serve_connection(stream, svc),
            )
        });
        let mut idle = TcpStream::connect(addr).unwrap();
        let mut buf = [0u8; 64];
        // Nothing sent: the server gives up and closes (a 408 may precede the close).
        while idle.read(&mut buf).unwrap() != 0 {}
        assert!(server.join().unwrap().is_err(), "hyper reports the timeout");
    });
}

/// Cancelling a fiber parked in a hyper connection future unwinds it and drops the future,
/// closing the connection: the peer reads end of stream.
#[test]
fn cancelling_a_serving_fiber_closes_its_connection() {
    let _w = common::watchdog("cancelling_a_serving_fiber_closes_its_connection");
    rt(2).run(|| {
        let (a, mut b) = UnixStream::pair().unwrap();
        let server = fibra::spawn(move || serve_conn(a, Proto::Http1));
        while server.fiber().park_reason() != fibra::ParkReason::BlockOn {
            fibra::yield_now();
        }
        server.cancel();
        assert!(matches!(server.join(), Err(fibra::JoinError::Cancelled)));
        assert_eq!(b.read(&mut [0u8; 16]).unwrap(), 0);
    });
}
