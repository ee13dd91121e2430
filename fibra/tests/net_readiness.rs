//! A read that returns fewer bytes than asked emptied the socket, so the next read waits for
//! an edge without first trying a syscall (`Source::do_stream_read`). These tests pin what
//! that shortcut must never cost: an end of stream that arrived with the last bytes, and a
//! plain thread reading a socket whose readiness a fiber cleared.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};
use fibra::os::unix::net::UnixStream;

fn rt() -> fibra::Runtime {
    // One worker: the writer's bytes and its close reach the reactor as one event.
    fibra::Runtime::builder().workers(1).build().unwrap()
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    (a, b)
}

/// The reader parks (registering its socket), the writer sends 10 bytes and closes without a
/// park between, so one edge carries both; the reader's short read must not make it wait
/// for another edge: the end of stream is reported once but lasts.
fn eof_after_a_short_read<S: Read + Write + Send + 'static>(mut writer: S, mut reader: S) {
    let r = fibra::spawn(move || {
        let mut buf = [0u8; 100];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[7u8; 10][..n]);
        let mut total = n;
        loop {
            match reader.read(&mut buf).unwrap() {
                0 => break,
                n => total += n,
            }
        }
        total
    });
    // The reader runs (one worker: as soon as this fiber parks) and parks on its empty socket.
    fibra::sleep(Duration::from_millis(10));
    writer.write_all(&[7u8; 10]).unwrap();
    drop(writer);
    assert_eq!(r.join().unwrap(), 10);
}

#[test]
fn tcp_end_of_stream_after_a_short_read() {
    let _w = common::watchdog("tcp_end_of_stream_after_a_short_read");
    rt().run(|| {
        let (a, b) = tcp_pair();
        eof_after_a_short_read(a, b);
    });
}

#[test]
fn unix_end_of_stream_after_a_short_read() {
    let _w = common::watchdog("unix_end_of_stream_after_a_short_read");
    rt().run(|| {
        let (a, b) = UnixStream::pair().unwrap();
        eof_after_a_short_read(a, b);
    });
}

/// A fiber's short read clears the socket's readiness; a plain thread then reading the same
/// socket waits in poll(2), which updates no readiness word, and must get the bytes that
/// arrive.
#[test]
fn a_plain_thread_reads_after_a_fiber_emptied_the_socket() {
    let _w = common::watchdog("a_plain_thread_reads_after_a_fiber_emptied_the_socket");
    rt().run(|| {
        let (mut a, mut b) = tcp_pair();
        let r = fibra::spawn(move || {
            let mut buf = [0u8; 100];
            assert_eq!(b.read(&mut buf).unwrap(), 3); // parks first, then a short read
            b
        });
        fibra::sleep(Duration::from_millis(10));
        a.write_all(b"abc").unwrap();
        let mut b = r.join().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 100];
            let n = b.read(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        fibra::sleep(Duration::from_millis(20)); // the thread is (very likely) in poll(2)
        a.write_all(b"def").unwrap();
        let got = fibra::run_blocking(move || t.join().unwrap());
        assert_eq!(got, b"def");
    });
}

/// A read that fills its whole buffer proves nothing about what is left: the rest must be
/// read at once, without waiting for an edge (none would come).
#[test]
fn a_full_read_leaves_the_rest_readable() {
    let _w = common::watchdog("a_full_read_leaves_the_rest_readable");
    rt().run(|| {
        let (mut a, mut b) = tcp_pair();
        let r = fibra::spawn(move || {
            let mut buf = [0u8; 4];
            let mut got = Vec::new();
            while got.len() < 10 {
                let n = b.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        fibra::sleep(Duration::from_millis(10));
        a.write_all(b"0123456789").unwrap();
        assert_eq!(r.join().unwrap(), b"0123456789");
    });
}
