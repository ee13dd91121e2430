//! The libc hooks (feature `hooks`) under unchanged `std` code: blocking `std::net` sockets
//! and `std::thread::sleep` park their fiber, not the worker; plain threads and other fds
//! pass through; the fd table survives close, reuse and dup; timeouts and the caller's
//! blocking mode are kept. Every check counts; none times.
#![cfg(all(feature = "hooks", target_os = "linux"))]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::watchdog;

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder().workers(workers).build().unwrap()
}

/// `fcntl(F_GETFL)` as the kernel answers it, past the hooks.
fn kernel_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL takes no argument; a bad fd returns -1.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFL) as i32 }
}

/// `fcntl(F_GETFL)` through libc, i.e. through the hooks.
fn user_flags(fd: i32) -> i32 {
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

fn no_spares() {
    let m = fibra::debug::metrics().unwrap();
    assert_eq!(
        m.spares_started, 0,
        "a worker was blocked: the monitor added a thread"
    );
}

#[test]
fn std_tcp_echo_between_fibers() {
    let _w = watchdog("std_tcp_echo_between_fibers");
    const CONNS: usize = 50;
    const ROUNDS: usize = 200;
    let echoed = rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = fibra::spawn(move || {
            let handlers: Vec<_> = (0..CONNS)
                .map(|_| {
                    let (mut s, _) = listener.accept().unwrap();
                    fibra::spawn(move || {
                        let mut buf = [0u8; 64];
                        let mut total = 0;
                        loop {
                            let n = s.read(&mut buf).unwrap();
                            if n == 0 {
                                return total;
                            }
                            s.write_all(&buf[..n]).unwrap();
                            total += n;
                        }
                    })
                })
                .collect();
            handlers
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|c| {
                fibra::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let mut got = 0;
                    for r in 0..ROUNDS {
                        let msg = format!("{c}:{r};");
                        s.write_all(msg.as_bytes()).unwrap();
                        let mut back = vec![0u8; msg.len()];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg.as_bytes());
                        got += back.len();
                    }
                    got
                })
            })
            .collect();
        let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        let served = server.join().unwrap();
        assert_eq!(sent, served);
        no_spares();
        sent
    });
    assert!(echoed > CONNS * ROUNDS * 4);
}

#[test]
fn ten_thousand_std_sleepers_on_two_workers() {
    let _w = watchdog("ten_thousand_std_sleepers_on_two_workers");
    const N: usize = 10_000;
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    rt(2).run(move || {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let d = d.clone();
                fibra::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    d.fetch_add(1, SeqCst);
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        let m = fibra::debug::metrics().unwrap();
        assert_eq!(m.workers.iter().filter(|w| w.active).count(), 2);
        no_spares();
    });
    assert_eq!(done.load(SeqCst), N);
}

/// A sleep (or read) parks only its fiber: another fiber of the one worker runs meanwhile.
#[test]
fn a_hooked_sleep_lets_the_worker_run_others() {
    let _w = watchdog("a_hooked_sleep_lets_the_worker_run_others");
    rt(1).run(|| {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let other = fibra::spawn(move || r.store(true, SeqCst));
        std::thread::sleep(Duration::from_millis(20));
        assert!(ran.load(SeqCst), "the sleep blocked the only worker");
        other.join().unwrap();
    });
}

#[test]
fn hooks_false_turns_them_off() {
    let _w = watchdog("hooks_false_turns_them_off");
    let rt = fibra::Runtime::builder()
        .workers(1)
        .hooks(false)
        .monitor(false)
        .build()
        .unwrap();
    rt.run(|| {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let other = fibra::spawn(move || r.store(true, SeqCst));
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !ran.load(SeqCst),
            "hooks(false): the sleep blocks the worker"
        );
        other.join().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            kernel_flags(l.as_raw_fd()) & libc::O_NONBLOCK,
            0,
            "not managed"
        );
    });
    // The same binary, another runtime: on again.
    rt_on_again();
}

