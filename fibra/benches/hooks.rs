//! What the libc hooks add to a call that does not block (the figure in `hooks/mod.rs`'s
//! docs): `cargo bench -p fibra --features hooks --bench hooks`.
//!
//! Each case times the same call made through the hook (an ordinary `libc::` call, which the
//! hooks interpose) and straight to libc's definition (found with `dlsym(RTLD_NEXT)` here,
//! as the hooks find it), in alternating batches; the difference of the fastest batches is the
//! hook's cost. The calls are real syscalls (~100+ ns), so differences of a few ns sit
//! near the noise of a shared machine: run it a few times.

use std::ffi::CStr;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

const BATCH: u32 = 2_000;
const BATCHES: usize = 401;

fn real(name: &CStr) -> usize {
    // SAFETY: a NUL-terminated name; RTLD_NEXT from the executable finds libc's definition.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    assert!(!p.is_null(), "{name:?}");
    p as usize
}

/// The fastest batch: preemption and other tenants only ever add time, so the minimum is
/// the estimate least disturbed by a shared machine (medians moved by ±100 ns between runs).
fn fastest(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

/// ns per call of `hooked` and of `direct`, alternating batches.
fn compare(mut hooked: impl FnMut(), mut direct: impl FnMut()) -> (f64, f64) {
    let (mut h, mut d) = (Vec::new(), Vec::new());
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..BATCH {
            hooked();
        }
        h.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
        let t = Instant::now();
        for _ in 0..BATCH {
            direct();
        }
        d.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    (fastest(h), fastest(d))
}

fn report(case: &str, (hooked, direct): (f64, f64)) {
    println!(
        "{case:<44} hooked {hooked:7.1} ns  libc {direct:7.1} ns  hook {:+6.1} ns",
        hooked - direct
    );
}

type Recv = unsafe extern "C" fn(i32, *mut libc::c_void, usize, i32) -> isize;
type Write1 = unsafe extern "C" fn(i32, *const libc::c_void, usize) -> isize;

/// `recv(MSG_PEEK)` of one byte that is always there, and `write` of one byte to /dev/null.
fn cases(place: &str) {
    // SAFETY: `real` returned libc's definitions of these functions, with these prototypes.
    let (real_recv, real_write) = unsafe {
        (
            std::mem::transmute::<usize, Recv>(real(c"recv")),
            std::mem::transmute::<usize, Write1>(real(c"write")),
        )
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    c.write_all(b"x").unwrap();
    let fd = s.as_raw_fd();
    let mut b = [0u8; 1];
    let p = b.as_mut_ptr().cast();
    let peek = compare(
        || {
            // SAFETY: a one-byte peek into a live buffer.
            let n = unsafe { libc::recv(fd, p, 1, libc::MSG_PEEK) };
            assert_eq!(n, 1);
        },
        || {
            // SAFETY: as above.
            let n = unsafe { real_recv(fd, p, 1, libc::MSG_PEEK) };
            assert_eq!(n, 1);
        },
    );
    let managed = if place == "fiber" { "managed" } else { "plain" };
    report(
        &format!("{place}: recv(MSG_PEEK) on a {managed} socket"),
        peek,
    );
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let nfd = null.as_raw_fd();
    let w = compare(
        || {
            // SAFETY: one byte from a live buffer.
            let n = unsafe { libc::write(nfd, b"x".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        },
        || {
            // SAFETY: as above.
            let n = unsafe { real_write(nfd, b"x".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        },
    );
    report(&format!("{place}: write to /dev/null (unmanaged fd)"), w);
}

fn main() {
    cases("plain thread");
    fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .build()
        .unwrap()
        .run(|| cases("fiber"));
}
