//! A listener in non-blocking mode returns `EMFILE` at once instead of backing off until a
//! descriptor frees, as `std` does (issue 20). The old code slept in the back-off for as long
//! as the process stayed out of descriptors: here, for ever, so the watchdog fails it.
//!
//! One `#[test]` in a binary of its own: it lowers `RLIMIT_NOFILE` for the whole process.

mod common;

use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};
use fibra::os::unix::net::{UnixListener, UnixStream};

fn set_soft_nofile(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers for both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let old = lim.rlim_cur;
        lim.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

#[test]
fn nonblocking_accept_returns_emfile_at_once() {
    let _w = common::watchdog_for("nonblocking_accept_returns_emfile", Duration::from_secs(30));
    let path = std::env::temp_dir().join(format!("fibra-emfile-nb-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // No monitor: its stall reports open files in /proc (see net_emfile.rs).
    let rt = fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .build()
        .unwrap();
    rt.run(|| {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(&path).unwrap();
        // A connection waits in each backlog, so accept has one to take.
        let _c1 = TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        let _c2 = UnixStream::connect(&path).unwrap();
        tcp.set_nonblocking(true).unwrap();
        unix.set_nonblocking(true).unwrap();
        let original = set_soft_nofile(common::max_fd() + 1 + 8);
        let mut filler = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            filler.push(f);
        }
        let tcp_err = tcp.accept().map(drop);
        let unix_err = unix.accept().map(drop);
        drop(filler);
        set_soft_nofile(original);
        for (what, r) in [("tcp", tcp_err), ("unix", unix_err)] {
            let e = r.expect_err(what);
            assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{what}: {e}");
        }
        // Descriptors are back: the waiting connections are accepted (parking, in case a
        // final ACK is still being processed).
        tcp.set_nonblocking(false).unwrap();
        unix.set_nonblocking(false).unwrap();
        tcp.accept().unwrap();
        unix.accept().unwrap();
    });
    std::fs::remove_file(&path).unwrap();
}
