//! The default stall report on stderr, kept quiet.
//!
//! # The rules
//! 1. **One line when a stall begins, one when it ends** (with its length and the cause as it
//!    was judged over the whole stall). Nothing in between.
//! 2. **Repeats are aggregated per fiber and call site.** After a fiber's first stall, further
//!    stalls of the same fiber from the same spawn site within [`WINDOW`] print nothing; when
//!    the window closes one line sums them up ("fiber 42 stalled 37 times in 10 s, worst
//!    120 ms").
//! 3. **A rate limit on the whole stream**: a bucket of [`BURST`] begin lines, refilled by one
//!    every [`REFILL`]. A begin line the bucket refuses is counted, and so is its end line;
//!    the count is printed once the bucket has room again. End lines of printed begin lines
//!    always print (they are bounded by the begin lines).
//!
//! Numbers: issue 14 saw 85-598 lines per run of a chat server on a shared 2-core machine;
//! these rules bring a steady stream to at most `BURST` + 1 line per `REFILL` + one summary
//! per fiber per `WINDOW`.

use std::collections::HashMap;
use std::panic::Location;
use std::time::{Duration, Instant};

use super::stall::{StallKind, StallReport};

/// Repeats of one fiber's stalls are summed up over this long.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Begin lines printed back to back before the rate limit bites.
pub(crate) const BURST: u32 = 10;
/// One more begin line is allowed per this much time.
pub(crate) const REFILL: Duration = Duration::from_secs(1);

type Key = (u64, &'static Location<'static>);

/// One fiber-and-site's aggregation window.
struct Repeats {
    since: Instant,
    /// Stalls after the first one in this window.
    times: u32,
    worst: Duration,
    kind: StallKind,
    who: String,
}

/// What happened to a begin line: the end line follows suit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Printed,
    Aggregated,
    Limited,
}

/// The monitor's sink for the default report. Monitor thread only.
pub(crate) struct StallLog {
    repeats: HashMap<Key, Repeats>,
    tokens: u32,
    refilled: Instant,
    limited: u32,
    /// Where the lines go: stderr, or a test's buffer.
    out: Box<dyn FnMut(&str) + Send>,
}

impl StallLog {
    pub(crate) fn new(now: Instant) -> StallLog {
        // Straight to fd 2, not under std's stderr lock (`monitor.rs`, `say!`).
        StallLog::with_sink(
            now,
            Box::new(|line| crate::sys::write_stderr(format!("{line}\n").as_bytes())),
        )
    }

    pub(crate) fn with_sink(now: Instant, out: Box<dyn FnMut(&str) + Send>) -> StallLog {
        StallLog {
            repeats: HashMap::new(),
            tokens: BURST,
            refilled: now,
            limited: 0,
            out,
        }
    }

    /// A stall began: admits and prints its begin line ([`admit`](Self::admit), then
    /// [`print_begin`](Self::print_begin) if admitted).
    #[cfg(test)]
    pub(crate) fn began(&mut self, r: &StallReport, now: Instant) -> Shown {
        let shown = self.admit(r, now);
        if shown == Shown::Printed {
            self.print_begin(r);
        }
        shown
    }

    /// Prints the begin line of a stall that [`admit`](Self::admit) let through.
    pub(crate) fn print_begin(&mut self, r: &StallReport) {
        (self.out)(&r.to_string());
    }

    /// A stall began: is its begin line printed, folded into a repeat count or held back by
    /// the rate limit? (The monitor takes the stack only for lines that print.)
    pub(crate) fn admit(&mut self, r: &StallReport, now: Instant) -> Shown {
        let key = (r.fiber_id.as_u64(), r.spawned_at);
        if let Some(rep) = self.repeats.get_mut(&key) {
            rep.times += 1;
            rep.kind = r.kind;
            return Shown::Aggregated;
        }
        self.repeats.insert(
            key,
            Repeats {
                since: now,
                times: 0,
                worst: Duration::ZERO,
                kind: r.kind,
                who: r.who(),
            },
        );
        self.refill(now);
        if self.tokens == 0 {
            self.limited += 1;
            return Shown::Limited;
        }
        self.tokens -= 1;
        Shown::Printed
    }

    /// The stall that began as `shown` ended after `lasted`; `r` is judged over all of it.
    pub(crate) fn ended(&mut self, r: &StallReport, lasted: Duration, shown: Shown) {
        let key = (r.fiber_id.as_u64(), r.spawned_at);
        if let Some(rep) = self.repeats.get_mut(&key) {
            rep.worst = rep.worst.max(lasted);
        }
        if shown == Shown::Printed {
            (self.out)(&format!(
                "fibra: worker {} free again: {} was stuck {} ms ({})",
                r.worker,
                r.who(),
                lasted.as_millis(),
                r.cause_short()
            ));
        }
    }

