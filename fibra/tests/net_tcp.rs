//! `fibra::net` TCP: echo round trips, timeouts, resets, concurrent readers and writers, fd
//! reuse, and the plain-thread fallback.

mod common;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::net::{TcpListener, TcpStream};

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn echo_round_trips_on_two_workers() {
    let _w = common::watchdog("echo_round_trips_on_two_workers");
    let total = rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        common::echo_clients(addr, 50, 100)
    });
    assert_eq!(total, common::echo_bytes(50, 100));
}

#[test]
fn large_transfer_with_reader_and_writer_fibers() {
    let _w = common::watchdog("large_transfer_with_reader_and_writer_fibers");
    const LEN: usize = 8 << 20; // far beyond the socket buffers: both sides must park
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        let s = Arc::new(TcpStream::connect(addr).unwrap());
        let writer = {
            let s = s.clone();
            fibra::spawn(move || {
                let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
                (&*s).write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut got = Vec::with_capacity(LEN);
        (&*s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    });
}

#[test]
fn try_clone_reads_while_the_original_writes() {
    let _w = common::watchdog("try_clone_reads_while_the_original_writes");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        let mut w = TcpStream::connect(addr).unwrap();
        let mut r = w.try_clone().unwrap();
        assert_ne!(w.as_raw_fd(), r.as_raw_fd());
        let reader = fibra::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            r.read_exact(&mut buf).unwrap();
            buf
        });
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 13) as u8).collect();
        w.write_all(&data).unwrap();
        assert_eq!(reader.join().unwrap(), data);
    });
}

#[test]
fn read_timeout_fires() {
    let _w = common::watchdog("read_timeout_fires");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_s, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(30)));
        let t = Instant::now();
        let e = c.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t.elapsed() >= Duration::from_millis(30));
        // The worker stayed free meanwhile, and the stream still works afterwards.
        assert_eq!(
            c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    });
}

#[test]
fn write_timeout_fires_when_the_peer_never_reads() {
    let _w = common::watchdog("write_timeout_fires_when_the_peer_never_reads");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_s, _) = listener.accept().unwrap();
        c.set_write_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let t = Instant::now();
        let e = loop {
            if let Err(e) = c.write(&chunk) {
                break e;
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn a_timeout_does_not_stall_other_fibers() {
    let _w = common::watchdog("a_timeout_does_not_stall_other_fibers");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_s, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let waiter = fibra::spawn(move || (&c).read(&mut [0u8; 1]).map_err(|e| e.kind()));
        // One worker: this fiber runs while the other is parked on the socket.
        let mut ran = 0;
        for _ in 0..10 {
            fibra::yield_now();
            ran += 1;
        }
        assert_eq!(ran, 10);
        assert_eq!(waiter.join().unwrap(), Err(io::ErrorKind::WouldBlock));
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let _w = common::watchdog("connect_to_a_closed_port_is_refused");
    rt(1).run(|| {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let e = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        let e = TcpStream::connect("no-such-host.invalid:80").unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::WouldBlock);
    });
}

/// Closes `s` with an RST instead of a FIN (SO_LINGER with a zero timeout).
fn reset(s: std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(s);
}

#[test]
fn peer_reset_is_an_io_error() {
    let _w = common::watchdog("peer_reset_is_an_io_error");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Reset while the fibra side is parked in `read`.
        let c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let reader = fibra::spawn(move || {
            let r = s.read(&mut [0u8; 64]);
            let w = (0..64).map(|_| s.write(&[1u8; 1024])).find(|r| r.is_err());
            (r.map_err(|e| e.kind()), w.map(|w| w.unwrap_err().kind()))
        });
        fibra::sleep(Duration::from_millis(20));
        reset(c.into_std().unwrap());
        let (read, write) = reader.join().unwrap();
        assert_eq!(read, Err(io::ErrorKind::ConnectionReset));
        assert!(write.is_some(), "writes after a reset must fail");
    });
}

#[test]
fn accept_and_streams_work_on_plain_threads() {
    let _w = common::watchdog("accept_and_streams_work_on_plain_threads");
    // No runtime at all: the types fall back to blocking the thread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    server.join().unwrap();
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(c.read(&mut back).unwrap(), 0); // the server closed
}

