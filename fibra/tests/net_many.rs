//! 10,000 TCP connections held open at once and echoing, on 2 workers: each connection is a
//! plain blocking-style fiber on the server side.
//!
//! The clients run in a child process (this test binary again, told so by [`CLIENT_ENV`]):
//! two fds per connection in one process would need a `RLIMIT_NOFILE` above the usual hard
//! limit of 20,000, which an unprivileged (or capability-less) test cannot raise.
//!
//! One `#[test]` in a binary of its own: it raises `RLIMIT_NOFILE` for the whole process.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};
use fibra::sync::Barrier;

const CONNECTIONS: usize = 10_000;
const CLIENTS: usize = 100; // client fibers, each holding CONNECTIONS / CLIENTS streams
const CLIENT_ENV: &str = "FIBRA_NET_MANY_SERVER";
const TEST: &str = "ten_thousand_connections_held_open_and_echoing_on_two_workers";

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn ten_thousand_connections_held_open_and_echoing_on_two_workers() {
    if let Err(why) = common::raise_nofile(CONNECTIONS as u64 + 1_000) {
        println!("skipped: cannot open {CONNECTIONS} connections: {why}");
        return;
    }
    match std::env::var(CLIENT_ENV) {
        Ok(addr) => clients(addr.parse().unwrap()),
        Err(_) => server(),
    }
}

/// The parent: serves every connection with its own echo fiber and runs the child.
fn server() {
    let _w = common::watchdog_for("ten_thousand_connections", Duration::from_secs(300));
    let (status, peak, echoed) = rt().run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let echoed = Arc::new(AtomicUsize::new(0));
        {
            let (open, peak, echoed) = (open.clone(), peak.clone(), echoed.clone());
            fibra::spawn(move || {
                while let Ok((mut s, _)) = listener.accept() {
                    let n = open.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(n, SeqCst);
                    let (open, echoed) = (open.clone(), echoed.clone());
                    fibra::spawn(move || {
                        let mut buf = [0u8; 8];
                        // One 8-byte message per connection, then the client closes.
                        while s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {
                            echoed.fetch_add(1, SeqCst);
                        }
                        open.fetch_sub(1, SeqCst);
                    });
                }
            });
        }
        let status = fibra::run_blocking(|| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                .env(CLIENT_ENV, addr.to_string())
                .status()
                .unwrap()
        });
        while open.load(SeqCst) != 0 {
            fibra::sleep(Duration::from_millis(5));
        }
        (status, peak.load(SeqCst), echoed.load(SeqCst))
    });
    assert!(status.success(), "the client process failed: {status}");
    assert_eq!(
        peak, CONNECTIONS,
        "all connections were open at the same time"
    );
    assert_eq!(echoed, CONNECTIONS);
}

/// The child: opens every connection, waits until all are open, then echoes through each.
fn clients(addr: SocketAddr) {
    let _w = common::watchdog_for(
        "ten_thousand_connections (clients)",
        Duration::from_secs(280),
    );
    let echoed = rt().run(|| {
        let all_open = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let all_open = all_open.clone();
                fibra::spawn(move || {
                    let mut streams: Vec<TcpStream> = (0..CONNECTIONS / CLIENTS)
                        .map(|_| TcpStream::connect(addr).unwrap())
                        .collect();
                    all_open.wait();
                    let mut echoed = 0;
                    for (i, s) in streams.iter_mut().enumerate() {
                        let msg = ((c * CONNECTIONS + i) as u64).to_le_bytes();
                        s.write_all(&msg).unwrap();
                        let mut back = [0u8; 8];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                        echoed += 1;
                    }
                    echoed
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(echoed, CONNECTIONS);
}
