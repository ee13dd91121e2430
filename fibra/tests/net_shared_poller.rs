//! `RuntimeBuilder::shared_poller`: every socket registers with one poller that whichever
//! worker is free polls. Fibers still resume on their own threads; these tests check that no
//! readiness is lost on the way (a sleeping worker wakes for the shared poller's events, a
//! busy one hands them to their fibers' homes) and that shutdown still returns.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fibra::net::{TcpListener, TcpStream};

fn runtime() -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(2)
        .shared_poller()
        .build()
        .unwrap()
}

/// 200 connections, each on its own fiber spread over both workers, echo 50 messages each:
/// every byte comes back.
#[test]
fn many_connections_echo_through_the_shared_poller() {
    let _w = common::watchdog("many_connections_echo_through_the_shared_poller");
    let total = runtime().run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        common::echo_clients(addr, 200, 50)
    });
    assert_eq!(total, common::echo_bytes(200, 50));
}

/// Every worker is asleep when the data arrives (written by a plain thread 100 ms later): the
/// shared poller's event must wake one of them, which must hand the fiber its readiness.
#[test]
fn a_sleeping_runtime_wakes_for_the_shared_poller() {
    let _w = common::watchdog("a_sleeping_runtime_wakes_for_the_shared_poller");
    let (took, metrics) = runtime().run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(b"late").unwrap();
            s
        });
        let (mut s, _) = listener.accept().unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        let took = t0.elapsed();
        drop(writer.join().unwrap());
        (took, fibra::debug::metrics().unwrap())
    });
    assert!(
        took >= Duration::from_millis(50),
        "read returned early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the wake-up came late: {took:?}"
    );
    let slept: u64 = metrics.workers.iter().map(|w| w.times_slept).sum();
    assert!(
        slept > 0,
        "no worker slept while waiting: the test proved nothing"
    );
}

/// Shutdown with fibers parked in `accept` and `read` on the shared poller returns promptly.
#[test]
fn shutdown_with_fibers_parked_on_the_shared_poller_returns() {
    let _w = common::watchdog("shutdown_with_fibers_parked_on_the_shared_poller_returns");
    let t0 = Instant::now();
    let conns = runtime().run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        let conns: Vec<_> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
        fibra::sleep(Duration::from_millis(20)); // the server fibers park in `read`
        conns // still open: the server fibers are parked when the runtime shuts down
    });
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(conns);
}
