//! `fibra::net::TcpSocket` and listen backlogs: listeners default to `net.core.somaxconn`
//! (issue 20: 128 dropped SYNs under a burst of connects), a chosen backlog is what the kernel
//! keeps, and the socket options reach the socket before it listens or connects.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use fibra::net::{TcpListener, TcpSocket, TcpStream};
use fibra::os::unix::net::UnixListener;

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(2).build().unwrap()
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A listening TCP socket's queue as the kernel keeps it, from `TCP_INFO`: for a listener,
/// `tcpi_unacked` is the number of connections waiting to be accepted and `tcpi_sacked` the
/// backlog (`sk_max_ack_backlog`), at byte offsets 24 and 28 of `struct tcp_info`.
fn accept_queue(l: &impl AsRawFd) -> (u32, u32) {
    let mut info = [0u8; 104];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most `len` and updates it.
    let r = unsafe {
        libc::getsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", io::Error::last_os_error());
    assert!(len >= 32, "TCP_INFO too short: {len}");
    let word = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap());
    (word(24), word(28))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn bind_listens_with_the_system_maximum() {
    let _w = common::watchdog("bind_listens_with_the_system_maximum");
    rt().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(accept_queue(&l).1, somaxconn());
        // The same for a listener taken over from std, whose backlog is std's (128): the
        // kernel's number is reported, not fibra's.
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(accept_queue(&TcpListener::from_std(std_l).unwrap()).1, 128);
    });
}

#[test]
fn listen_keeps_the_backlog_asked_for_capped_at_somaxconn() {
    let _w = common::watchdog("listen_keeps_the_backlog_asked_for");
    rt().run(|| {
        for (asked, kept) in [(16, 16), (1, 1), (u32::MAX, somaxconn())] {
            let s = TcpSocket::new_v4().unwrap();
            s.bind(loopback()).unwrap();
            let l = s.listen(asked).unwrap();
            assert_eq!(accept_queue(&l).1, kept, "listen({asked})");
        }
    });
}

/// 600 connections complete their handshakes while nobody accepts: with 128 the queue holds
/// only 129 (the kernel drops SYNs, and final ACKs, past a full queue), so on the old default
/// this test hangs until the watchdog fires.
#[test]
fn a_burst_of_connects_fits_the_default_backlog() {
    const CLIENTS: u32 = 600;
    let _w = common::watchdog_for("a_burst_of_connects_fits", Duration::from_secs(60));
    if somaxconn() < CLIENTS {
        eprintln!("skipped: net.core.somaxconn is {} < {CLIENTS}", somaxconn());
        return;
    }
    common::raise_nofile(u64::from(CLIENTS) + 512).unwrap();
    rt().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| fibra::spawn(move || TcpStream::connect(addr).unwrap()))
            .collect();
        let clients: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        // A client's connect returns when it sends the final ACK; the listener queues the
        // connection when it has processed that ACK (possibly later, in ksoftirqd).
        while accept_queue(&l).0 < CLIENTS {
            fibra::sleep(Duration::from_millis(1));
        }
        assert_eq!(accept_queue(&l), (CLIENTS, somaxconn()));
        for c in &clients {
            let (s, peer) = l.accept().unwrap();
            assert!(peer.ip().is_loopback());
            drop((c, s));
        }
        assert_eq!(accept_queue(&l).0, 0);
    });
}

#[test]
fn options_set_before_listen_and_connect_stick() {
    let _w = common::watchdog("options_set_before_listen_and_connect_stick");
    rt().run(|| {
        let s = TcpSocket::new_v4().unwrap();
        assert!(!s.reuseaddr().unwrap() && !s.reuseport().unwrap() && !s.nodelay().unwrap());
        s.set_reuseaddr(true).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_send_buffer_size(1 << 16).unwrap();
        s.set_recv_buffer_size(1 << 16).unwrap();
        assert!(s.reuseaddr().unwrap() && s.nodelay().unwrap());
        // Linux doubles the size asked for (and clamps it to wmem_max / rmem_max).
        assert!(s.send_buffer_size().unwrap() >= 1 << 16);
        assert!(s.recv_buffer_size().unwrap() >= 1 << 16);
        s.bind(loopback()).unwrap();
        let l = s.listen(64).unwrap();

        let c = TcpSocket::new_v4().unwrap();
        c.set_nodelay(true).unwrap();
        c.set_send_buffer_size(1 << 16).unwrap();
        let mut client = c.connect(l.local_addr().unwrap()).unwrap();
        assert!(client.nodelay().unwrap());
        let (mut server, _) = l.accept().unwrap();
        // Linux copies TCP_NODELAY from the listener into the connections it accepts.
        assert!(server.nodelay().unwrap());
        client.write_all(b"built").unwrap();
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"built");
    });
}