fn rt_on_again() {
    rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_ne!(kernel_flags(l.as_raw_fd()) & libc::O_NONBLOCK, 0, "managed");
    });
}

#[test]
fn plain_threads_pass_through() {
    let _w = watchdog("plain_threads_pass_through");
    rt(1).run(|| {
        let t = std::thread::spawn(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            assert_eq!(kernel_flags(l.as_raw_fd()) & libc::O_NONBLOCK, 0);
            let addr = l.local_addr().unwrap();
            let c = TcpStream::connect(addr).unwrap();
            assert_eq!(kernel_flags(c.as_raw_fd()) & libc::O_NONBLOCK, 0);
            let (mut s, _) = l.accept().unwrap();
            assert_eq!(kernel_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            let e = s.read(&mut [0u8; 4]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
            std::thread::sleep(Duration::from_millis(1));
        });
        t.join().unwrap();
        // A pool thread is a plain thread too.
        let blocking = fibra::run_blocking(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            kernel_flags(l.as_raw_fd()) & libc::O_NONBLOCK
        });
        assert_eq!(blocking, 0);
    });
}

#[test]
fn o_nonblock_stays_invisible() {
    let _w = watchdog("o_nonblock_stays_invisible");
    rt(2).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        for fd in [l.as_raw_fd(), c.as_raw_fd(), s.as_raw_fd()] {
            assert_ne!(
                kernel_flags(fd) & libc::O_NONBLOCK,
                0,
                "non-blocking underneath"
            );
            assert_eq!(
                user_flags(fd) & libc::O_NONBLOCK,
                0,
                "blocking for its owner"
            );
        }
        // The owner's own switch (ioctl FIONBIO) is seen, and honoured.
        let mut s = s;
        s.set_nonblocking(true).unwrap();
        assert_ne!(user_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
        assert_eq!(
            s.read(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        s.set_nonblocking(false).unwrap();
        assert_eq!(user_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
        assert_ne!(kernel_flags(s.as_raw_fd()) & libc::O_NONBLOCK, 0);
        // fcntl(F_SETFL) likewise.
        let fd = s.as_raw_fd();
        // SAFETY: F_SETFL with an int, on our fd.
        unsafe { libc::fcntl(fd, libc::F_SETFL, user_flags(fd) | libc::O_NONBLOCK) };
        assert_ne!(user_flags(fd) & libc::O_NONBLOCK, 0);
        assert_eq!(
            s.read(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFL, user_flags(fd) & !libc::O_NONBLOCK) };
        assert_eq!(user_flags(fd) & libc::O_NONBLOCK, 0);
        assert_ne!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
        // Blocking again: a read parks until the peer writes.
        let mut c = c;
        let writer = fibra::spawn(move || {
            fibra::sleep(Duration::from_millis(5));
            c.write_all(b"ping").unwrap();
            c
        });
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        writer.join().unwrap();
    });
}

#[test]
fn set_read_timeout_fires_and_parks_only_the_fiber() {
    let _w = watchdog("set_read_timeout_fires_and_parks_only_the_fiber");
    rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert!(c.read_timeout().unwrap().is_some()); // the kernel rounds it to its tick
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let other = fibra::spawn(move || r.store(true, SeqCst));
        let e = c.read(&mut [0u8; 8]).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(ran.load(SeqCst), "the read blocked the only worker");
        other.join().unwrap();
        // Write timeout: fill the socket until the write times out.
        c.set_write_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let chunk = vec![0u8; 1 << 16];
        let e = loop {
            if let Err(e) = c.write(&chunk) {
                break e;
            }
        };
        assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e:?}"
        );
    });
}

