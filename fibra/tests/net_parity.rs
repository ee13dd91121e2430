//! `std` parity of the socket types (issue 20): listener clones share the non-blocking mode,
//! `from_std`/`into_std` and the fd conversions carry the mode and timeouts, adopted fds are
//! switched to non-blocking and registered on demand, UDP multicast, and Unix sockets
//! addressed by `SocketAddr` (abstract names included).

mod common;

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream, UdpSocket};
use fibra::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};

/// One worker: a fiber spawned by the test runs only when the test's fiber parks or ends.
fn rt1() -> fibra::Runtime {
    fibra::Runtime::builder().workers(1).build().unwrap()
}

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fibra-parity-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn abstract_addr(name: &str) -> SocketAddr {
    let name = format!("fibra-parity-{name}-{}", std::process::id());
    SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
}

/// Asserts that `op` fails with `WouldBlock` at once, on a one-worker runtime. `rescue` (a
/// fiber spawned first) makes `op` succeed: a socket that parked instead of failing is woken
/// by it and the assertion fails, where it would otherwise hang.
fn assert_would_block<T: Debug>(
    what: &str,
    rescue: impl FnOnce() + Send + 'static,
    op: impl FnOnce() -> io::Result<T>,
) {
    let rescuer = fibra::spawn(rescue);
    match op() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: expected WouldBlock at once, got {other:?}"),
    }
    rescuer.join().unwrap();
}

fn o_nonblock(fd: &impl AsFd) -> bool {
    socket2::SockRef::from(fd).nonblocking().unwrap()
}

#[test]
fn listener_clones_share_the_nonblocking_mode() {
    let _w = common::watchdog("listener_clones_share_the_nonblocking_mode");
    rt1().run(|| {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let tcp2 = tcp.try_clone().unwrap();
        tcp.set_nonblocking(true).unwrap(); // set on the original, after cloning
        assert_would_block(
            "TcpListener clone",
            move || drop(TcpStream::connect(addr).unwrap()),
            || tcp2.accept(),
        );
        tcp2.set_nonblocking(false).unwrap(); // and back, through the clone
        fibra::spawn(move || drop(TcpStream::connect(addr).unwrap()));
        tcp.accept().unwrap(); // the rescuer's connection
        tcp.accept().unwrap(); // parks until the new one arrives

        let path = sock_path("clone");
        let unix = UnixListener::bind(&path).unwrap();
        let unix2 = unix.try_clone().unwrap();
        unix2.set_nonblocking(true).unwrap();
        let p = path.clone();
        assert_would_block(
            "UnixListener clone",
            move || drop(UnixStream::connect(&p).unwrap()),
            || unix.accept(),
        );
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn from_std_keeps_the_nonblocking_mode() {
    let _w = common::watchdog("from_std_keeps_the_nonblocking_mode");
    rt1().run(|| {
        // TcpListener
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_l.set_nonblocking(true).unwrap();
        let addr = std_l.local_addr().unwrap();
        let l = TcpListener::from_std(std_l).unwrap();
        assert_would_block(
            "TcpListener::from_std",
            move || drop(TcpStream::connect(addr).unwrap()),
            || l.accept(),
        );
        // TcpStream
        l.set_nonblocking(false).unwrap();
        l.accept().unwrap(); // the rescuer's
        let std_s = std::net::TcpStream::connect(addr).unwrap();
        std_s.set_nonblocking(true).unwrap();
        let (server, peer) = l.accept().unwrap();
        assert_eq!(peer, std_s.local_addr().unwrap());
        let s = TcpStream::from_std(std_s).unwrap();
        assert!(o_nonblock(&s));
        assert_would_block(
            "TcpStream::from_std",
            move || (&server).write_all(b"x").unwrap(),
            || (&s).read(&mut [0u8; 1]),
        );
        // UdpSocket
        let std_u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_u.set_nonblocking(true).unwrap();
        let to = std_u.local_addr().unwrap();
        let u = UdpSocket::from_std(std_u).unwrap();
        assert_would_block(
            "UdpSocket::from_std",
            move || drop(UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"x", to)),
            || u.recv(&mut [0u8; 1]),
        );
        // UnixListener
        let path = sock_path("from-std");
        let std_ul = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std_ul.set_nonblocking(true).unwrap();
        let ul = UnixListener::from_std(std_ul).unwrap();
        let p = path.clone();
        assert_would_block(
            "UnixListener::from_std",
            move || drop(UnixStream::connect(&p).unwrap()),
            || ul.accept(),
        );
        std::fs::remove_file(&path).unwrap();
        // UnixStream
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a = UnixStream::from_std(a).unwrap();
        let b = UnixStream::from_std(b).unwrap();
        assert_would_block(
            "UnixStream::from_std",
            move || (&b).write_all(b"x").unwrap(),
            || (&a).read(&mut [0u8; 1]),
        );
        // UnixDatagram
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a = UnixDatagram::from_std(a).unwrap();
        let b = UnixDatagram::from_std(b).unwrap();
        assert_would_block(
            "UnixDatagram::from_std",
            move || {
                b.send(b"x").unwrap();
            },
            || a.recv(&mut [0u8; 1]),
        );
    });
}

#[test]
fn into_std_and_released_fds_carry_the_mode_and_timeouts() {
    let _w = common::watchdog("into_std_and_released_fds_carry_the_mode");
    rt1().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for nonblocking in [false, true] {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(nonblocking).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let std_s = s.into_std().unwrap();
            assert_eq!(o_nonblock(&std_s), nonblocking);
            assert_eq!(std_s.read_timeout().unwrap(), Some(Duration::from_secs(3)));

            let s = TcpStream::connect(addr).unwrap();
            s.set_nonblocking(nonblocking).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(4))).unwrap();
            let fd = OwnedFd::from(s);
            assert_eq!(o_nonblock(&fd), nonblocking);
            let std_s = std::net::TcpStream::from(fd);
            assert_eq!(std_s.write_timeout().unwrap(), Some(Duration::from_secs(4)));

            let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
            l2.set_nonblocking(nonblocking).unwrap();
            assert_eq!(o_nonblock(&l2.into_std().unwrap()), nonblocking);

            let path = sock_path("into-std");
            let ul = UnixListener::bind(&path).unwrap();
            ul.set_nonblocking(nonblocking).unwrap();
            // SAFETY: `into_raw_fd` hands over the only owner of the fd.
            let fd = unsafe { OwnedFd::from_raw_fd(ul.into_raw_fd()) };
            assert_eq!(o_nonblock(&fd), nonblocking);
            std::fs::remove_file(&path).unwrap();

            let (a, _b) = UnixDatagram::pair().unwrap();
            a.set_nonblocking(nonblocking).unwrap();
            assert_eq!(o_nonblock(&a.into_std().unwrap()), nonblocking);
        }
    });
}

