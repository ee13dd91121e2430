//! What the monitor and the panic hook print, read from a child process's stderr: a stall's
//! cause named from the thread's CPU time and its syscall (a socket read is not a CPU loop,
//! even while other processes keep the cores busy), one begin and one end line per stall,
//! repeats folded, and panics that name the fiber.
//!
//! Each test re-runs this binary as a child (`--exact <test>`, selected by an environment
//! variable) with a watchdog: the default report goes to stderr, which only a parent can read
//! whole. No timing is asserted: thresholds are generous and the assertions are on the lines.

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fibra::Runtime;

mod common;
use common::watchdog_for;

const CHILD: &str = "FIBRA_DEBUG_STALL_CHILD";
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// Long enough that a busy 2-core machine does not stall a healthy run past it.
const THRESHOLD: Duration = Duration::from_millis(50);

/// One child at a time: the socket test's busy processes would starve the others' loops.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_child(test: &str) -> String {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out: Output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && err.contains("child: done"),
        "child status {}; stderr:\n{err}",
        out.status
    );
    err
}

/// In the child for `test`: runs `body` under a watchdog and returns true.
fn child(test: &'static str, body: impl FnOnce()) -> bool {
    if std::env::var(CHILD).as_deref() != Ok(test) {
        return false;
    }
    let _w = watchdog_for(test, CHILD_LIMIT);
    body();
    eprintln!("child: done");
    true
}

fn lines_with<'a>(err: &'a str, needle: &str) -> Vec<&'a str> {
    err.lines().filter(|l| l.contains(needle)).collect()
}

/// Processes that keep both cores busy (shell loops), killed on drop.
struct Hogs(Vec<Child>);

fn hog_the_cores() -> Hogs {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    Hogs(
        (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    )
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill(); // our own children, by pid
            let _ = c.wait();
        }
    }
}

fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .stall_threshold(THRESHOLD)
        .build()
        .unwrap()
}

#[test]
fn a_blocking_socket_read_is_a_socket_call_not_a_cpu_loop_while_the_cores_are_busy() {
    const T: &str =
        "a_blocking_socket_read_is_a_socket_call_not_a_cpu_loop_while_the_cores_are_busy";
    if child(T, || {
        let _hogs = hog_the_cores();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A plain thread answers after a while: long past the threshold.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            std::thread::sleep(THRESHOLD * 12);
            s.write_all(b"x").unwrap();
        });
        runtime().run(move || {
            let h = fibra::Builder::new().name("redis-client").spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap(); // blocks the worker in `read` on a socket
            });
            h.unwrap().join().unwrap();
        });
        server.join().unwrap();
    }) {
        return;
    }
    let err = run_child(T);
    let begun = lines_with(&err, "\"redis-client\"");
    let begin: Vec<_> = begun
        .iter()
        .filter(|l| l.contains(" stuck ") && !l.contains("free again"))
        .collect();
    assert_eq!(begin.len(), 1, "stderr:\n{err}");
    assert!(
        begin[0].contains("blocked in a socket call ("),
        "stderr:\n{err}"
    );
    assert!(begin[0].contains("fibra::net"), "stderr:\n{err}");
    assert!(begin[0].contains(" on a socket)"), "stderr:\n{err}");
    assert!(!err.contains("CPU loop"), "stderr:\n{err}");
    let end = lines_with(&err, "free again");
    assert_eq!(end.len(), 1, "stderr:\n{err}");
    assert!(
        end[0].contains("\"redis-client\"") && end[0].contains("a socket call"),
        "stderr:\n{err}"
    );
}

#[inline(never)]
fn spin_here(for_: Duration) -> u64 {
    let t = std::time::Instant::now();
    let mut n = 0u64;
    while t.elapsed() < for_ {
        n = std::hint::black_box(n.wrapping_add(1));
    }
    n
}

#[test]
fn a_cpu_loop_is_reported_as_one() {
    const T: &str = "a_cpu_loop_is_reported_as_one";
    if child(T, || {
        runtime().run(|| {
            let h = fibra::Builder::new()
                .name("spinner")
                .spawn(|| spin_here(THRESHOLD * 10));
            h.unwrap().join().unwrap();
        });
    }) {
        return;
    }
    let err = run_child(T);
    let begin: Vec<_> = lines_with(&err, "\"spinner\"")
        .into_iter()
        .filter(|l| !l.contains("free again"))
        .collect();
    assert_eq!(begin.len(), 1, "stderr:\n{err}");
    assert!(begin[0].contains("a CPU loop ("), "stderr:\n{err}");
    assert!(begin[0].contains("fibra::yield_now"), "stderr:\n{err}");
    // The stuck thread's stack, taken without stopping it, follows the begin line.
    let after = &err[err.find(begin[0]).unwrap()..];
    let stack: Vec<_> = after
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert!(
        stack
            .iter()
            .any(|l| l.contains("debug_stall::spin_here at ") && l.contains("debug_stall.rs:")),
        "stderr:\n{err}"
    );
    assert_eq!(lines_with(&err, "free again").len(), 1, "stderr:\n{err}");
}

