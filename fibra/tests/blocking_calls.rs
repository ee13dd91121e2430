//! Debug builds without `hooks`: blocking calls made inside fibers are counted per call site
//! and reported once, and the calls themselves behave exactly as without the watch.
#![cfg(all(
    debug_assertions,
    not(feature = "hooks"),
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

use std::io::{ErrorKind, Read, Write};
use std::process::Command;
use std::time::Duration;

use fibra::debug::{blocking_calls, BlockingCallSite};

/// The sites whose location names `function` (each test uses its own function names, so
/// tests running side by side do not see each other's sites).
fn sites_in(function: &str) -> Vec<BlockingCallSite> {
    blocking_calls()
        .into_iter()
        .filter(|s| s.location.contains(function))
        .collect()
}

fn total(sites: &[BlockingCallSite], call: &str) -> u64 {
    sites
        .iter()
        .filter(|s| s.call == call)
        .map(|s| s.count)
        .sum()
}

fn nap_in_a_fiber() {
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn every_sleep_in_a_fiber_is_counted_at_its_call_site() {
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let hs: Vec<_> = (0..3).map(|_| fibra::spawn(nap_in_a_fiber)).collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    let sites = sites_in("nap_in_a_fiber");
    assert_eq!(sites.len(), 1, "one site: {sites:?}");
    assert!(sites[0].call.ends_with("sleep"), "{sites:?}"); // nanosleep or clock_nanosleep
    assert_eq!(sites[0].count, 3);
    assert!(
        sites[0].location.contains("blocking_calls.rs:"),
        "{sites:?}"
    );
}

fn nap_on_a_plain_thread() {
    std::thread::sleep(Duration::from_millis(1));
}

fn nap_in_a_quiet_runtime() {
    std::thread::sleep(Duration::from_millis(1));
}

fn nap_in_blocking_pool() {
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn plain_threads_the_blocking_pool_and_quiet_runtimes_are_not_watched() {
    nap_on_a_plain_thread();
    std::thread::spawn(nap_on_a_plain_thread).join().unwrap();
    let quiet = fibra::Runtime::builder()
        .workers(1)
        .warn_blocking_calls(false)
        .build()
        .unwrap();
    quiet.run(nap_in_a_quiet_runtime);
    fibra::run(|| fibra::run_blocking(nap_in_blocking_pool));
    assert!(sites_in("nap_on_a_plain_thread").is_empty());
    assert!(sites_in("nap_in_a_quiet_runtime").is_empty());
    assert!(sites_in("nap_in_blocking_pool").is_empty());
}

fn std_echo_in_a_fiber(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    buf.to_vec()
}

fn fibra_echo_in_a_fiber(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut s = fibra::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    buf.to_vec()
}

fn echo_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    addr
}

#[test]
fn blocking_std_sockets_are_reported_and_fibra_sockets_are_not() {
    let addr = echo_server();
    let (a, b) = fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(|| (std_echo_in_a_fiber(addr), fibra_echo_in_a_fiber(addr)));
    assert_eq!(
        (&a[..], &b[..]),
        (&b"ping"[..], &b"pong"[..]),
        "data unchanged"
    );
    let std_sites = sites_in("std_echo_in_a_fiber");
    // std's connect, its write and its read: each a site of its own call.
    assert_eq!(total(&std_sites, "connect"), 1, "{std_sites:?}");
    assert!(
        total(&std_sites, "write") + total(&std_sites, "send") >= 1,
        "{std_sites:?}"
    );
    assert!(
        total(&std_sites, "recv") + total(&std_sites, "read") >= 1,
        "{std_sites:?}"
    );
    assert!(sites_in("fibra_echo_in_a_fiber").is_empty());
}

fn nonblocking_std_socket_in_a_fiber(addr: std::net::SocketAddr) -> ErrorKind {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4];
    (&s).read(&mut buf).unwrap_err().kind()
}

fn timed_out_read_in_a_fiber(addr: std::net::SocketAddr) -> ErrorKind {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut buf = [0u8; 4];
    (&s).read(&mut buf).unwrap_err().kind()
}

