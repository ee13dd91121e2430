//! `fibra::net::UdpSocket` and name resolution.

mod common;

use std::io;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream, UdpSocket};

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn datagrams_round_trip_between_fibers() {
    let _w = common::watchdog("datagrams_round_trip_between_fibers");
    rt().block_on(|| {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let echo = fibra::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                server.send_to(&buf[..n], from).unwrap();
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for i in 0..100u32 {
            client.send(&i.to_le_bytes()).unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(client.recv(&mut buf).unwrap(), 4);
            assert_eq!(u32::from_le_bytes(buf), i);
        }
        echo.join().unwrap();
    });
}

#[test]
fn recv_timeout_fires() {
    let _w = common::watchdog("recv_timeout_fires");
    rt().block_on(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = s.recv_from(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    });
}

#[test]
fn udp_works_on_plain_threads() {
    let _w = common::watchdog("udp_works_on_plain_threads");
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        b.recv_from(&mut buf).unwrap().0
    });
    std::thread::sleep(Duration::from_millis(10));
    a.send_to(b"thread", b_addr).unwrap();
    assert_eq!(t.join().unwrap(), 6);
}

#[test]
fn host_names_are_resolved() {
    let _w = common::watchdog("host_names_are_resolved");
    rt().block_on(|| {
        let l = TcpListener::bind("localhost:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let ip = l.local_addr().unwrap().ip();
        let c = TcpStream::connect((ip.to_string().as_str(), port)).unwrap();
        assert_eq!(c.peer_addr().unwrap().port(), port);
        let c = TcpStream::connect(format!("localhost:{port}")).unwrap();
        assert_eq!(c.peer_addr().unwrap().port(), port);
        let e = UdpSocket::bind("no-such-host.invalid:0").unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
    });
}

/// While one fiber resolves a name (on the blocking pool), its worker keeps running others.
#[test]
fn resolving_does_not_hold_the_worker() {
    let _w = common::watchdog("resolving_does_not_hold_the_worker");
    let one = fibra::Runtime::builder().workers(1).build().unwrap();
    one.block_on(|| {
        let resolver = fibra::spawn(|| {
            for _ in 0..20 {
                let _ = UdpSocket::bind("localhost:0").unwrap();
            }
        });
        let mut turns = 0u32;
        while !resolver.is_finished() {
            turns += 1;
            fibra::yield_now();
        }
        resolver.join().unwrap();
        // Each resolution parks the resolver (it runs on the blocking pool), and this fiber,
        // queued already, runs at least once per park. Resolving inline would hold the only
        // worker through all 20 and leave this fiber at most a turn or two.
        assert!(
            turns >= 20,
            "only {turns} turns while 20 names were resolved"
        );
    });
}