#[test]
fn repeated_stalls_of_one_fiber_print_one_begin_and_one_end_line() {
    const T: &str = "repeated_stalls_of_one_fiber_print_one_begin_and_one_end_line";
    if child(T, || {
        runtime().run(|| {
            let h = fibra::Builder::new().name("napper").spawn(|| {
                for _ in 0..5 {
                    std::thread::sleep(THRESHOLD * 4); // a stall each time
                    fibra::yield_now(); // ends the run, and the stall
                }
            });
            h.unwrap().join().unwrap();
        });
    }) {
        return;
    }
    let err = run_child(T);
    let napper = lines_with(&err, "\"napper\"");
    assert_eq!(napper.len(), 2, "stderr:\n{err}");
    assert!(
        napper[0].contains("sleeping in std::thread::sleep: use fibra::sleep"),
        "stderr:\n{err}"
    );
    assert!(
        napper[1].contains("free again") && napper[1].contains("std::thread::sleep"),
        "stderr:\n{err}"
    );
}

#[test]
fn panics_name_the_fiber() {
    const T: &str = "panics_name_the_fiber";
    if child(T, || {
        let r = runtime().run(|| {
            fibra::Builder::new()
                .name("conn-17")
                .spawn(|| panic!("boom"))
                .unwrap()
                .join()
        });
        assert!(r.is_err());
    }) {
        return;
    }
    let err = run_child(T);
    let at = err
        .find("fibra: panic in fiber ")
        .unwrap_or_else(|| panic!("stderr:\n{err}"));
    let line = err[at..].lines().next().unwrap();
    assert!(
        line.contains(" \"conn-17\" (spawned at fibra/tests/debug_stall.rs:"),
        "{line}"
    );
    // std's own message follows, unchanged.
    let next = err[at..].lines().skip(1).find(|l| !l.is_empty()).unwrap();
    assert!(
        next.contains("panicked at") && err.contains("boom"),
        "stderr:\n{err}"
    );
}

#[test]
fn panics_do_not_name_the_fiber_when_turned_off() {
    const T: &str = "panics_do_not_name_the_fiber_when_turned_off";
    if child(T, || {
        let rt = Runtime::builder()
            .workers(1)
            .panic_names_fiber(false)
            .build()
            .unwrap();
        let r = rt.run(|| fibra::spawn(|| panic!("boom")).join());
        assert!(r.is_err());
    }) {
        return;
    }
    let err = run_child(T);
    assert!(
        err.contains("boom") && !err.contains("fibra: panic in fiber"),
        "stderr:\n{err}"
    );
}

#[inline(never)]
fn spin_until(stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::hint::spin_loop();
    }
}

/// `dump()` shows a running fiber's stack: its worker thread copies it in a signal handler
/// while the fiber keeps running.
#[test]
fn dump_shows_the_stack_of_a_running_fiber() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog_for("dump_shows_the_stack_of_a_running_fiber", CHILD_LIMIT);
    let rt = Runtime::builder()
        .workers(2)
        .monitor(false)
        .build()
        .unwrap();
    let rt2 = rt.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, stop3) = (stop.clone(), stop.clone());
    let spinning = Arc::new(AtomicBool::new(false));
    let spinning2 = spinning.clone();
    let dumper = std::thread::spawn(move || {
        while !spinning2.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A capture waits a bounded time for the thread; on a machine whose cores are busy
        // it may miss, so a few dumps are allowed.
        let mut d = rt2.dump();
        for _ in 0..10 {
            let running = d.fibers.iter().any(|f| {
                f.name.as_deref() == Some("spinner")
                    && matches!(f.backtrace, fibra::debug::Trace::Frames(_))
            });
            if running {
                break;
            }
            d = rt2.dump();
        }
        stop3.store(true, Relaxed);
        d
    });
    rt.run(move || {
        let h = fibra::Builder::new().name("spinner").spawn(move || {
            spinning.store(true, Relaxed);
            spin_until(&stop2);
        });
        h.unwrap().join().unwrap();
    });
    let _ = stop;
    let d = dumper.join().unwrap();
    let f = d
        .fibers
        .iter()
        .find(|f| f.name.as_deref() == Some("spinner"))
        .unwrap();
    assert!(
        matches!(f.state, fibra::debug::FiberState::Running { .. }),
        "{d}"
    );
    let fibra::debug::Trace::Frames(frames) = &f.backtrace else {
        panic!("no backtrace for the running fiber: {d}")
    };
    assert!(
        frames
            .iter()
            .any(|fr| fr.function.ends_with("debug_stall::spin_until")),
        "{d}"
    );
}
