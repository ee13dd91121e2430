//! Panics name the fiber: a panic hook, chained in front of whatever hook was installed
//! before (std's default one, usually), that first prints which fiber panicked.
//!
//! ```text
//! fibra: panic in fiber 42 "conn-17" (spawned at src/main.rs:31:5):
//! thread 'fibra-worker-0' panicked at src/main.rs:40:9:
//! boom
//! ```
//! std names the thread, and a worker thread runs thousands of fibers. The hook also tells
//! the monitor that the worker is inside the panic hook (`RunSignal::activity`): the default
//! hook captures a backtrace when `RUST_BACKTRACE` asks, which takes tens of milliseconds in a
//! debug build, and a stall report should not call that a CPU loop (issue 14).
//!
//! Installed once per process, by the first session whose builder keeps
//! `RuntimeBuilder::panic_names_fiber` on; a session that turned it off gets the previous
//! hook's message unchanged. A hook the program sets later replaces this one, as with any
//! `std::panic::set_hook`.

use std::io::Write;
use std::panic::{self, PanicHookInfo};
use std::sync::Once;

use crate::sched::{context, monitor};

/// Installs the chained hook (once per process). Any thread.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let line = context::with_current_fiber(|f| {
                let f = f?;
                if !f.shared.config.panic_names_fiber {
                    return None;
                }
                let id = &f.identity;
                Some(match &id.name {
                    Some(n) => format!(
                        "fibra: panic in fiber {} {n:?} (spawned at {}):\n",
                        id.id, id.location
                    ),
                    None => format!(
                        "fibra: panic in fiber {} (spawned at {}):\n",
                        id.id, id.location
                    ),
                })
            });
            if let Some(line) = line {
                // Not `eprintln!`: a failing stderr must not panic inside the panic hook.
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            let was = monitor::set_activity(monitor::activity::PANICKING);
            previous(info);
            monitor::set_activity(was);
        }));
    });
}
