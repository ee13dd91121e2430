//! Debug builds without `hooks`: blocking calls made inside fibers are counted per call site
//! and reported once, and the calls themselves behave exactly as without the watch.
#![cfg(all(
    debug_assertions,
    not(feature = "hooks"),
    target_os = "linux",
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
