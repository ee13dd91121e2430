//! The session's coarse clock: milliseconds since the session started, refreshed by whoever
//! reads the real clock anyway (the monitor at each sample, workers when they fire timers,
//! dumps). `park` stamps a fiber's parked-since time with one relaxed load of it, never a
//! clock read (~80 ns on these VMs).
//!
//! With the monitor off and no timers armed, the value may lag by as long as the runtime has
//! been without either; dumps refresh it before they read it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Own cache line: read by every park, written at most once per millisecond.
#[repr(align(128))]
pub(crate) struct CoarseClock {
    epoch: Instant,
    ms: AtomicU64,
}

impl CoarseClock {
    pub(crate) fn new() -> CoarseClock {
        CoarseClock {
            epoch: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    /// Any thread: the last refreshed value. One relaxed load.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms.load(Relaxed)
    }

    /// Nanoseconds from the session's start to `now` (wake-to-run sampling).
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Any thread that just read the real clock: advances the coarse one (never backwards).
    #[inline]
    pub(crate) fn refresh(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        if ms > self.ms.load(Relaxed) {
            self.ms.fetch_max(ms, Relaxed);
        }
        ms
    }
}
