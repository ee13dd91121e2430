//! `fibra::os::unix::net`: Unix stream and datagram sockets.

mod common;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use fibra::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

fn rt() -> fibra::Runtime {
    fibra::Runtime::builder().workers(2).build().unwrap()
}

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fibra-test-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn unix_stream_echo_through_a_listener() {
    let _w = common::watchdog("unix_stream_echo_through_a_listener");
    let path = sock_path("echo");
    rt().run(|| {
        let listener = UnixListener::bind(&path).unwrap();
        fibra::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                fibra::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let clients: Vec<_> = (0..20)
            .map(|c| {
                let path = path.clone();
                fibra::spawn(move || {
                    let mut s = UnixStream::connect(&path).unwrap();
                    for i in 0..50 {
                        let msg = format!("{c}:{i}");
                        s.write_all(msg.as_bytes()).unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg.as_bytes());
                    }
                })
            })
            .collect();
        clients.into_iter().for_each(|h| h.join().unwrap());
    });
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unix_pair_large_transfer_and_timeout() {
    let _w = common::watchdog("unix_pair_large_transfer_and_timeout");
    rt().run(|| {
        let (a, mut b) = UnixStream::pair().unwrap();
        let writer = fibra::spawn(move || {
            let data = vec![3u8; 4 << 20];
            (&a).write_all(&data).unwrap();
            a
        });
        let mut got = vec![0u8; 4 << 20];
        b.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&x| x == 3));
        let _a = writer.join().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(
            b.read(&mut [0u8; 1]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

#[test]
fn unix_datagrams_round_trip() {
    let _w = common::watchdog("unix_datagrams_round_trip");
    let path = sock_path("dgram");
    rt().run(|| {
        let server = UnixDatagram::bind(&path).unwrap();
        let echo = fibra::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..50 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let to = from.as_pathname().unwrap().to_owned();
                server.send_to(&buf[..n], to).unwrap();
            }
        });
        let client_path = sock_path("dgram-client");
        let client = UnixDatagram::bind(&client_path).unwrap();
        client.connect(&path).unwrap();
        for i in 0..50u8 {
            client.send(&[i; 3]).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(client.recv(&mut buf).unwrap(), 3);
            assert_eq!(buf[..3], [i; 3]);
        }
        echo.join().unwrap();
        std::fs::remove_file(&client_path).unwrap();
    });
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn connecting_to_nothing_is_an_error() {
    let _w = common::watchdog("connecting_to_nothing_is_an_error");
    rt().run(|| {
        let e = UnixStream::connect(sock_path("nobody")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    });
}
