//! A `std::sync::Mutex` guard held across a fibra park while another fiber of the same worker
//! locks it: the monitor reports a deadlock, naming the futex, the stuck fiber and the holder,
//! with both stacks (sched/lock_holder.rs). And a fiber blocked on a std mutex that a plain
//! thread holds is a futex stall, not a deadlock.
//!
//! The deadlock is real: nothing ends it. Its tests run it in a child process (this binary
//! again, `--exact <test>`, selected by an environment variable): the default-log test reads
//! the child's stderr until the whole report is there and kills the child; the hook test's
//! child checks the report itself and exits. No timing is asserted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fibra::{ParkReason, Runtime, StallKind, StallReport};

mod common;
use common::watchdog_for;

const CHILD: &str = "FIBRA_DEBUG_STALL_DEADLOCK_CHILD";
const LIMIT: Duration = Duration::from_secs(60);
/// Long enough that a busy 2-core machine does not stall a healthy run past it.
const THRESHOLD: Duration = Duration::from_millis(50);

/// The holder: takes the lock and parks with the guard alive.
#[inline(never)]
fn hold_across_sleep(m: &Mutex<u64>) {
    let mut n = m.lock().unwrap();
    fibra::sleep(Duration::from_millis(1)); // the deadlock: the guard lives across a park
    *n += 1;
}

/// The stuck fiber: blocks its worker on the lock the holder keeps.
#[inline(never)]
fn lock_after_park(m: &Mutex<u64>) {
    *m.lock().unwrap() += 1;
}

fn runtime(on_stall: Option<mpsc::Sender<StallReport>>) -> Runtime {
    let b = Runtime::builder().workers(1).stall_threshold(THRESHOLD);
    let b = match on_stall {
        Some(tx) => b.on_stall(move |r: &StallReport| {
            let _ = tx.send(r.clone());
        }),
        None => b,
    };
    b.build().unwrap()
}

/// The scenario, on the calling thread; never returns. The root fiber stays parked in a join
/// on the same worker with a clone of the `Arc`: a reference to the lock's allocation that is
/// no hold, and must not be taken for one.
fn deadlock(rt: Runtime) {
    rt.run(|| {
        let m = Arc::new(Mutex::new(0u64));
        let m2 = m.clone();
        let holder = fibra::Builder::new()
            .name("guard-holder")
            .spawn(move || hold_across_sleep(&m2))
            .unwrap();
        while holder.fiber().park_reason() != ParkReason::Sleep {
            fibra::yield_now();
        }
        let m3 = m.clone();
        let locker = fibra::Builder::new()
            .name("locker")
            .spawn(move || lock_after_park(&m3))
            .unwrap();
        locker.join().unwrap();
        holder.join().unwrap();
        drop(m);
    });
    unreachable!("the deadlock ended");
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(test)
}

