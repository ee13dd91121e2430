//! I/O keeps moving past a stuck worker: a socket registered with the reactor of a worker
//! that then blocks in a syscall is polled by the monitor, so the fiber of another worker that
//! reads it is woken while the first worker is still stuck.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fibra::net::TcpListener;

mod common;
use common::watchdog;

const BLOCK_FOR: Duration = Duration::from_secs(2);

#[test]
fn a_stuck_workers_reactor_is_polled_for_the_others() {
    let _w = watchdog("a_stuck_workers_reactor_is_polled_for_the_others");
    let rt = fibra::Runtime::builder()
        .workers(2)
        .on_stall(|_| {}) // expected: keep the test's output clean
        .build()
        .unwrap();
    let (got_during_block, reader_thread, blocker_thread) = rt.run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The peer: a plain thread that writes once the blocker is blocking.
        let peer = thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            thread::sleep(BLOCK_FOR / 10);
            s.write_all(b"ping").unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest); // until the reader is done
        });
        let (mut stream, _) = listener.accept().unwrap();
        // Register the socket with this worker's reactor: a read that has to wait (and times
        // out, leaving the registration in place).
        stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert!(stream.read(&mut buf).is_err(), "nothing was sent yet");
        stream.set_read_timeout(None).unwrap();
        let blocker_thread = thread::current().id();
        let blocked = Arc::new(AtomicBool::new(true));
        let started = Arc::new(AtomicBool::new(false));
        let (b, s) = (blocked.clone(), started.clone());
        let reader = fibra::spawn(move || {
            s.store(true, SeqCst);
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
            (b.load(SeqCst), thread::current().id())
        });
        // Stay busy on this worker until the reader has started, so it starts (and stays) on
        // the other one.
        while !started.load(SeqCst) {
            std::hint::spin_loop();
        }
        thread::sleep(BLOCK_FOR); // this worker is stuck in a syscall
        blocked.store(false, SeqCst);
        let (got_during_block, reader_thread) = reader.join().unwrap();
        peer.join().unwrap();
        (got_during_block, reader_thread, blocker_thread)
    });
    assert_ne!(
        reader_thread, blocker_thread,
        "the reader ran on the other worker"
    );
    assert!(
        got_during_block,
        "the reader only woke once the stuck worker came back"
    );
}
