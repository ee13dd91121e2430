//! Ending a session while fibers are parked in `accept` and `read` returns, unwinds them
//! (their sockets' destructors run) and leaves no fd open: not a socket, not a poller.
//!
//! One `#[test]` in a binary of its own: it counts the process's open fds.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};

struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn shutdown_with_fibers_parked_on_sockets_closes_every_fd() {
    let _w = common::watchdog_for("shutdown_parked_on_sockets", Duration::from_secs(30));
    // A first session warms the process-wide descriptors that outlive any session (the stack
    // pool's cached pidfd, sys/linux/mem.rs); the second one is counted.
    session_parked_on_sockets();
    let before = common::open_fds();
    session_parked_on_sockets();
    let after = common::open_fds();
    if after != before {
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            println!(
                "open: {:?} -> {:?}",
                e.file_name(),
                std::fs::read_link(e.path())
            );
        }
    }
    assert_eq!(after, before, "the session left fds open");
}

fn session_parked_on_sockets() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let idle_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut spawned = 0;
        // One fiber parked in accept on a listener nobody connects to.
        {
            let guard = DropCount(dropped.clone());
            let parked = parked.clone();
            fibra::spawn(move || {
                let _guard = guard;
                parked.fetch_add(1, SeqCst);
                let _ = idle_listener.accept();
            });
            spawned += 1;
        }
        // Connections whose both ends park in read (one with a long timeout).
        for i in 0..20 {
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            if i % 2 == 0 {
                server
                    .set_read_timeout(Some(Duration::from_secs(3600)))
                    .unwrap();
            }
            for mut s in [client, server] {
                let guard = DropCount(dropped.clone());
                let parked = parked.clone();
                fibra::spawn(move || {
                    let _guard = guard;
                    parked.fetch_add(1, SeqCst);
                    let _ = s.read(&mut [0u8; 16]);
                });
                spawned += 1;
            }
        }
        while parked.load(SeqCst) != spawned {
            fibra::sleep(Duration::from_millis(1));
        }
        fibra::sleep(Duration::from_millis(20)); // let the last ones reach their park
        assert_eq!(dropped.load(SeqCst), 0);
    });
    assert_eq!(dropped.load(SeqCst), 41, "every parked fiber was unwound");
}
