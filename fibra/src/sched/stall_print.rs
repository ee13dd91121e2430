//! Where the default stall log's lines are written: a thread of the lowest priority that
//! also symbolises the stacks of begin lines, off the monitor thread.
//!
//! # Why
//! Symbolising is the dearest part of a report: the first one loads the binary's debug info
//! (~100 ms of CPU inflating and parsing it, and tens of MiB allocated, each new page of them
//! a fault and, in a thread's arena, an `mprotect`). On the monitor thread that CPU came from
//! the cores the stuck worker and its peers run on, and the monitor sampled nothing
//! meanwhile: 100,000 sleepers spawned by the root fiber (reported as spawning) gave the
//! monitor thread 22% of the run's CPU samples, most of them symbolising. Now the monitor
//! does the cheap part that cannot wait (the copy of the stuck thread's stack, which must
//! show the stall as it is) and this thread the rest, at nice 19 (weight 15 against a
//! worker's 1,024): when a core has nothing better to do.
//!
//! # Order and the session's end
//! Every line of the log goes through this thread's queue, in the order the monitor wrote
//! them, so an end line never overtakes its begin line. The thread starts with the first
//! line and is joined, its queue written out, when the log is dropped at the monitor's end:
//! a session that ends right after a report waits for its symbolisation, as it did when the
//! monitor symbolised. Only the first symbolisation of a process is dear (later ones reuse the
//! loaded debug info), so that wait is one ~100 ms job at nice 19. Where the kernel groups
//! threads by session (autogroup, on by default) that priority counts only against this
//! process's own threads, mostly gone by then; where other processes in the same group keep
//! every core busy, it can stretch to seconds. Rejected: writing the queued begin lines
//! unsymbolised at the end, which bounds nothing (the dear job is the one under way).
//!
//! Rejected: `SCHED_IDLE`, which never runs while every core is busy (a report of a CPU loop
//! on each core would wait for the loops to end), and which an unprivileged thread cannot
//! leave. The `on_stall` hook still gets its report on the monitor thread, stack filled (its
//! documented contract): a hook is the user's choice of when to pay.

use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

use super::lock_holder::Holder;
use super::stall::{fiber_frames, LockHolder, StallReport};
use crate::fiber::FiberId;
use crate::sys::Snapshot;

/// A begin line whose stacks are still raw copies.
pub(crate) struct Begin {
    pub(crate) report: StallReport,
    /// The stuck thread's stack, copied when the stall was judged.
    pub(crate) stack: Option<Snapshot>,
    /// The fiber holding the lock of a deadlock, with its stack's copy.
    pub(crate) holder: Option<Holder>,
}

impl Begin {
    /// The report with its stacks unwound and symbolised.
    pub(crate) fn finish(self) -> StallReport {
        let Begin {
            mut report,
            stack,
            holder,
        } = self;
        if let Some(snap) = stack {
            let frames = crate::sys::unwind(snap.ip, snap.sp, snap.bp, &snap.stack);
            report.stack = fiber_frames(crate::sys::symbolise(&frames));
        }
        report.holder = holder.map(|h| LockHolder {
            fiber_id: FiberId::new(h.fiber.identity.id),
            fiber_name: h.fiber.identity.name.as_deref().map(str::to_owned),
            spawned_at: h.fiber.identity.location,
            stack: h.frames(),
        });
        report
    }
}

/// One line of the log.
pub(crate) enum Line {
    Text(String),
    Begin(Box<Begin>),
    /// Test only: code to run on the printer thread, in its turn.
    #[cfg(test)]
    Probe(Box<dyn FnOnce() + Send>),
}

impl Line {
    /// The line as written (a begin line is symbolised first: the dear part).
    pub(crate) fn into_text(self) -> String {
        match self {
            Line::Text(t) => t,
            Line::Begin(b) => b.finish().to_string(),
            #[cfg(test)]
            Line::Probe(f) => {
                f();
                String::new()
            }
        }
    }
}

/// Writes lines to stderr from its own low-priority thread. Monitor thread only.
pub(crate) struct Printer {
    name: String,
    tx: Option<Sender<Line>>,
    thread: Option<JoinHandle<()>>,
    /// The thread could not start: lines are written by the caller.
    no_thread: bool,
}

impl Printer {
    /// A printer whose thread, once started, is called `name`.
    pub(crate) fn new(name: String) -> Printer {
        Printer {
            name,
            tx: None,
            thread: None,
            no_thread: false,
        }
    }

    /// Queues `line` for the printer thread (started on first use); writes it here if that
    /// thread cannot start.
    pub(crate) fn print(&mut self, line: Line) {
        if self.tx.is_none() && !self.no_thread {
            self.start();
        }
        let line = match &self.tx {
            Some(tx) => match tx.send(line) {
                Ok(()) => return,
                Err(mpsc::SendError(line)) => line, // the thread died: a bug, but keep the line
            },
            None => line,
        };
        write(line);
    }

    fn start(&mut self) {
        let (tx, rx) = mpsc::channel::<Line>();
        let started = thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                // Failure leaves the thread at the monitor's priority: as before this module.
                let _ = crate::sys::lower_own_priority();
                rx.into_iter().for_each(write);
            });
        match started {
            Ok(t) => (self.tx, self.thread) = (Some(tx), Some(t)),
            Err(_) => self.no_thread = true,
        }
    }
}

impl Drop for Printer {
    /// Writes out the queue and joins the thread: every line is out before the session ends.
    fn drop(&mut self) {
        drop(self.tx.take()); // ends the thread's loop once the queue is empty
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // a panic there was already reported on stderr
        }
    }
}

/// Straight to fd 2, not under std's stderr lock (`monitor.rs`, `say!`).
fn write(line: Line) {
    let mut text = line.into_text();
    #[cfg(test)]
    if text.is_empty() {
        return; // a probe
    }
    text.push('\n');
    crate::sys::write_stderr(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread.
    fn own_nice() -> i32 {
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        // SAFETY: `getpriority` reads only its arguments; `tid` names this thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
    }

    #[test]
    fn lines_are_written_in_order_by_a_lowest_priority_thread_joined_on_drop() {
        let mut printer = Printer::new("fibra-test-print".into());
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            printer.print(Line::Probe(Box::new(move || {
                let _ = tx.send((i, own_nice(), thread::current().id()));
            })));
        }
        let seen: Vec<_> = rx.iter().take(3).collect();
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(seen.iter().all(|s| s.1 == 19), "nice 19: {seen:?}");
        assert!(seen.iter().all(|s| s.2 != thread::current().id()));
        assert_ne!(own_nice(), 19, "the caller's priority is untouched");
        let printed_after_drop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = printed_after_drop.clone();
        printer.print(Line::Probe(Box::new(move || {
            thread::yield_now();
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })));
        drop(printer);
        // Relaxed suffices: `join` in the drop orders the store before this load.
        assert!(
            printed_after_drop.load(std::sync::atomic::Ordering::Relaxed),
            "drop writes out the queue and joins the thread"
        );
    }
}
