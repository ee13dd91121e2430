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