#[test]
fn fd_reuse_and_dup_never_misroute() {
    let _w = watchdog("fd_reuse_and_dup_never_misroute");
    rt(2).run(|| {
        let path = std::env::temp_dir().join(format!("fibra-hooks-{}", std::process::id()));
        std::fs::write(&path, b"file contents").unwrap();
        for _ in 0..100 {
            // A managed socket, closed; the file opened next gets its number.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let fd = l.as_raw_fd();
            drop(l);
            let mut f = std::fs::File::open(&path).unwrap();
            assert_eq!(f.as_raw_fd(), fd, "the kernel reuses the lowest number");
            assert_eq!(kernel_flags(fd) & libc::O_NONBLOCK, 0);
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            assert_eq!(text, "file contents");
            // A pipe in the reused slot stays the caller's: blocking read of written data.
            drop(f);
        }
        // dup (std's try_clone is F_DUPFD_CLOEXEC) of a managed socket is managed: its
        // reads park and see the same stream.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let mut s2 = s.try_clone().unwrap();
        assert_ne!(kernel_flags(s2.as_raw_fd()) & libc::O_NONBLOCK, 0);
        assert_eq!(user_flags(s2.as_raw_fd()) & libc::O_NONBLOCK, 0);
        drop(s); // closing one leaves the other managed and registered
        let reader = fibra::spawn(move || {
            let mut buf = [0u8; 5];
            s2.read_exact(&mut buf).unwrap();
            buf
        });
        fibra::sleep(Duration::from_millis(5));
        c.write_all(b"hello").unwrap();
        assert_eq!(&reader.join().unwrap(), b"hello");
        // dup2 of a file onto a managed socket's number: the number is the file's now.
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: dup2 of two fds we own; `l2`'s fd is replaced (and owned by `l2` still,
        // which closes the file at drop).
        let got = unsafe { libc::dup2(f.as_raw_fd(), l2.as_raw_fd()) };
        assert_eq!(got, l2.as_raw_fd());
        let mut buf = [0u8; 4];
        // SAFETY: read into a live buffer from the file now at that number.
        let n = unsafe { libc::read(l2.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        assert_eq!((n, &buf), (4, b"file"));
        assert_eq!(user_flags(l2.as_raw_fd()) & libc::O_NONBLOCK, 0);
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn errno_survives_a_park() {
    let _w = watchdog("errno_survives_a_park");
    rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        // Another fiber of this worker sets errno while we are parked.
        let noisy = fibra::spawn(move || {
            for _ in 0..10 {
                // SAFETY: close(-1) only fails (EBADF).
                unsafe { libc::close(-1) };
                fibra::yield_now();
            }
            c.write_all(b"x").unwrap();
            c
        });
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = 4242 };
        let mut b = [0u8; 1];
        // SAFETY: a live buffer of one byte.
        let n = unsafe { libc::read(s.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
        // SAFETY: this thread's errno.
        assert_eq!(unsafe { *libc::__errno_location() }, 4242);
        noisy.join().unwrap();
        let _ = s.read(&mut b);
    });
}

#[test]
fn poll_and_connect_timeout_park() {
    let _w = watchdog("poll_and_connect_timeout_park");
    rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // std's connect_timeout: non-blocking connect, then poll(2).
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let (s, _) = l.accept().unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let writer = fibra::spawn(move || {
            r.store(true, SeqCst);
            c.write_all(b"p").unwrap();
            c
        });
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 5_000) };
        assert_eq!(n, 1);
        assert_ne!(pfd.revents & libc::POLLIN, 0);
        assert!(ran.load(SeqCst));
        let _c = writer.join().unwrap(); // kept open: its end must not read as EOF
                                         // A timeout with nothing ready: 0.
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLOUT | libc::POLLIN,
            revents: 0,
        };
        let mut s = s;
        let mut one = [0u8; 1];
        s.read_exact(&mut one).unwrap();
        pfd.events = libc::POLLIN;
        // SAFETY: one live pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10) }, 0);
        // An fd the reactor does not know (a pipe): the blocking pool waits, the worker runs.
        let mut fds = [0; 2];
        // SAFETY: a live array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let w = fds[1];
        let writer = fibra::spawn(move || {
            r.store(true, SeqCst);
            // SAFETY: one byte from a live buffer to our pipe.
            unsafe { libc::write(w, b"z".as_ptr().cast(), 1) };
        });
        let mut pfd = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5_000) }, 1);
        assert!(ran.load(SeqCst));
        writer.join().unwrap();
        // SAFETY: closing our pipe.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    });
}