/// Converts `t` out to a raw fd, back, out to an `OwnedFd` and back.
fn round_trip<T>(t: T) -> T
where
    T: FromRawFd + IntoRawFd + From<OwnedFd>,
    OwnedFd: From<T>,
{
    let raw = t.into_raw_fd();
    // SAFETY: `raw` came from `into_raw_fd` and has no other owner.
    let t = unsafe { T::from_raw_fd(raw) };
    T::from(OwnedFd::from(t))
}

#[test]
fn fd_round_trips_keep_every_socket_working() {
    let _w = common::watchdog("fd_round_trips_keep_every_socket_working");
    rt1().run(|| {
        // TCP: a parked accept and a parked read (each fd registered with the reactor first)
        // still wake after the round trip: the old registration is gone, a new one is made.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        fibra::spawn(move || drop(TcpStream::connect(addr).unwrap()));
        l.accept().unwrap();
        let l = round_trip(l);
        let client = fibra::spawn(move || TcpStream::connect(addr).unwrap());
        let (server, _) = l.accept().unwrap();
        let client = round_trip(client.join().unwrap());
        let writer = fibra::spawn(move || {
            (&server).write_all(b"1").unwrap();
            server
        });
        let mut buf = [0u8; 1];
        (&client).read_exact(&mut buf).unwrap();
        let server = round_trip(writer.join().unwrap());
        let client = round_trip(client);
        fibra::spawn(move || (&server).write_all(b"2").unwrap());
        (&client).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"2");

        // UDP
        let u = round_trip(UdpSocket::bind("127.0.0.1:0").unwrap());
        let to = u.local_addr().unwrap();
        fibra::spawn(move || drop(UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"u", to)));
        assert_eq!(u.recv(&mut buf).unwrap(), 1);

        // Unix
        let path = sock_path("round-trip");
        let ul = round_trip(UnixListener::bind(&path).unwrap());
        let p = path.clone();
        fibra::spawn(move || drop(UnixStream::connect(&p).unwrap()));
        let (us, _) = ul.accept().unwrap();
        let us = round_trip(us);
        assert_eq!((&us).read(&mut buf).unwrap(), 0); // the client is gone
        std::fs::remove_file(&path).unwrap();
        let (a, b) = UnixDatagram::pair().unwrap();
        let (a, b) = (round_trip(a), round_trip(b));
        fibra::spawn(move || drop(b.send(b"d")));
        assert_eq!(a.recv(&mut buf).unwrap(), 1);
    });
}