#[test]
fn std_client_talks_to_a_fibra_server() {
    let _w = common::watchdog("std_client_talks_to_a_fibra_server");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        common::spawn_echo_server(listener);
        // A std client on a pool thread, blocking as usual.
        let echoed = fibra::run_blocking(|| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"from std").unwrap();
            let mut b = [0u8; 8];
            c.read_exact(&mut b).unwrap();
            b
        });
        assert_eq!(&echoed, b"from std");
    });
}

#[test]
fn reused_fds_never_misroute_data_or_wake_ups() {
    let _w = common::watchdog("reused_fds_never_misroute_data_or_wake_ups");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut reused = 0;
        let mut last_fd = None;
        for round in 0..200u32 {
            let mut c = TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().unwrap();
            if last_fd == Some(s.as_raw_fd()) {
                reused += 1;
            }
            last_fd = Some(s.as_raw_fd());
            // The server side registers (parks in read), then the data arrives and the
            // socket is closed, possibly with an event still queued for its old token.
            let reader = fibra::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).map(|()| u32::from_le_bytes(buf))
            });
            fibra::yield_now();
            c.write_all(&round.to_le_bytes()).unwrap();
            assert_eq!(reader.join().unwrap().unwrap(), round);
            c.write_all(b"late").unwrap(); // an edge for a closed socket
        }
        assert!(
            reused > 0,
            "the kernel never reused an fd: the test proved nothing"
        );
    });
}

#[test]
fn nonblocking_mode_returns_would_block() {
    let _w = common::watchdog("nonblocking_mode_returns_would_block");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        c.set_nonblocking(true).unwrap();
        assert_eq!(
            (&c).read(&mut [0u8; 1]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

/// A socket first used (registered) by a fiber on one worker, then handed to a fiber on the
/// other worker: readiness arrives at the first worker's poller and still wakes the fiber.
#[test]
fn a_socket_moved_to_another_worker_still_wakes_its_fiber() {
    let _w = common::watchdog("a_socket_moved_to_another_worker_still_wakes_its_fiber");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Register `server` with this worker's poller: a read that times out.
        server
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        assert!((&server).read(&mut [0u8; 1]).is_err());
        server.set_read_timeout(None).unwrap();
        let here = std::thread::current().name().map(str::to_owned);
        let (tx, rx) = fibra::chan::bounded::<TcpStream>(1);
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let started = started.clone();
            fibra::spawn(move || {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
                let mut s = rx.recv().unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                (buf, std::thread::current().name().map(str::to_owned))
            })
        };
        // This fiber keeps its worker busy without yielding, so only the other worker can
        // start the new one (by stealing it).
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        tx.send(server).unwrap();
        fibra::sleep(Duration::from_millis(10)); // let it park on the socket
        client.write_all(b"moved").unwrap();
        let (buf, there) = reader.join().unwrap();
        assert_eq!(&buf, b"moved");
        assert_ne!(there, here);
    });
}

/// A socket registered in one session and used in a later one fails clearly, never hangs.
#[test]
fn a_socket_outliving_its_session_errors_instead_of_hanging() {
    let _w = common::watchdog("a_socket_outliving_its_session_errors_instead_of_hanging");
    let (listener, _client) = rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        assert!((&s).read(&mut [0u8; 1]).is_err()); // registered now
        (s, client)
    });
    let e = rt(1).run(|| (&listener).read(&mut [0u8; 1]).unwrap_err());
    assert_eq!(e.kind(), io::ErrorKind::Other, "{e}");
    // On a plain thread it still works (poll(2) fallback).
    listener
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    assert_eq!(
        (&listener).read(&mut [0u8; 1]).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

/// `connect_timeout` against a listener whose accept queue is full (the kernel drops further
/// SYNs, so the handshake never completes) fails with `TimedOut`.
#[test]
fn connect_timeout_fires_when_the_handshake_stalls() {
    let _w = common::watchdog("connect_timeout_fires_when_the_handshake_stalls");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening fd; re-listening only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let kind = rt(1).run(|| {
        let mut held = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => held.push(s), // fills the accept queue
                Err(e) => return Some(e.kind()),
            }
        }
        None
    });
    assert_eq!(kind, Some(io::ErrorKind::TimedOut));
    drop(listener);
}
