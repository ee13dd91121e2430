//! Helpers shared by the integration tests (each test binary includes this module).
#![allow(dead_code)] // each test binary uses a subset

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// Aborts the process if the test it guards hangs (a scheduler bug shows as a hang). Dropping
/// it disarms it.
pub struct Watchdog(mpsc::Sender<()>);

/// A watchdog with the default limit of 60 s.
pub fn watchdog(test: &'static str) -> Watchdog {
    watchdog_for(test, Duration::from_secs(60))
}

/// A watchdog that aborts after `limit`.
pub fn watchdog_for(test: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to stderr: `eprintln!` from a test's threads is captured, and lost on abort.
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: `{test}` still running after {limit:?}; aborting"
            );
            std::process::abort();
        }
    });
    Watchdog(tx)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to at least `want` (raising the hard
/// limit too when privileged). Returns the new soft limit, or why it cannot reach `want`.
pub fn raise_nofile(want: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: `raised` is a valid rlimit. Needs CAP_SYS_RESOURCE; failure is handled below.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    let soft = lim.rlim_max.min(want);
    let raised = libc::rlimit {
        rlim_cur: soft,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    if soft < want {
        return Err(format!(
            "RLIMIT_NOFILE hard limit is {} (< {want}) and cannot be raised",
            lim.rlim_max
        ));
    }
    Ok(soft)
}

/// Open file descriptors of this process (entries of `/proc/self/fd`, minus the one that
/// lists them).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}
