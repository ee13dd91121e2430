//! `ureq` 2, unchanged, on hooked fibers against a small HTTP/1.1 server the test runs on
//! fibra (`fibra::net`, a fiber per connection). Every response is checked; none is timed.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use common::watchdog;
use fibra::net::{TcpListener, TcpStream};

/// Answers each GET with its path as the body, keep-alive, until the client closes.
fn serve_connection(mut s: TcpStream, served: &AtomicUsize) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let body = req.path.unwrap_or("").to_owned();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                buf.drain(..head);
                served.fetch_add(1, SeqCst); // before the answer, which lets the client go on
                if s.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            Ok(httparse::Status::Partial) => match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Err(e) => panic!("server: bad request from ureq: {e}"),
        }
    }
}

#[test]
fn ureq_gets_from_fifty_fibers() {
    let _w = watchdog("ureq_gets_from_fifty_fibers");
    const CLIENTS: usize = 50;
    const GETS: usize = 20;
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    let ok = rt.run(move || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Unwound when `run` returns (the accept parks in fibra, not in a hook).
        fibra::spawn(move || loop {
            let (stream, _) = listener.accept().unwrap();
            let s = s.clone();
            fibra::spawn(move || serve_connection(stream, &s));
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                fibra::spawn(move || {
                    let agent = ureq::AgentBuilder::new().build();
                    for g in 0..GETS {
                        let path = format!("/{c}/{g}");
                        let resp = agent.get(&format!("http://{addr}{path}")).call().unwrap();
                        assert_eq!(resp.status(), 200);
                        assert_eq!(resp.into_string().unwrap(), path);
                    }
                    GETS
                })
            })
            .collect();
        let ok: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        let m = fibra::debug::metrics().unwrap();
        assert_eq!(
            m.spares_started, 0,
            "a worker was blocked: the monitor added a thread"
        );
        ok
    });
    assert_eq!(ok, CLIENTS * GETS);
    assert_eq!(
        served.load(SeqCst),
        CLIENTS * GETS,
        "the server answered each GET once"
    );
}
