//! `fibra::net::UdpSocket` and name resolution.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream, UdpSocket};

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn datagrams_round_trip_between_fibers() {
    let _w = common::watchdog("datagrams_round_trip_between_fibers");
    rt().run(|| {
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
    rt().run(|| {
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
    rt().run(|| {
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

/// A resolver as slow as a remote DNS server, recording the thread it ran on.
struct SlowName(Arc<Mutex<Vec<std::thread::ThreadId>>>);

impl std::net::ToSocketAddrs for SlowName {
    type Iter = std::vec::IntoIter<std::net::SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        self.0.lock().unwrap().push(std::thread::current().id());
        std::thread::sleep(Duration::from_millis(20));
        Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))].into_iter())
    }
}

/// While one fiber resolves a name (on the blocking pool), its worker keeps running others.
#[test]
fn resolving_does_not_hold_the_worker() {
    let _w = common::watchdog("resolving_does_not_hold_the_worker");
    let one = fibra::Runtime::builder().workers(1).build().unwrap();
    one.run(|| {
        let worker = std::thread::current().id();
        let resolved_on = Arc::new(Mutex::new(Vec::new()));
        let names = resolved_on.clone();
        let resolver = fibra::spawn(move || {
            for _ in 0..5 {
                let _ = UdpSocket::bind(SlowName(names.clone())).unwrap();
            }
        });
        let mut turns = 0u32;
        while !resolver.is_finished() {
            turns += 1;
            fibra::yield_now();
        }
        resolver.join().unwrap();
        let resolved_on = resolved_on.lock().unwrap();
        assert_eq!(resolved_on.len(), 5);
        assert!(
            resolved_on.iter().all(|t| *t != worker),
            "a name was resolved on the worker thread"
        );
        // Resolving inline would hold the only worker through all five 20 ms resolutions
        // and leave this fiber a turn or two; off the worker it turns throughout.
        assert!(turns >= 5, "only {turns} turns while 5 names were resolved");
    });
}