#[test]
fn the_watch_changes_no_result_and_no_errno() {
    // A listener that never answers: the reads below find nothing.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (nonblocking, timed_out) =
        fibra::Runtime::builder()
            .workers(1)
            .build()
            .unwrap()
            .run(|| {
                (
                    nonblocking_std_socket_in_a_fiber(addr),
                    timed_out_read_in_a_fiber(addr),
                )
            });
    drop(l);
    // EAGAIN reaches std unchanged through the watch's own fcntl and fstat.
    assert_eq!(nonblocking, ErrorKind::WouldBlock);
    assert_eq!(timed_out, ErrorKind::WouldBlock);
    // A socket in non-blocking mode is not reported; a blocking read with a timeout is.
    assert_eq!(
        total(&sites_in("nonblocking_std_socket_in_a_fiber"), "recv"),
        0
    );
    assert_eq!(
        total(&sites_in("timed_out_read_in_a_fiber"), "recv"),
        1,
        "{:?}",
        blocking_calls()
    );
}

/// Run as a child: sleeps at one site 5 times in fibers; its stderr is the report.
#[test]
fn child_sleeps_at_one_site() {
    if std::env::var_os("FIBRA_BLOCKING_CALLS_CHILD").is_none() {
        return;
    }
    fibra::run(|| {
        for _ in 0..5 {
            fibra::spawn(nap_in_a_fiber).join().unwrap();
        }
    });
}

#[test]
fn each_site_is_printed_once_naming_the_call_and_the_callers_code() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_sleeps_at_one_site", "--nocapture"])
        .env("FIBRA_BLOCKING_CALLS_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let reports: Vec<_> = err
        .lines()
        .filter(|l| l.contains("fibra: warning:"))
        .collect();
    assert_eq!(reports.len(), 1, "stderr:\n{err}");
    assert!(reports[0].contains("sleep` (a thread sleep)"), "{err}");
    assert!(
        err.contains("nap_in_a_fiber"),
        "the site names the caller: {err}"
    );
    assert!(
        err.contains("fibra::sleep"),
        "the report says what to use: {err}"
    );
}

