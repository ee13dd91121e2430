//! `fibra::compat::tokio` (feature `tokio-compat`): a crate that needs tokio's runtime
//! (reqwest) called from fibers against a local server, and cancellation through unwinding.
#![cfg(feature = "tokio-compat")]

mod common;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use fibra::compat::tokio as bridge;
use fibra::net::{TcpListener, TcpStream};

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(workers)
        .stack_size(1 << 20)
        .build()
        .unwrap()
}

/// A blocking-style HTTP/1.1 server on fibra: answers each request with its path, then
/// closes the connection.
fn serve_paths(listener: TcpListener) {
    fibra::spawn(move || loop {
        let Ok((s, _)) = listener.accept() else {
            return;
        };
        fibra::spawn(move || answer(s));
    });
}

fn answer(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&buf).unwrap();
    let body = format!("path={}", req.path.unwrap());
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[test]
fn reqwest_through_the_bridge_against_a_local_server() {
    let _w = common::watchdog("reqwest_through_the_bridge_against_a_local_server");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_paths(listener);
        let http = client();
        // One fiber, calls in sequence.
        for i in 0..5 {
            let (http, url) = (http.clone(), format!("http://{addr}/seq/{i}"));
            let text = bridge::run(async move { http.get(url).send().await?.text().await });
            assert_eq!(text.unwrap(), format!("path=/seq/{i}"));
        }
        // Many fibers at once, each parked on its own call.
        let fibers: Vec<_> = (0..16)
            .map(|i| {
                let http = http.clone();
                fibra::spawn(move || {
                    let url = format!("http://{addr}/par/{i}");
                    bridge::run(async move { http.get(url).send().await?.text().await })
                })
            })
            .collect();
        for (i, f) in fibers.into_iter().enumerate() {
            assert_eq!(f.join().unwrap().unwrap(), format!("path=/par/{i}"));
        }
    });
}

/// Signals on drop: tells the test the tokio side dropped the future.
struct DropSignal(mpsc::Sender<&'static str>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send("dropped");
    }
}

/// A future that starts on tokio (and says so), then waits forever, holding a `DropSignal`.
async fn forever(started: mpsc::Sender<&'static str>, dropped: mpsc::Sender<&'static str>) {
    let _g = DropSignal(dropped);
    let _ = started.send("started");
    std::future::pending::<()>().await;
}

/// Cancelling the waiting fiber unwinds it; the unwind aborts the tokio task, which drops
/// the future on tokio's thread.
#[test]
fn cancelling_the_fiber_aborts_the_tokio_task() {
    let _w = common::watchdog("cancelling_the_fiber_aborts_the_tokio_task");
    rt(2).run(|| {
        let (started_tx, started_rx) = mpsc::channel();
        let (dropped_tx, dropped_rx) = mpsc::channel();
        let waiter = fibra::spawn(move || bridge::run(forever(started_tx, dropped_tx)));
        assert_eq!(
            fibra::run_blocking(move || started_rx.recv().unwrap()),
            "started"
        );
        waiter.cancel();
        assert!(matches!(waiter.join(), Err(fibra::JoinError::Cancelled)));
        assert_eq!(
            fibra::run_blocking(move || dropped_rx.recv().unwrap()),
            "dropped"
        );
    });
}

/// Shutdown unwinds a fiber waiting in the bridge, and that too aborts its tokio task.
#[test]
fn runtime_shutdown_aborts_a_waiting_call() {
    let _w = common::watchdog("runtime_shutdown_aborts_a_waiting_call");
    let (started_tx, started_rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    rt(1).run(move || {
        fibra::spawn(move || bridge::run(forever(started_tx, dropped_tx)));
        assert_eq!(
            fibra::run_blocking(move || started_rx.recv().unwrap()),
            "started"
        );
        // Returning from the root fiber shuts the runtime down with the call still waiting.
    });
    assert_eq!(
        dropped_rx.recv_timeout(Duration::from_secs(30)),
        Ok("dropped")
    );
}

/// A panic in the future is resumed in the calling fiber.
#[test]
fn a_panic_on_tokio_resumes_in_the_fiber() {
    let _w = common::watchdog("a_panic_on_tokio_resumes_in_the_fiber");
    rt(1).run(|| {
        let f = fibra::spawn(|| bridge::run(async { panic!("boom on tokio") }));
        match f.join() {
            Err(fibra::JoinError::Panicked(p)) => {
                assert_eq!(p.downcast_ref::<&str>(), Some(&"boom on tokio"));
            }
            other => panic!("expected the panic back, got {other:?}"),
        }
    });
}