#[test]
fn getaddrinfo_runs_off_the_worker() {
    let _w = watchdog("getaddrinfo_runs_off_the_worker");
    rt(1).run(|| {
        let addrs: Vec<_> = ("localhost", 80).to_socket_addrs().unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()));
    });
}

/// Shutdown with a fiber parked in a hooked `accept`: the forced unwind stops at the hook
/// (nothing unwinds through a C-ABI frame), the call fails, the fiber returns, and the
/// session ends.
#[test]
fn shutdown_with_a_fiber_parked_in_a_hook() {
    let _w = watchdog("shutdown_with_a_fiber_parked_in_a_hook");
    let failed = Arc::new(AtomicUsize::new(0));
    let f = failed.clone();
    rt(2).run(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, rx) = fibra::chan::bounded(1);
        let f2 = f.clone();
        fibra::spawn(move || {
            tx.send(()).unwrap();
            if l.accept().is_err() {
                f2.fetch_add(1, SeqCst);
            }
        });
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        fibra::spawn(move || {
            let _ = c.read(&mut [0u8; 1]);
            f.fetch_add(1, SeqCst);
            drop(l2);
        });
        rx.recv().unwrap();
        fibra::sleep(Duration::from_millis(5)); // both are parked in their hooks now
    });
    assert_eq!(failed.load(SeqCst), 2);
}

/// `JoinHandle::cancel` of a fiber parked in a hooked read: the read fails (`ECANCELED`), and
/// the fiber unwinds at its next fibra park.
#[test]
fn cancel_interrupts_a_hooked_read() {
    let _w = watchdog("cancel_interrupts_a_hooked_read");
    rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let reached = Arc::new(AtomicBool::new(false));
        let r = reached.clone();
        let h = fibra::spawn(move || {
            let e = c.read(&mut [0u8; 1]).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
            r.store(true, SeqCst);
            fibra::yield_now();
            fibra::sleep(Duration::from_secs(60)); // unwinds here
            unreachable!();
        });
        fibra::sleep(Duration::from_millis(5));
        h.cancel();
        assert!(matches!(h.join(), Err(fibra::JoinError::Cancelled)));
        assert!(reached.load(SeqCst));
    });
}

/// `shutdown(2)` on a managed socket reaches the fibers parked on it: the kernel's own
/// readiness edge (EPOLLIN/EPOLLRDHUP for the read side, EPOLLOUT/EPOLLHUP for the write side)
/// wakes them, so the call passes to libc unchanged. A reader parked in a hooked `read` gets
/// end of stream after `shutdown(Read)`; a writer parked on a full send buffer gets `EPIPE`
/// after `shutdown(Write)`. One worker: the waker must not need the parked fiber's thread.
#[test]
fn shutdown_wakes_the_fibers_parked_on_the_socket() {
    let _w = watchdog("shutdown_wakes_the_fibers_parked_on_the_socket");
    let (read_end, write_end) = rt(1).run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (peer, _) = l.accept().unwrap(); // never reads nor writes
        let reader = {
            let mut c = c.try_clone().unwrap();
            fibra::spawn(move || c.read(&mut [0u8; 16]).map_err(|e| e.kind()))
        };
        let writer = {
            let mut c = c.try_clone().unwrap();
            fibra::spawn(move || {
                let chunk = vec![7u8; 64 * 1024];
                loop {
                    if let Err(e) = c.write(&chunk) {
                        return e.kind(); // parks once the buffers are full
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(50)); // hooked: both park meanwhile
        c.shutdown(std::net::Shutdown::Read).unwrap();
        let read_end = reader.join().unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let write_end = writer.join().unwrap();
        drop(peer);
        (read_end, write_end)
    });
    assert_eq!(read_end, Ok(0), "the parked reader saw end of stream");
    assert_eq!(
        write_end,
        ErrorKind::BrokenPipe,
        "the parked writer saw EPIPE"
    );
}
