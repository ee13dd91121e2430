//! Observability: every fiber with its state, wait reason, time parked, spawn location and
//! backtrace ([`dump`]); mutex deadlock cycles ([`Dump::deadlocks`]); runtime counters
//! ([`metrics`]).
//!
//! Stackful fibers keep a real stack while parked, so a dump can show where each one waits:
//! the dumper asks each parked fiber for a backtrace and wakes it (a spurious wake-up its
//! wait loop already tolerates); the fiber captures its stack, hands it over and parks again
//! without returning to its caller, keeping its park reason and parked-since time; the
//! dumper symbolises the captures outside the fibers (`fiber/watch.rs` has the protocol).
//!
//! This module reads every layer; nothing in fibra imports it.

mod blocking_calls;
mod deadlock;
mod dump;
mod format;
mod metrics;
pub(crate) mod panic;
pub(crate) mod signal;
mod trace;

use std::time::Duration;

pub use blocking_calls::{blocking_calls, BlockingCallSite};
pub use deadlock::{Deadlock, WaitLink};
pub use dump::{Dump, FiberDump, FiberState, MutexWait};
pub use metrics::{LatencyHistogram, Metrics, WorkerMetrics};
pub use trace::{Frame, Trace};

use crate::sched::{context, sessions, Shared};
use std::sync::Arc;

/// How long a dump waits for parked fibers' backtraces by default. A fiber whose worker is
/// stuck (a blocking call, a CPU loop) cannot answer; it is listed with "backtrace
/// unavailable: worker busy" once this passes.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(fibra::debug::DEFAULT_CAPTURE_TIMEOUT, Duration::from_secs(2));
/// // `dump()` waits this long; pass less where a stuck worker should not hold the dump up.
/// let d = fibra::debug::dump_with_timeout(fibra::debug::DEFAULT_CAPTURE_TIMEOUT / 20);
/// assert_eq!(d.sessions, 0); // no runtime runs here: an empty dump, at once
/// ```
pub const DEFAULT_CAPTURE_TIMEOUT: Duration = Duration::from_secs(2);

/// The sessions a call from here should see: the caller's own when it is a fiber (or a
/// blocking-pool job), else every live session of the process.
fn sessions_here() -> Vec<Arc<Shared>> {
    let own = context::with_current_fiber(|f| f.map(|h| h.shared.clone()))
        .or_else(crate::blocking::pool_session);
    match own {
        Some(s) => vec![s],
        None => sessions::live(None),
    }
}

fn dump_of(sessions: &[Arc<Shared>], timeout: Duration) -> Dump {
    let mut d = Dump::default();
    for s in sessions {
        dump::dump_session(s, timeout, &mut d);
    }
    dump::finish(&mut d);
    d
}

/// Every live fiber of the current runtime: called from a fiber, its own session; from a
/// plain thread, every runtime session running in the process (none: an empty dump).
///
/// Parked fibers are woken once, spuriously, to capture their backtraces (their wait loops
/// re-park them unseen); running and runnable fibers are listed without one. From a fiber,
/// the call parks (its worker keeps running others) rather than blocking. Waits at most
/// [`DEFAULT_CAPTURE_TIMEOUT`] for backtraces; see [`dump_with_timeout`].
///
/// ```
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let h = fibra::Builder::new()
///         .name("napper")
///         .spawn(|| fibra::sleep(std::time::Duration::from_secs(60)))
///         .unwrap();
///     while h.fiber().park_reason() != fibra::ParkReason::Sleep {
///         fibra::yield_now(); // let it start and park
///     }
///     let dump = fibra::debug::dump();
///     let napper = dump.fibers.iter().find(|f| f.name.as_deref() == Some("napper")).unwrap();
///     assert_eq!(napper.state, fibra::debug::FiberState::Parked);
///     assert_eq!(napper.reason, Some(fibra::ParkReason::Sleep));
///     println!("{dump}");
///     drop(h); // the session's end unwinds the sleeper
/// });
/// ```
pub fn dump() -> Dump {
    dump_with_timeout(DEFAULT_CAPTURE_TIMEOUT)
}

/// [`dump`], waiting at most `timeout` for the parked fibers' backtraces (with a `timeout` too
/// large for the clock, such as `Duration::MAX`, for as long as they take).
///
/// ```
/// let d = fibra::debug::dump_with_timeout(std::time::Duration::from_millis(10));
/// assert_eq!(d.sessions, 0); // no runtime is running on this thread
/// ```
pub fn dump_with_timeout(timeout: Duration) -> Dump {
    dump_of(&sessions_here(), timeout)
}

impl crate::Runtime {
    /// A [`dump`] of this runtime's running sessions (and its clones'), from any thread:
    /// empty when none is running.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// assert_eq!(rt.dump().sessions, 0);
    /// let rt2 = rt.clone();
    /// rt.run(|| {
    ///     let t = std::thread::spawn(move || rt2.dump());
    ///     while !t.is_finished() { fibra::yield_now(); } // keep our worker free
    ///     let d = t.join().unwrap();
    ///     assert_eq!(d.sessions, 1);
    ///     assert!(d.fibers.iter().any(|f| f.name.as_deref() == Some("main")));
    /// });
    /// ```
    pub fn dump(&self) -> Dump {
        self.dump_with_timeout(DEFAULT_CAPTURE_TIMEOUT)
    }

    /// [`Runtime::dump`](crate::Runtime::dump), waiting at most `timeout` for backtraces.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// assert!(rt.dump_with_timeout(std::time::Duration::ZERO).fibers.is_empty());
    /// ```
    pub fn dump_with_timeout(&self, timeout: Duration) -> Dump {
        dump_of(&sessions::live(Some(self.key_addr())), timeout)
    }

    /// [`metrics`] of this runtime's running sessions (one entry each).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// assert!(rt.metrics().is_empty());
    /// ```
    pub fn metrics(&self) -> Vec<Metrics> {
        sessions::live(Some(self.key_addr()))
            .iter()
            .map(|s| metrics::collect(s))
            .collect()
    }
}

/// Counters of the current runtime session (called from a fiber), or of the oldest running
/// session (from a plain thread); `None` when no runtime runs.
///
/// ```
/// let m = fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     fibra::spawn(|| ()).join().unwrap();
///     fibra::debug::metrics().unwrap()
/// });
/// assert_eq!(m.workers[0].steals, 0);
/// assert!(m.workers[0].fibers_run >= 2);
/// ```
pub fn metrics() -> Option<Metrics> {
    sessions_here().first().map(|s| metrics::collect(s))
}

#[cfg(feature = "serde")]
fn ser_debug<S: serde::Serializer, T: std::fmt::Debug>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&format!("{v:?}")),
        None => s.serialize_none(),
    }
}