fn child_command(test: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The report block of a deadlock in `lines`: its begin line, the stuck thread's frames, the
/// holder's line and the holder's frames; `None` until all of them are there.
fn report_block(lines: &[String]) -> Option<(String, Vec<String>, String, Vec<String>)> {
    let at = lines
        .iter()
        .position(|l| l.contains(" stuck ") && l.contains("deadlock"))?;
    let rest = &lines[at + 1..];
    let split = rest
        .iter()
        .position(|l| l.contains("holds the lock, parked at:"))?;
    let stuck: Vec<String> = rest[..split].to_vec();
    let holder: Vec<String> = rest[split + 1..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .cloned()
        .collect();
    let done = holder.iter().any(|l| l.contains("hold_across_sleep"));
    done.then(|| (lines[at].clone(), stuck, rest[split].clone(), holder))
}

#[test]
fn a_std_guard_held_across_a_park_is_reported_as_a_deadlock_with_both_stacks() {
    const T: &str = "a_std_guard_held_across_a_park_is_reported_as_a_deadlock_with_both_stacks";
    if is_child(T) {
        let _w = watchdog_for(T, LIMIT); // the parent kills us long before
        deadlock(runtime(None));
    }
    let _w = watchdog_for(T, LIMIT * 2);
    let mut child = child_command(T).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut lines: Vec<String> = Vec::new();
    let block = loop {
        if let Some(b) = report_block(&lines) {
            break Some(b);
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break None,
        }
    };
    let _ = child.kill(); // our own child, by pid: the deadlock never ends by itself
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let all = lines.join("\n");
    let Some((begin, stuck, holder, held_at)) = block else {
        panic!("no complete deadlock report; stderr:\n{all}");
    };
    // The begin line names the stuck fiber, the futex and the holder.
    assert!(begin.contains("fibra: worker 0 stuck "), "{all}");
    assert!(
        begin.contains(" in fiber ") && begin.contains("\"locker\""),
        "{all}"
    );
    assert!(
        begin.contains("deadlock: blocked on a std::sync lock (futex 0x"),
        "{all}"
    );
    assert!(begin.contains("\"guard-holder\" (spawned at "), "{all}");
    assert!(begin.contains("very likely holds"), "{all}");
    assert!(begin.contains("fibra::sync::Mutex"), "{all}");
    // Both stacks, each with the test's own function.
    assert!(
        stuck
            .iter()
            .any(|l| l.contains("debug_stall_deadlock::lock_after_park at ")),
        "{all}"
    );
    assert!(holder.contains("\"guard-holder\" (spawned at fibra/tests/debug_stall_deadlock.rs:"));
    assert!(
        held_at.iter().any(
            |l| l.contains("debug_stall_deadlock::hold_across_sleep at ")
                && l.contains("debug_stall_deadlock.rs:")
        ),
        "{all}"
    );
    // The holder's stack starts at the code that parked, not in fibra's switch.
    assert!(
        !held_at[0].contains("fibra::fiber::switch") && !held_at[0].contains("fibra::park::"),
        "{all}"
    );
    // One report for the episode.
    let begins = lines
        .iter()
        .filter(|l| l.contains(" stuck ") && l.contains("deadlock:"));
    assert_eq!(begins.count(), 1, "{all}");
}

#[test]
fn the_on_stall_hook_gets_the_deadlock_with_the_holder_and_both_stacks() {
    const T: &str = "the_on_stall_hook_gets_the_deadlock_with_the_holder_and_both_stacks";
    if is_child(T) {
        let _w = watchdog_for(T, LIMIT);
        let (tx, rx) = mpsc::channel();
        let rt = runtime(Some(tx));
        std::thread::spawn(move || deadlock(rt));
        let r = rx.recv().unwrap();
        assert_eq!(r.kind, StallKind::Deadlock, "{r}");
        assert_eq!(r.fiber_name.as_deref(), Some("locker"), "{r}");
        assert_eq!(r.syscall.as_deref(), Some("futex"), "{r}");
        assert!(r.futex.is_some(), "{r}");
        assert!(r.stack.iter().any(|f| f.contains("lock_after_park")), "{r}");
        let h = r.holder.as_ref().expect("a holder");
        assert_eq!(h.fiber_name.as_deref(), Some("guard-holder"), "{r}");
        assert_ne!(h.fiber_id, r.fiber_id);
        assert!(
            h.stack.iter().any(|f| f.contains("hold_across_sleep")),
            "{r}"
        );
        eprintln!("child: done");
        // The workers stay deadlocked; the process ends here, its checks passed.
        std::process::exit(0);
    }
    let _w = watchdog_for(T, LIMIT * 2);
    let out = child_command(T).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("child: done"),
        "child status {}; stderr:\n{err}",
        out.status
    );
}

#[test]
fn a_std_mutex_held_by_a_plain_thread_is_a_futex_stall_not_a_deadlock() {
    let _w = watchdog_for("a_std_mutex_held_by_a_plain_thread", LIMIT);
    let (tx, rx) = mpsc::channel();
    let rt = runtime(Some(tx));
    let m = Arc::new(Mutex::new(0u64));
    let (locked_tx, locked_rx) = mpsc::channel();
    let (m2, m3) = (m.clone(), m.clone());
    // A plain thread holds the lock until the monitor has reported the stall it causes.
    let thread = std::thread::spawn(move || {
        let mut n = m2.lock().unwrap();
        locked_tx.send(()).unwrap();
        let r: StallReport = rx.recv().unwrap();
        *n += 1;
        r
    });
    locked_rx.recv().unwrap();
    rt.run(move || {
        // A fiber parked on the same worker with a clone of the `Arc` (no hold).
        let m4 = m3.clone();
        let (wake_tx, wake_rx) = fibra::chan::bounded::<()>(1);
        let bystander = fibra::Builder::new()
            .name("bystander")
            .spawn(move || {
                let _keep = m4;
                wake_rx.recv().unwrap();
            })
            .unwrap();
        while bystander.fiber().park_reason() != ParkReason::ChanRecv {
            fibra::yield_now();
        }
        let locker = fibra::Builder::new()
            .name("locker")
            .spawn(move || lock_after_park(&m3))
            .unwrap();
        locker.join().unwrap();
        wake_tx.send(()).unwrap();
        bystander.join().unwrap();
    });
    let r = thread.join().unwrap();
    assert_eq!(r.kind, StallKind::Futex, "{r}");
    assert!(r.holder.is_none(), "{r}");
    assert_eq!(r.fiber_name.as_deref(), Some("locker"), "{r}");
    assert!(r.futex.is_some(), "{r}");
    assert!(
        r.to_string()
            .contains("blocked on a std::sync lock or condvar (futex 0x"),
        "{r}"
    );
    assert_eq!(*m.lock().unwrap(), 2);
}
