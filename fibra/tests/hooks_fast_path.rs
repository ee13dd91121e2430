//! The hooks' calls that do not block (feature `hooks`): a blocking-mode call that returns at
//! once counts against the cooperative budget (a client whose replies are always there still
//! lets its worker's other fibers run) while a non-blocking one never yields; a
//! `setsockopt` timeout that changes nothing skips the kernel but never hides a change (a dup's
//! set, a bad value); an accepted socket keeps its listener's timeouts, as Linux's does; a TCP
//! socket's `getsockname`, answered from the table once settled, says what the kernel says.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::watchdog;

fn rt1() -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .build()
        .unwrap()
}

/// A connected pair of std sockets, made inside a fiber (so both are managed).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// `setsockopt(SO_RCVTIMEO)` through libc (so through the hooks) with a raw `timeval`.
fn set_rcvtimeo(fd: i32, sec: i64, usec: i64) -> Result<(), i32> {
    let tv = libc::timeval {
        tv_sec: sec,
        tv_usec: usec,
    };
    // SAFETY: `tv` is a live timeval and the length is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// On one worker, a fiber reading bytes that are already there (each read returns at once,
/// never parks) still lets another fiber run: once per budget, as `fibra::net` does.
#[test]
fn reads_that_never_wait_still_let_the_worker_run_others() {
    let _w = watchdog("reads_that_never_wait_still_let_the_worker_run_others");
    const READS: usize = 20_000;
    let turns = rt1().run(|| {
        let (mut c, mut s) = pair();
        s.write_all(&[7u8; READS]).unwrap(); // all of it queued before the first read
        let stop = Arc::new(AtomicBool::new(false));
        let turns = Arc::new(AtomicUsize::new(0));
        let (st, t) = (stop.clone(), turns.clone());
        let other = fibra::spawn(move || {
            while !st.load(SeqCst) {
                t.fetch_add(1, SeqCst);
                fibra::yield_now();
            }
        });
        let before = turns.load(SeqCst);
        let mut byte = [0u8; 1];
        for _ in 0..READS {
            assert_eq!(c.read(&mut byte).unwrap(), 1);
            assert_eq!(byte[0], 7);
        }
        let during = turns.load(SeqCst) - before;
        stop.store(true, SeqCst);
        other.join().unwrap();
        during
    });
    // 20,000 reads at a budget of 128: ~156 yields. Without them the other fiber would not
    // run at all until the reads ended.
    assert!(turns >= 100, "the other fiber ran {turns} times");
}

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// A caller that sees its socket non-blocking runs its own event loop and may keep
/// thread-local state across its calls (tokio's `block_on`): its calls never yield, even
/// far past the budget.
#[test]
fn non_blocking_calls_never_yield() {
    let _w = watchdog("non_blocking_calls_never_yield");
    rt1().run(|| {
        let (c, mut s) = pair();
        c.set_nonblocking(true).unwrap();
        s.write_all(&[1u8; 4_000]).unwrap();
        let saw_inside = Arc::new(AtomicBool::new(false));
        let seen = saw_inside.clone();
        let other = fibra::spawn(move || seen.store(INSIDE.with(Cell::get), SeqCst));
        INSIDE.with(|i| i.set(true));
        let mut byte = [0u8; 1];
        let (mut read, mut would_block) = (0, 0);
        for _ in 0..2_000 {
            match (&c).read(&mut byte) {
                Ok(1) => read += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => would_block += 1,
                other => panic!("{other:?}"),
            }
        }
        for _ in 0..2_000 {
            let e = (&c).read(&mut [0u8; 4_000]).map(|_| ()).or_else(|e| {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                Ok::<(), std::io::Error>(())
            });
            e.unwrap();
        }
        INSIDE.with(|i| i.set(false));
        assert_eq!((read, would_block), (2_000, 0));
        other.join().unwrap();
        assert!(
            !saw_inside.load(SeqCst),
            "another fiber ran inside the non-blocking loop"
        );
    });
}

/// ureq 2 sets both timeouts to `None` around every request; a set of the value the kernel
/// holds skips the syscall. Every other set reaches the kernel: a new value, a bad value
/// (the kernel's EDOM), and any set on a duplicated fd, whose other end may have changed it.
#[test]
fn timeout_sets_that_change_nothing_skip_the_kernel_but_never_hide_a_change() {
    let _w = watchdog("timeout_sets_that_change_nothing_skip_the_kernel_but_never_hide_a_change");
    rt1().run(|| {
        let (c, _s) = pair();
        let fd = c.as_raw_fd();
        c.set_read_timeout(None).unwrap(); // what a fresh socket holds
        assert_eq!(c.read_timeout().unwrap(), None);
        let t = Duration::from_millis(40);
        c.set_read_timeout(Some(t)).unwrap();
        c.set_read_timeout(Some(t)).unwrap(); // unchanged
        let held = c
            .read_timeout()
            .unwrap()
            .expect("the kernel holds the timeout");
        assert!(
            held >= t && held < t + Duration::from_millis(20),
            "{held:?}"
        );
        assert_eq!(set_rcvtimeo(fd, 0, 2_000_000), Err(libc::EDOM));
        assert_eq!(set_rcvtimeo(fd, 0, -1), Err(libc::EDOM));
        // A dup's set reaches the kernel, which both fds share; the original's set of the value
        // it set before must then reach it too.
        let dup = c.try_clone().unwrap();
        dup.set_read_timeout(None).unwrap();
        assert_eq!(
            c.read_timeout().unwrap(),
            None,
            "one open file, one timeout"
        );
        c.set_read_timeout(Some(t)).unwrap();
        assert!(dup.read_timeout().unwrap().is_some(), "the set was skipped");
        // And the hooks' own deadline follows: the read times out instead of waiting for ever.
        let e = (&c).read(&mut [0u8; 8]).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
    });
}

/// Linux's accepted socket is a copy of its listener, `SO_RCVTIMEO` included: a read on it
/// times out as it would on a plain thread instead of waiting for ever.
#[test]
fn an_accepted_socket_keeps_its_listeners_timeout() {
    let _w = watchdog("an_accepted_socket_keeps_its_listeners_timeout");
    rt1().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_rcvtimeo(l.as_raw_fd(), 0, 40_000).unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert!(s.read_timeout().unwrap().is_some(), "the kernel's copy");
        // Should the read not time out, this writer ends it (after far longer than 40 ms) so
        // that the test fails instead of hanging.
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let rescue = fibra::spawn(move || {
            for _ in 0..200 {
                if d.load(SeqCst) {
                    return;
                }
                fibra::sleep(Duration::from_millis(10));
            }
            (&c).write_all(b"x").unwrap();
        });
        let got = s.read(&mut [0u8; 8]);
        done.store(true, SeqCst);
        rescue.join().unwrap();
        let e = got.expect_err("the read waited past the listener's timeout");
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
    });
}

