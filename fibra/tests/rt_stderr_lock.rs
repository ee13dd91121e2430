//! A caller that holds std's stderr lock across `Runtime::run` while a worker stalls: the
//! monitor's stall report must not wait for that lock (the caller waits for the monitor at
//! the session's end, so that was a hang). Run in a child process, killed if it hangs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "FIBRA_STDERR_LOCK_CHILD";

#[test]
fn child_holds_stderr_while_a_worker_stalls() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mut held = std::io::stderr().lock();
    fibra::Runtime::builder()
        .workers(1)
        .warn_blocking_calls(false) // the monitor alone
        .build()
        .unwrap()
        .run(|| std::thread::sleep(Duration::from_millis(60))); // stalls its only worker
    writeln!(held, "session ended").unwrap();
}

#[test]
fn the_stall_report_does_not_wait_for_a_held_stderr_lock() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_stderr_while_a_worker_stalls",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("the child hung; its stderr:\n{err}"));
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("session ended"), "{err}");
    assert!(err.contains("stuck"), "the stall was reported: {err}");
}