    /// Closes the windows that are over and notes what the rate limit held back. Call on every
    /// sample; cheap when nothing is pending.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.repeats.is_empty() && self.limited == 0 {
            return;
        }
        let mut lines = Vec::new();
        self.repeats.retain(|_, rep| {
            if now.duration_since(rep.since) < WINDOW {
                return true;
            }
            if rep.times == 0 {
                return false; // nothing repeated: the next stall starts afresh
            }
            lines.push(format!(
                "fibra: {} stalled {} more times in {} s, worst {} ms ({})",
                rep.who,
                rep.times,
                WINDOW.as_secs(),
                rep.worst.as_millis(),
                kind_word(rep.kind)
            ));
            (rep.since, rep.times, rep.worst) = (now, 0, Duration::ZERO);
            true
        });
        for l in lines {
            (self.out)(&l);
        }
        self.refill(now);
        if self.limited > 0 && self.tokens > 0 {
            self.tokens -= 1;
            let n = std::mem::take(&mut self.limited);
            (self.out)(&format!(
                "fibra: {n} more stall reports held back by the rate limit ({BURST} at once, \
                 then one a second)"
            ));
        }
    }

    fn refill(&mut self, now: Instant) {
        let gained = now.duration_since(self.refilled).as_nanos() / REFILL.as_nanos();
        if gained > 0 {
            let gained = u32::try_from(gained).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(gained).min(BURST);
            self.refilled = now;
        }
    }
}

/// One or two words for a kind, for the end and summary lines.
pub(crate) fn kind_word(kind: StallKind) -> &'static str {
    match kind {
        StallKind::Futex => "a std::sync lock or condvar",
        StallKind::Deadlock => "a deadlock on a std::sync lock",
        StallKind::Socket => "a socket call",
        StallKind::File => "a file",
        StallKind::Sleep => "std::thread::sleep",
        StallKind::Syscall => "a system call",
        StallKind::CpuLoop => "a CPU loop",
        StallKind::Preempted => "waiting for a core",
        StallKind::Spawning => "spawning",
        StallKind::Panicking => "a panic's backtrace",
        StallKind::Unknown => "cause unknown",
    }
}

impl StallReport {
    /// The cause in a few words, with the CPU time when known.
    pub(crate) fn cause_short(&self) -> String {
        match self.cpu_time {
            Some(c) => format!("{}, {} ms on a CPU", kind_word(self.kind), c.as_millis()),
            None => kind_word(self.kind).to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fiber::FiberId;
    use std::sync::{Arc, Mutex};

    fn report(id: u64) -> StallReport {
        StallReport {
            worker: 0,
            fiber_id: FiberId::new(id),
            fiber_name: None,
            spawned_at: Location::caller(),
            stuck_for: Duration::from_millis(12),
            kind: StallKind::Futex,
            cpu_time: None,
            syscall: Some("futex".into()),
            futex: None,
            holder: None,
            waiting: 3,
            spawned: 0,
            thread_state: Some('S'),
            stack: Vec::new(),
        }
    }

    fn log(now: Instant) -> (StallLog, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        let sink = Box::new(move |l: &str| l2.lock().unwrap().push(l.to_owned()));
        (StallLog::with_sink(now, sink), lines)
    }

    #[test]
    fn one_begin_and_one_end_then_repeats_are_summed_up() {
        let t0 = Instant::now();
        let (mut log, lines) = log(t0);
        let r = report(42);
        for i in 0..37u64 {
            let shown = log.began(&r, t0);
            log.ended(&r, Duration::from_millis(10 + i), shown);
            log.tick(t0);
        }
        assert_eq!(
            lines.lock().unwrap().len(),
            2,
            "{:?}",
            lines.lock().unwrap()
        );
        log.tick(t0 + WINDOW);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("stuck 12 ms in fiber 42"), "{lines:?}");
        assert!(lines[1].contains("free again") && lines[1].contains("stuck 10 ms"));
        assert!(
            lines[2].contains("fiber 42")
                && lines[2].contains("stalled 36 more times in 10 s, worst 46 ms"),
            "{lines:?}"
        );
    }

    #[test]
    fn the_stream_is_rate_limited() {
        let t0 = Instant::now();
        let (mut log, lines) = log(t0);
        for id in 1..=100 {
            let shown = log.began(&report(id), t0);
            log.ended(&report(id), Duration::from_millis(20), shown);
        }
        assert_eq!(lines.lock().unwrap().len(), 2 * BURST as usize);
        log.tick(t0 + REFILL);
        let lines = lines.lock().unwrap();
        assert!(
            lines
                .last()
                .unwrap()
                .contains("90 more stall reports held back"),
            "{lines:?}"
        );
    }
}