/// `getsockname` through libc (so through the hooks): the address bytes and their length,
/// into a buffer of `room` bytes.
fn local_hooked(fd: i32, room: usize) -> (Vec<u8>, usize) {
    let mut buf = [0u8; 128];
    let mut len = room as libc::socklen_t;
    // SAFETY: `buf` holds 128 ≥ `room` bytes and `len` is live.
    let r = unsafe { libc::getsockname(fd, buf.as_mut_ptr().cast(), &mut len) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    (buf[..room].to_vec(), len as usize)
}

/// The kernel's own answer, past the hooks (the raw syscall).
fn local_kernel(fd: i32) -> (Vec<u8>, usize) {
    let mut buf = [0u8; 128];
    let mut len: libc::socklen_t = 128;
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_getsockname, fd, buf.as_mut_ptr(), &raw mut len) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    (buf[..128].to_vec(), len as usize)
}

fn assert_same_local(fd: i32, when: &str) {
    let (kernel, klen) = local_kernel(fd);
    for _ in 0..3 {
        // the first call may ask the kernel, the next ones the table
        let (hooked, hlen) = local_hooked(fd, 128);
        assert_eq!((&hooked[..hlen], hlen), (&kernel[..klen], klen), "{when}");
    }
}

/// A TCP socket's `getsockname`, answered from the table once settled, says what the kernel
/// says: after connect, through a short buffer, after a disconnect (`connect(AF_UNSPEC)`) and
/// a reconnect, after the peer's reset, and on an accepted socket.
#[test]
fn getsockname_answers_as_the_kernel_does() {
    let _w = watchdog("getsockname_answers_as_the_kernel_does");
    rt1().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let fd = c.as_raw_fd();
        assert_same_local(fd, "connected");
        let (s, _) = l.accept().unwrap();
        assert_same_local(s.as_raw_fd(), "accepted");
        assert_same_local(l.as_raw_fd(), "listening");
        // A short buffer: the address truncated, its full length reported.
        let (kernel, klen) = local_kernel(fd);
        let (short, len) = local_hooked(fd, 4);
        assert_eq!((short.as_slice(), len), (&kernel[..4], klen));
        // The peer resets the connection (linger 0): the address stays what the kernel says.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a live `linger` of the size passed.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        drop(s);
        let _ = (&c).read(&mut [0u8; 8]); // sees the reset
        assert_same_local(fd, "after the peer's reset");
        // Disconnect, then connect the same socket again: the address changes.
        let unspec = libc::sockaddr {
            sa_family: libc::AF_UNSPEC as libc::sa_family_t,
            sa_data: [0; 14],
        };
        // SAFETY: a live sockaddr of the size passed.
        let r =
            unsafe { libc::connect(fd, &unspec, size_of::<libc::sockaddr>() as libc::socklen_t) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        assert_same_local(fd, "disconnected");
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a live sockaddr_in of the size passed; the socket is in blocking mode, so
        // the hooked connect parks the fiber until it completes.
        let r = unsafe {
            libc::connect(
                fd,
                (&raw const sin).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        let (_s2, _) = l.accept().unwrap();
        assert_same_local(fd, "connected again");
    });
}

/// A duplicated socket's `getsockname` always asks the kernel: a disconnect through the
/// other fd would not reach this one's table entry.
#[test]
fn a_duplicated_sockets_getsockname_follows_the_other_fds_disconnect() {
    let _w = watchdog("a_duplicated_sockets_getsockname_follows_the_other_fds_disconnect");
    rt1().run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _s = l.accept().unwrap();
        assert_same_local(c.as_raw_fd(), "connected");
        let dup = c.try_clone().unwrap();
        let unspec = libc::sockaddr {
            sa_family: libc::AF_UNSPEC as libc::sa_family_t,
            sa_data: [0; 14],
        };
        // SAFETY: a live sockaddr of the size passed.
        let r = unsafe {
            libc::connect(
                dup.as_raw_fd(),
                &unspec,
                size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        assert_same_local(c.as_raw_fd(), "disconnected through the dup");
    });
}
