//! Fault injection: the stack region's `mmap` fails (`RLIMIT_AS` lowered). The fiber that gets
//! no stack reports it through `join` as `JoinError::NoStack(SpawnError::Stack(ENOMEM))`, its
//! closure (and what it captured) is dropped at once, and the runtime keeps serving the fibers
//! that have stacks, and new ones once stacks come free.
//!
//! `setrlimit` applies to the whole process, so each scenario runs in a child process (this
//! binary re-run with `--exact <test>` and an environment variable), under the watchdog: a
//! regression fails the child (abort, panic or hang) instead of the suite.

mod common;

use std::process::Command;
use std::time::Duration;

use fibra::{JoinError, Runtime, SpawnError};

const CHILD: &str = "FIBRA_FAULT_MMAP_CHILD";
/// One stack region of the default class (`stack/region.rs`).
const REGION: u64 = 64 << 20;

/// Runs `test` in a child process and fails unless it passed.
fn run_in_child(test: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child `{test}`: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(test)
}

/// Bytes of address space this process has mapped now.
fn address_space() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Sanitizers reserve terabytes of shadow memory and need more as the process runs: a lowered
/// `RLIMIT_AS` would break them, not fibra.
fn under_sanitizer() -> bool {
    address_space() > 1 << 40
}

/// Lets this process map at most `more` bytes beyond what it has mapped now.
fn limit_address_space(more: u64) {
    let lim = libc::rlimit {
        rlim_cur: address_space() + more,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit; lowering the soft limit needs no privilege.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

fn assert_out_of_address_space(err: &JoinError) {
    match err {
        JoinError::NoStack(SpawnError::Stack(e)) => {
            assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "{e}")
        }
        other => panic!("expected NoStack(Stack(ENOMEM)), got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("fiber never ran: could not reserve a fiber stack"),
        "{msg}"
    );
    assert!(msg.contains("out of address space"), "{msg}");
}

/// Spawns parked fibers until one gets no stack; the others keep running and finish.
#[test]
fn spawning_past_a_failing_mmap_reports_and_keeps_serving() {
    const TEST: &str = "spawning_past_a_failing_mmap_reports_and_keeps_serving";
    if !is_child(TEST) {
        return run_in_child(TEST);
    }
    if under_sanitizer() {
        return eprintln!("{TEST}: skipped under a sanitizer");
    }
    let _w = common::watchdog_for(TEST, Duration::from_secs(120));
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        // Warm up: the first region, the worker's allocator arena, the timer and I/O tables.
        for _ in 0..64 {
            fibra::spawn(|| ()).join().unwrap();
        }
        let mut started = Vec::with_capacity(1 << 16);
        let (release_tx, release_rx) = fibra::chan::bounded::<()>(0);
        // Two more regions' worth (~1900 default stacks), and room for the heap to grow.
        limit_address_space(2 * REGION + (32 << 20));
        let failed = loop {
            assert!(started.len() < 1 << 16, "mmap never failed");
            let (up_tx, up_rx) = fibra::chan::oneshot::<()>();
            let release = release_rx.clone();
            let h = fibra::spawn(move || {
                up_tx.send(()).unwrap();
                let _ = release.recv(); // parked, holding its stack, until released
            });
            // Err when the fiber gave up without running: its closure, and `up_tx` with it,
            // must be dropped then (else this waits forever).
            match up_rx.recv() {
                Ok(()) => started.push(h),
                Err(_) => break h,
            }
        };
        assert!(!started.is_empty());
        assert_out_of_address_space(&failed.join().unwrap_err());
        // A second refusal, while the limit still holds and no stack is free.
        assert_out_of_address_space(&fibra::spawn(|| ()).join().unwrap_err());
        // Every fiber that has a stack still runs to the end.
        drop(release_tx);
        let n = started.len();
        for h in started {
            h.join().unwrap();
        }
        // And new ones get the stacks those gave back.
        let again: Vec<_> = (0..n.min(500)).map(|i| fibra::spawn(move || i)).collect();
        let sum: usize = again.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, (0..n.min(500)).sum());
    });
}

/// The root fiber of `block_on` gets no stack: a panic naming the cause, not an internal
/// `unreachable!`.
#[test]
fn a_root_fiber_without_a_stack_panics_with_the_cause() {
    const TEST: &str = "a_root_fiber_without_a_stack_panics_with_the_cause";
    if !is_child(TEST) {
        return run_in_child(TEST);
    }
    if under_sanitizer() {
        return eprintln!("{TEST}: skipped under a sanitizer");
    }
    let _w = common::watchdog_for(TEST, Duration::from_secs(120));
    // 512 MiB stacks come 8 to a region: 4 GiB, far more than the limit leaves. Worker and
    // monitor threads (8 MiB stacks each) and their allocator arenas fit.
    let rt = Runtime::builder()
        .workers(1)
        .stack_size(512 << 20)
        .build()
        .unwrap();
    limit_address_space(1 << 30);
    let run = std::panic::AssertUnwindSafe(|| rt.run(|| 1));
    let panic = std::panic::catch_unwind(run).unwrap_err();
    let msg = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or("<not a string>");
    assert!(
        msg.starts_with("fibra: cannot start the root fiber: could not reserve"),
        "{msg}"
    );
    assert!(msg.contains("out of address space"), "{msg}");
}