/// Runs this test binary's test `child` with `FIBRA_BLOCKING_CALLS_CHILD` set, and returns
/// its stderr; a child still running after 60 s is killed and fails the test (a hang).
fn run_child(child: &str) -> String {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--nocapture"])
        .env("FIBRA_BLOCKING_CALLS_CHILD", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = c.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > limit {
            c.kill().unwrap();
            c.wait().unwrap();
            panic!("`{child}` hung: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = reader.join().unwrap();
    assert!(status.success(), "`{child}`: {status}\n{err}");
    err
}

fn nap_while_stderr_is_locked() {
    std::thread::sleep(Duration::from_millis(50));
}

/// Run as a child: holds the stderr lock across `run`, while the reporter prints.
#[test]
fn child_holds_stderr_across_run() {
    if std::env::var_os("FIBRA_BLOCKING_CALLS_CHILD").is_none() {
        return;
    }
    let mut err = std::io::stderr().lock();
    // Without the monitor: its stall report takes the stderr lock too (a hang of its own).
    fibra::Runtime::builder()
        .workers(1)
        .monitor(false)
        .build()
        .unwrap()
        .run(nap_while_stderr_is_locked);
    writeln!(err, "run returned").unwrap();
}

#[test]
fn a_caller_holding_the_stderr_lock_does_not_deadlock_with_the_reporter() {
    // The reporter printed its report under the pass lock and blocked on the stderr lock,
    // which the thread ending the session held while it waited for the pass lock.
    let err = run_child("child_holds_stderr_across_run");
    assert!(err.contains("run returned"), "{err}");
    assert_eq!(
        err.matches("nap_while_stderr_is_locked").count(),
        1,
        "reported once: {err}"
    );
}

/// Waits on a fibra `Condvar` when dropped: in a fiber cancelled at shutdown that wait sleeps
/// the thread for 1 ms on purpose (`Condvar::wait` of a cancelling fiber).
struct WaitsOnDrop(std::sync::Arc<(fibra::sync::Mutex<bool>, fibra::sync::Condvar)>);

impl Drop for WaitsOnDrop {
    fn drop(&mut self) {
        let (lock, cv) = &*self.0;
        drop(cv.wait(lock.lock()));
    }
}

#[test]
fn fibras_own_waits_in_a_cancelled_fiber_are_not_reported() {
    fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(|| {
            let pair =
                std::sync::Arc::new((fibra::sync::Mutex::new(false), fibra::sync::Condvar::new()));
            let p = pair.clone();
            let _detached = fibra::spawn(move || {
                let _w = WaitsOnDrop(p.clone());
                let (lock, cv) = &*p;
                drop(cv.wait(lock.lock())); // never notified: cancelled by the shutdown
            });
            fibra::sleep(Duration::from_millis(20)); // the fiber parks in `wait`
        });
    let own: Vec<_> = blocking_calls()
        .into_iter()
        .filter(|s| s.location.starts_with("fibra::"))
        .collect();
    assert!(own.is_empty(), "fibra's internals named as a site: {own:?}");
}

/// Recurses `depth` frames of 256 bytes and more, then sleeps.
#[inline(never)]
fn nap_deep_down(depth: usize) -> u8 {
    let buf = [depth as u8; 256];
    if depth == 0 {
        std::thread::sleep(Duration::from_micros(1));
        return buf[0];
    }
    std::hint::black_box(&buf);
    nap_deep_down(depth - 1).wrapping_add(buf[1])
}

/// Run as a child: `nap_deep_down(FIBRA_BLOCKING_CALLS_DEPTH)` in a 16 KiB fiber, with the
/// watch on if `FIBRA_BLOCKING_CALLS_WARN` is set.
#[test]
fn child_naps_deep_down() {
    let Some(depth) = std::env::var_os("FIBRA_BLOCKING_CALLS_DEPTH") else {
        return;
    };
    let depth: usize = depth.to_str().unwrap().parse().unwrap();
    let warn = std::env::var_os("FIBRA_BLOCKING_CALLS_WARN").is_some();
    fibra::Runtime::builder()
        .workers(1)
        .stack_size(16 * 1024)
        .warn_blocking_calls(warn)
        .build()
        .unwrap()
        .run(move || nap_deep_down(depth));
}

#[test]
fn the_watch_does_not_overflow_a_stack_that_suffices_without_it() {
    let nap = |depth: usize, warn: bool| {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "child_naps_deep_down", "--nocapture"])
            .env("FIBRA_BLOCKING_CALLS_DEPTH", depth.to_string());
        if warn {
            child.env("FIBRA_BLOCKING_CALLS_WARN", "1");
        }
        child.output().unwrap()
    };
    // The deepest call that fits without the watch (a 16 KiB stack ends well before 200).
    let deepest = (0..200)
        .take_while(|&d| nap(d, false).status.success())
        .last()
        .unwrap();
    assert!(deepest < 199, "the stack never overflowed");
    // A stack left with about 1 KiB to spare (2 frames) without the watch fits with it: the
    // walk, which took 7.4 KiB more, is skipped when the stack is short, and the call is
    // still counted and reported.
    let out = nap(deepest - 2, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "depth {} of {deepest}: {err}",
        deepest - 2
    );
    assert!(
        err.contains("sleep` (a thread sleep)") && err.contains("of stack left"),
        "{err}"
    );
}

fn lookup_in_a_fiber() -> usize {
    use std::net::ToSocketAddrs;
    ("localhost", 80)
        .to_socket_addrs()
        .map_or(0, Iterator::count)
}

#[test]
fn std_impls_for_tuples_and_primitives_are_not_named_as_the_site() {
    // `<(&str, u16) as std::net::ToSocketAddrs>::to_socket_addrs` is std's code: its self type
    // is a tuple, so the impl is in the trait's crate.
    fibra::Runtime::builder()
        .workers(1)
        .build()
        .unwrap()
        .run(lookup_in_a_fiber);
    let lookups: Vec<_> = blocking_calls()
        .into_iter()
        .filter(|s| s.call == "getaddrinfo")
        .collect();
    assert!(
        lookups
            .iter()
            .all(|s| !s.location.contains("ToSocketAddrs")),
        "{lookups:?}"
    );
    assert_eq!(
        total(&sites_in("lookup_in_a_fiber"), "getaddrinfo"),
        1,
        "{lookups:?}"
    );
}