#[test]
fn adopted_blocking_fds_park_instead_of_blocking_the_worker() {
    let _w = common::watchdog("adopted_blocking_fds_park");
    rt1().run(|| {
        // A blocking fd from std: were it left blocking, the read would block the only
        // worker, the writer fiber would never run, and the test would hang.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = UnixStream::from(OwnedFd::from(a));
        assert!(o_nonblock(&a));
        // SAFETY: `into_raw_fd` hands over the only owner of the fd.
        let b = unsafe { UnixStream::from_raw_fd(b.into_raw_fd()) };
        fibra::spawn(move || (&b).write_all(b"p").unwrap());
        let mut buf = [0u8; 1];
        (&a).read_exact(&mut buf).unwrap();

        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        let l = TcpListener::from(OwnedFd::from(std_l));
        assert!(o_nonblock(&l));
        fibra::spawn(move || drop(TcpStream::connect(addr).unwrap()));
        l.accept().unwrap();
    });
}

#[test]
fn udp_multicast_round_trip_and_options() {
    let _w = common::watchdog("udp_multicast_round_trip_and_options");
    rt1().run(|| {
        let group = Ipv4Addr::new(239, 255, 20, 20);
        let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        rx.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Out through lo, where the member is (std has no setter for IP_MULTICAST_IF).
        socket2::SockRef::from(&tx)
            .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
            .unwrap();
        assert!(tx.multicast_loop_v4().unwrap());
        assert_eq!(tx.multicast_ttl_v4().unwrap(), 1);
        tx.set_multicast_ttl_v4(2).unwrap();
        assert_eq!(tx.multicast_ttl_v4().unwrap(), 2);
        tx.send_to(b"group", (group, port)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"group"[..], tx.local_addr().unwrap()));

        // After leaving, a group datagram is not delivered: the unicast one sent after it is
        // the first to arrive.
        rx.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST).unwrap();
        assert!(rx.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST).is_err());
        tx.send_to(b"group", (group, port)).unwrap();
        tx.send_to(b"direct", (Ipv4Addr::LOCALHOST, port)).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"direct");

        tx.set_multicast_loop_v4(false).unwrap();
        assert!(!tx.multicast_loop_v4().unwrap());
        assert!(tx
            .join_multicast_v4(&Ipv4Addr::LOCALHOST, &Ipv4Addr::LOCALHOST)
            .is_err());

        let Ok(rx6) = UdpSocket::bind("[::]:0") else {
            eprintln!("skipped the IPv6 part: no IPv6");
            return;
        };
        let group6: Ipv6Addr = "ff02::2020".parse().unwrap();
        match rx6.join_multicast_v6(&group6, 1) {
            Ok(()) => rx6.leave_multicast_v6(&group6, 1).unwrap(),
            Err(e) => eprintln!("skipped IPv6 join: {e}"),
        }
        assert!(rx6.multicast_loop_v6().unwrap());
        rx6.set_multicast_loop_v6(false).unwrap();
        assert!(!rx6.multicast_loop_v6().unwrap());
    });
}

#[test]
fn unix_sockets_by_socket_addr() {
    let _w = common::watchdog("unix_sockets_by_socket_addr");
    rt1().run(|| {
        // Streams on an abstract name (no file to clean up) and on a path.
        let addr = abstract_addr("stream");
        let l = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(
            l.local_addr().unwrap().as_abstract_name(),
            addr.as_abstract_name()
        );
        let a2 = addr.clone();
        let client = fibra::spawn(move || {
            let mut s = UnixStream::connect_addr(&a2).unwrap();
            s.write_all(b"abstract").unwrap();
        });
        let (mut s, _) = l.accept().unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert_eq!(text, "abstract");
        client.join().unwrap();
        assert!(UnixListener::bind_addr(&addr).is_err(), "the name is taken");

        let path = sock_path("by-addr");
        let paddr = SocketAddr::from_pathname(&path).unwrap();
        let l = UnixListener::bind_addr(&paddr).unwrap();
        let _c = UnixStream::connect_addr(&paddr).unwrap();
        l.accept().unwrap();
        std::fs::remove_file(&path).unwrap();
        let nobody = abstract_addr("nobody");
        assert!(UnixStream::connect_addr(&nobody).is_err());

        // Datagrams: bind, send_to and connect by address.
        let server_addr = abstract_addr("dgram-server");
        let server = UnixDatagram::bind_addr(&server_addr).unwrap();
        let client_addr = abstract_addr("dgram-client");
        let client = UnixDatagram::bind_addr(&client_addr).unwrap();
        assert_eq!(client.send_to_addr(b"to", &server_addr).unwrap(), 2);
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to");
        assert_eq!(from.as_abstract_name(), client_addr.as_abstract_name());
        client.connect_addr(&server_addr).unwrap();
        client.send(b"conn").unwrap();
        assert_eq!(server.recv(&mut buf).unwrap(), 4);
        assert_eq!(
            client.peer_addr().unwrap().as_abstract_name(),
            server_addr.as_abstract_name()
        );
    });
}