#[test]
fn reuseport_lets_two_listeners_share_a_port() {
    let _w = common::watchdog("reuseport_lets_two_listeners_share_a_port");
    rt().run(|| {
        let a = TcpSocket::new_v4().unwrap();
        a.set_reuseport(true).unwrap();
        assert!(a.reuseport().unwrap());
        a.bind(loopback()).unwrap();
        let addr = a.local_addr().unwrap();
        let la = a.listen(16).unwrap();

        let plain = TcpSocket::new_v4().unwrap();
        assert_eq!(
            plain.bind(addr).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );

        let b = TcpSocket::new_v4().unwrap();
        b.set_reuseport(true).unwrap();
        b.bind(addr).unwrap();
        let lb = b.listen(16).unwrap();
        assert_eq!(lb.local_addr().unwrap(), addr);
        // Each connection lands in one of the two queues; together they hold all of them.
        let clients: Vec<_> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // (Each queues once the listener has processed the client's final ACK.)
        while accept_queue(&la).0 + accept_queue(&lb).0 < 8 {
            fibra::sleep(Duration::from_millis(1));
        }
        assert_eq!(accept_queue(&la).0 + accept_queue(&lb).0, 8);
        drop(clients);
    });
}

#[test]
fn only_v6_decides_whether_ipv4_clients_get_in() {
    let _w = common::watchdog("only_v6_decides_whether_ipv4_clients_get_in");
    rt().run(|| {
        for only_v6 in [true, false] {
            let Ok(s) = TcpSocket::new_v6() else {
                eprintln!("skipped: no IPv6");
                return;
            };
            s.set_only_v6(only_v6).unwrap();
            assert_eq!(s.only_v6().unwrap(), only_v6);
            if s.bind("[::]:0".parse().unwrap()).is_err() {
                eprintln!("skipped: cannot bind [::]");
                return;
            }
            let port = s.local_addr().unwrap().port();
            let _l = s.listen(16).unwrap();
            let v4 = TcpStream::connect(("127.0.0.1", port));
            if only_v6 {
                assert_eq!(v4.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
            } else {
                assert!(v4.is_ok(), "a dual-stack listener refused IPv4: {v4:?}");
            }
        }
        assert!(TcpSocket::new_v4().unwrap().set_only_v6(true).is_err());
    });
}

#[test]
fn connect_reports_refusal_and_works_on_a_plain_thread() {
    let _w = common::watchdog("connect_reports_refusal_and_works_on_a_plain_thread");
    // A port nobody listens on: bound, never listening.
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind(loopback()).unwrap();
    let closed_addr = closed.local_addr().unwrap();
    rt().run(move || {
        let err = TcpSocket::new_v4()
            .unwrap()
            .connect(closed_addr)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    });
    // Outside any runtime the same calls block the thread, like std's.
    let s = TcpSocket::new_v4().unwrap();
    s.bind(loopback()).unwrap();
    let l = s.listen(4).unwrap();
    let c = TcpSocket::new_v4()
        .unwrap()
        .connect(l.local_addr().unwrap())
        .unwrap();
    let (srv, peer) = l.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(srv.peer_addr().unwrap(), c.local_addr().unwrap());
}

/// A non-blocking Unix connect: `Ok` while the listener's queue has room, `WouldBlock` once it
/// is full (fibra's own `connect` would wait instead).
fn unix_connect_nonblocking(path: &std::path::Path) -> io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::UNIX,
        socket2::Type::STREAM.nonblocking(),
        None,
    )?;
    s.connect(&socket2::SockAddr::unix(path)?)?;
    Ok(s)
}

fn sock_path(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("fibra-test-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn unix_listeners_keep_their_backlog() {
    let _w = common::watchdog("unix_listeners_keep_their_backlog");
    rt().run(|| {
        // Linux lets a Unix listener queue backlog + 1 connections.
        let path = sock_path("backlog4");
        let l = UnixListener::bind_with_backlog(&path, 4).unwrap();
        let mut queued = Vec::new();
        let full = loop {
            match unix_connect_nonblocking(&path) {
                Ok(s) => queued.push(s),
                Err(e) => break e,
            }
            assert!(queued.len() <= 5, "the backlog of 4 was not applied");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(queued.len(), 5);
        // Accepting one makes room for one more.
        l.accept().unwrap();
        queued.push(unix_connect_nonblocking(&path).unwrap());
        std::fs::remove_file(&path).unwrap();

        // The default is somaxconn, far above std's 128.
        let n = somaxconn().min(300) as usize;
        let path = sock_path("backlog-default");
        let _l = UnixListener::bind(&path).unwrap();
        let many: Vec<_> = (0..n)
            .map(|_| unix_connect_nonblocking(&path).unwrap())
            .collect();
        assert_eq!(many.len(), n);
        std::fs::remove_file(&path).unwrap();
    });
}
