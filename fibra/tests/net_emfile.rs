//! A listener out of file descriptors (`EMFILE`) backs off and keeps serving: `accept` neither
//! fails nor spins, and connections are accepted again once descriptors are freed.
//!
//! One `#[test]` in a binary of its own: it lowers `RLIMIT_NOFILE` for the whole process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};

const CLIENTS: usize = 16;

fn set_soft_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers for both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

fn soft_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur
}

#[test]
fn accept_backs_off_on_emfile_and_recovers() {
    let _w = common::watchdog_for("accept_backs_off_on_emfile", Duration::from_secs(60));
    let original = soft_nofile();
    // No monitor: a stall report reads /proc, and the fd it opens and closes again while the
    // process is starved would let one connection in (seen in CI when the filling took >10 ms).
    let rt = fibra::Runtime::builder()
        .workers(2)
        .monitor(false)
        .build()
        .unwrap();
    let accepted = rt.run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The clients connect first: the kernel completes their handshakes into the backlog.
        let clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        // Room for exactly 2 × CLIENTS more fds above the highest one now open (plus whatever
        // holes lie below it, which depend on what the test harness inherited); the fillers
        // take all of it, so the process is out of descriptors. The last few fillers are the
        // ballast given back later.
        set_soft_nofile(common::max_fd() + 1 + 2 * CLIENTS as u64);
        let mut filler = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            filler.push(f);
        }
        assert!(filler.len() >= CLIENTS, "too few fds to play with");
        let ballast = filler.split_off(filler.len() - CLIENTS);
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let accepted = accepted.clone();
            fibra::spawn(move || {
                let mut conns = Vec::new();
                while conns.len() < CLIENTS {
                    let (s, _) = listener.accept()?;
                    conns.push(s);
                    accepted.fetch_add(1, SeqCst);
                }
                Ok::<_, std::io::Error>(conns.len())
            })
        };
        fibra::sleep(Duration::from_millis(200));
        let while_starved = accepted.load(SeqCst);
        assert_eq!(while_starved, 0, "accepted connections with no fds free");
        assert!(!acceptor.is_finished(), "accept gave up on EMFILE");
        drop(ballast); // descriptors come back: the acceptor resumes within its back-off
        let n = acceptor.join().unwrap().unwrap();
        set_soft_nofile(original);
        drop((clients, filler));
        n
    });
    set_soft_nofile(original);
    assert_eq!(accepted, CLIENTS);
}
