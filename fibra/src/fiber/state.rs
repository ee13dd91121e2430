//! The fiber's state word: one `AtomicU32`, each transition a method that returns what the
//! caller must do next.
//!
//! ```text
//!                 suspend(Park), no NOTIFIED
//!   SCHEDULED ──────────────────────────────▶ PARKED
//!   (queued or   ◀────────── unpark ─────────┘  │
//!    running)                                   │ shutdown's registry walk
//!      │ returns       popped at shutdown       ▼
//!      ▼           ─────────────────────▶  CANCELLING ──▶ COMPLETE
//!   COMPLETE                                   ▲
//!      ▲        its own park sees CANCEL_REQUESTED │ (+ SELF_CANCEL)
//!      └── SCHEDULED ◀─────────────────────────────┘ payload dropped (cancel ends)
//! ```
//! `NOTIFIED` is the wake-up token of `park`/`unpark` (std's thread parking semantics): an
//! `unpark` that finds the fiber SCHEDULED sets it, and the next `park` consumes it instead of
//! switching out.
//!
//! Queued and running share one state: who holds the fiber's queue entry owns its next run,
//! so nothing needs to tell them apart, and a hand-off costs one atomic read-modify-write (the
//! park) instead of two. The run queues' Release/Acquire order a fiber's writes before its next
//! run on another worker. Shutdown claims a fiber either by popping it from a queue (it is then
//! SCHEDULED and the popper owns it) or, for a parked one, with the PARKED → CANCELLING CAS;
//! a running fiber is neither, so it is never claimed.
//!
//! # Cancellation (`JoinHandle::cancel`, fiber/cancel.rs)
//! `request_cancel` sets the sticky `CANCEL_REQUESTED` bit and wakes the fiber like an unpark
//! (PARKED → SCHEDULED, or the `NOTIFIED` token). The fiber acts on it itself, on its own
//! stack, at a park: `take_cancel_request` moves it SCHEDULED → CANCELLING with `SELF_CANCEL`
//! (it is running, so it owns the word's lifecycle), and it unwinds. While CANCELLING it
//! never switches out (parks and yields return at once, as in shutdown's unwind), so
//! shutdown can never claim it; `SELF_CANCEL` tells its root frame (and `end_self_cancel`)
//! the unwind is its own, not shutdown's forced one. Every transition below keeps the flag
//! bits it does not own: `transition_to_parked` and `unpark` carry `CANCEL_REQUESTED` over.

use crate::loom::{AtomicU32, Ordering::*};

const SCHEDULED: u32 = 0;
const PARKED: u32 = 1;
const CANCELLING: u32 = 2;
const COMPLETE: u32 = 3;
const LIFECYCLE: u32 = 0b11;
/// Set by `unpark` while the fiber is scheduled; consumed by the next `park`.
const NOTIFIED: u32 = 1 << 2;
/// Set by `request_cancel`; consumed by the fiber's own `take_cancel_request`. Sticky across
/// parks (a park that must not unwind, `park_uncancellable`, leaves it for a later one).
const CANCEL_REQUESTED: u32 = 1 << 3;
/// With CANCELLING: the fiber unwinds because of its own cancel request, not shutdown.
const SELF_CANCEL: u32 = 1 << 4;

pub(crate) struct State(AtomicU32);

/// Where the word sits in `State` (the debugger anchor, sched/anchor.rs, reads it).
pub(crate) const WORD_OFFSET: usize = std::mem::offset_of!(State, 0);
/// The lifecycle mask and its values for scheduled, parked, cancelling, complete, as the
/// debugger anchor documents them.
pub(crate) const DEBUGGER_LIFECYCLE: (u32, [u32; 4]) =
    (LIFECYCLE, [SCHEDULED, PARKED, CANCELLING, COMPLETE]);

/// What the worker does with a fiber that just suspended to park.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterPark {
    /// Parked: the worker lets go; whoever unparks it schedules it.
    Parked,
    /// An unpark arrived while it was switching out: run it again.
    Requeue,
}

/// What `unpark` must do.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterUnpark {
    /// The fiber was parked and is now SCHEDULED: the caller queues it, adopting the parked
    /// state's reference count (header.rs, "Reference counts").
    Schedule,
    /// Nothing to do (token set, already scheduled, or finished).
    Done,
}

/// What `request_cancel` must do.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterCancel {
    /// The fiber was parked and is now SCHEDULED (with the request): the caller queues it,
    /// adopting the parked state's reference count, as after `AfterUnpark::Schedule`.
    Schedule,
    /// The request is recorded (the fiber runs or is queued, and a token makes its next park
    /// return), or there is nothing to cancel (unwinding already, or finished).
    Done,
}

impl State {
    /// A new fiber is SCHEDULED: spawn pushes it onto a run queue.
    pub(crate) fn new() -> State {
        State(AtomicU32::new(SCHEDULED))
    }

    /// Inside the fiber, before switching out to park: consumes a pending token.
    /// Returns true if there was one (then `park` returns without switching).
    pub(crate) fn take_notified(&self) -> bool {
        if self.0.load(Relaxed) & NOTIFIED == 0 {
            return false;
        }
        // Acquire pairs with the AcqRel of `unpark`: writes before the unpark are visible.
        self.0.fetch_and(!NOTIFIED, Acquire) & NOTIFIED != 0
    }

    /// SCHEDULED → PARKED after the fiber switched out to park. The running worker only.
    pub(crate) fn transition_to_parked(&self) -> AfterPark {
        let mut cur = self.0.load(Relaxed);
        loop {
            debug_assert_eq!(cur & LIFECYCLE, SCHEDULED);
            let flags = cur & !(LIFECYCLE | NOTIFIED); // a cancel request stays
            let (next, after) = if cur & NOTIFIED != 0 {
                (flags | SCHEDULED, AfterPark::Requeue) // token consumed: park returns when it runs
            } else {
                (flags | PARKED, AfterPark::Parked)
            };
            // Release publishes the fiber's writes to whoever unparks it (pairs with the
            // Acquire side of `unpark`'s AcqRel); Acquire pairs with the token's Release.
            match self.0.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(_) => return after,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Any thread. PARKED → SCHEDULED (the caller queues it), or sets the token.
    ///
    /// Always a read-modify-write, even when the token looks set already (std's parker swaps
    /// for the same reason): a plain load may see a token the fiber is consuming right now,
    /// and then nothing orders the caller's writes before the fiber's re-check, which loses
    /// the wake-up (loom: `unpark_after_condition_is_never_lost`; it hung `sched_pinning`).
    pub(crate) fn unpark(&self) -> AfterUnpark {
        let mut cur = self.0.load(Relaxed);
        loop {
            let next = match cur & LIFECYCLE {
                PARKED => (cur & !LIFECYCLE) | SCHEDULED,
                SCHEDULED => cur | NOTIFIED,
                _ => return AfterUnpark::Done,
            };
            // AcqRel: Release publishes the waker's writes to the fiber (pairs with
            // `take_notified` / `transition_to_parked`); Acquire pairs with `transition_to_parked`.
            match self.0.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(_) if cur & LIFECYCLE == PARKED => return AfterUnpark::Schedule,
                Ok(_) => return AfterUnpark::Done,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Any thread (`JoinHandle::cancel`): records a cancel request and wakes the fiber, as
    /// `unpark` does. A no-op once the fiber unwinds or has finished.
    pub(crate) fn request_cancel(&self) -> AfterCancel {
        let mut cur = self.0.load(Relaxed);
        loop {
            let next = match cur & LIFECYCLE {
                PARKED => (cur & !LIFECYCLE) | SCHEDULED | CANCEL_REQUESTED,
                SCHEDULED => cur | CANCEL_REQUESTED | NOTIFIED,
                _ => return AfterCancel::Done,
            };
            // AcqRel, as in `unpark`: the same hand-off of a parked fiber, and the request is
            // seen by the fiber's check after the park it ends (same word, coherence).
            match self.0.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(_) if cur & LIFECYCLE == PARKED => return AfterCancel::Schedule,
                Ok(_) => return AfterCancel::Done,
                Err(actual) => cur = actual,
            }
        }
    }

    /// True if a cancel request waits for the fiber's next (cancellable) park. Any thread.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.0.load(Relaxed) & CANCEL_REQUESTED != 0
    }

    /// The running fiber itself, at a park: SCHEDULED with a request → CANCELLING with
    /// `SELF_CANCEL` (the request and any token consumed). True if the caller must now unwind.
    pub(crate) fn take_cancel_request(&self) -> bool {
        let mut cur = self.0.load(Relaxed);
        while cur & CANCEL_REQUESTED != 0 && cur & LIFECYCLE == SCHEDULED {
            // Acquire pairs with `request_cancel`'s Release: what the canceller did before
            // `cancel()` is visible to the destructors that now run.
            match self
                .0
                .compare_exchange_weak(cur, CANCELLING | SELF_CANCEL, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// The running fiber itself: SCHEDULED → CANCELLING with `SELF_CANCEL`, whether or not a
    /// request is pending (a scope re-raising the cancellation it held back).
    pub(crate) fn begin_self_cancel(&self) {
        let mut cur = self.0.load(Relaxed);
        while cur & LIFECYCLE == SCHEDULED {
            match self
                .0
                .compare_exchange_weak(cur, CANCELLING | SELF_CANCEL, Acquire, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The fiber's own cancellation ended (its payload was dropped: caught by its root frame,
    /// or by user code): CANCELLING with `SELF_CANCEL` → SCHEDULED, so its later parks park
    /// again. A no-op in any other state (shutdown's CANCELLING, COMPLETE). Any thread (a
    /// payload can be sent away), but only the fiber can be in the source state, and it is
    /// running then: the lifecycle stays its worker's.
    /// True if it did end one.
    pub(crate) fn end_self_cancel(&self) -> bool {
        let mut cur = self.0.load(Relaxed);
        while cur & (LIFECYCLE | SELF_CANCEL) == CANCELLING | SELF_CANCEL {
            match self
                .0
                .compare_exchange_weak(cur, SCHEDULED, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// True while shutdown (not the fiber's own cancel request) unwinds the fiber.
    pub(crate) fn is_shutdown_cancelling(&self) -> bool {
        self.0.load(Relaxed) & (LIFECYCLE | SELF_CANCEL) == CANCELLING
    }

    /// Shutdown, registry walk: PARKED → CANCELLING. True if the caller now owns the fiber's
    /// unwinding and adopts the parked state's reference count.
    pub(crate) fn claim_parked(&self) -> bool {
        let mut cur = self.0.load(Relaxed);
        while cur & LIFECYCLE == PARKED {
            // Acquire pairs with `transition_to_parked`'s Release: the unwinder sees the
            // fiber's last writes.
            match self
                .0
                .compare_exchange_weak(cur, CANCELLING, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// Shutdown, after popping a fiber from a run queue (which made the caller the owner of
    /// its next run): SCHEDULED → CANCELLING. False if it is not scheduled (a stale entry).
    pub(crate) fn claim_dequeued(&self) -> bool {
        let mut cur = self.0.load(Relaxed);
        while cur & LIFECYCLE == SCHEDULED {
            match self
                .0
                .compare_exchange_weak(cur, CANCELLING, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
        false
    }

    /// → COMPLETE, after the fiber's stack is done with.
    pub(crate) fn transition_to_complete(&self) {
        // Release publishes the join packet (written by the fiber) to `is_complete`'s Acquire.
        self.0.store(COMPLETE, Release);
    }

    /// Any thread.
    pub(crate) fn is_complete(&self) -> bool {
        // Acquire pairs with `transition_to_complete`.
        self.0.load(Acquire) & LIFECYCLE == COMPLETE
    }

    /// True while the fiber is unwound, by shutdown or by its own cancel request: its waits
    /// return at once.
    pub(crate) fn is_cancelling(&self) -> bool {
        self.0.load(Relaxed) & LIFECYCLE == CANCELLING
    }

    /// For debugging output.
    pub(crate) fn describe(&self) -> &'static str {
        match self.0.load(Relaxed) & LIFECYCLE {
            SCHEDULED => "scheduled",
            PARKED => "parked",
            CANCELLING => "cancelling",
            _ => "complete",
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The fiber's side of a park: parks unless a token is already there. True if it stays
    /// runnable (a token, or a wake between its park and the worker's switch-out).
    fn fiber_parks_or_requeues(s: &State) -> bool {
        s.take_notified() || s.transition_to_parked() == AfterPark::Requeue
    }

    /// A fiber parks while another thread unparks it: whatever the interleaving, the fiber
    /// ends up either requeued by the worker or scheduled by the unparker — exactly once.
    #[test]
    fn park_unpark_no_lost_wakeup() {
        loom::model(|| {
            let s = Arc::new(State::new());
            let s2 = s.clone();
            let waker = thread::spawn(move || s2.unpark() == AfterUnpark::Schedule);
            let requeued = fiber_parks_or_requeues(&s);
            let scheduled = waker.join().unwrap();
            assert!(
                requeued ^ scheduled,
                "requeued={requeued} scheduled={scheduled}"
            );
        });
    }

    /// The hand-shake that hung `sched_pinning` on 2 cores: a stale token is pending, the
    /// waker publishes a condition then unparks, the fiber consumes the token, checks the
    /// condition and parks. If the fiber parked without seeing the condition, the unpark must
    /// have scheduled it. `unpark` used to return on a plain load that saw the (about to be
    /// consumed) token: no read-modify-write, so nothing ordered the waker's condition before
    /// the fiber's check (store-buffer pattern) and the wake-up was lost.
    #[test]
    fn unpark_after_condition_is_never_lost() {
        use loom::sync::atomic::AtomicBool;
        loom::model(|| {
            let s = Arc::new(State::new());
            assert_eq!(s.unpark(), AfterUnpark::Done); // a stale token
            let cond = Arc::new(AtomicBool::new(false));
            let waker = {
                let (s, cond) = (s.clone(), cond.clone());
                thread::spawn(move || {
                    cond.store(true, Release);
                    s.unpark() == AfterUnpark::Schedule
                })
            };
            // The fiber: `while !cond { park() }`, one spurious return then a real park.
            assert!(s.take_notified() || s.0.load(Relaxed) & NOTIFIED == 0);
            let parked = !cond.load(Acquire)
                && !s.take_notified()
                && s.transition_to_parked() == AfterPark::Parked;
            let scheduled = waker.join().unwrap();
            assert!(
                !parked || scheduled,
                "parked without seeing the condition, and no wake"
            );
        });
    }

    /// Two unparkers race a park: the fiber is scheduled exactly once.
    #[test]
    fn double_unpark_schedules_once() {
        loom::model(|| {
            let s = Arc::new(State::new());
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    thread::spawn(move || s.unpark() == AfterUnpark::Schedule)
                })
                .collect();
            let requeued = s.transition_to_parked() == AfterPark::Requeue;
            let scheduled = ts
                .into_iter()
                .map(|t| t.join().unwrap() as u32)
                .sum::<u32>();
            assert_eq!(requeued as u32 + scheduled, 1);
        });
    }

    /// Shutdown's registry claim races an unpark of a parked fiber: exactly one of them
    /// takes the parked reference (claim, or schedule), never both.
    #[test]
    fn claim_parked_vs_unpark() {
        loom::model(|| {
            let s = Arc::new(State::new());
            assert_eq!(s.transition_to_parked(), AfterPark::Parked);
            let s2 = s.clone();
            let t = thread::spawn(move || s2.unpark() == AfterUnpark::Schedule);
            let claimed = s.claim_parked();
            let scheduled = t.join().unwrap();
            assert!(
                claimed ^ scheduled,
                "claimed={claimed} scheduled={scheduled}"
            );
            if scheduled {
                // Now queued: only the queue's popper may claim it.
                assert!(s.claim_dequeued());
            }
            assert!(s.is_cancelling());
        });
    }

    /// A cancel request races the fiber's park: whatever the interleaving the fiber is woken
    /// exactly once (requeued by its worker, or scheduled by the canceller), and its check
    /// after the park sees the request and starts its own unwind.
    #[test]
    fn cancel_vs_park_wakes_once_and_is_seen() {
        loom::model(|| {
            let s = Arc::new(State::new());
            let s2 = s.clone();
            let canceller = thread::spawn(move || s2.request_cancel() == AfterCancel::Schedule);
            let requeued = fiber_parks_or_requeues(&s);
            let scheduled = canceller.join().unwrap();
            assert!(
                requeued ^ scheduled,
                "requeued={requeued} scheduled={scheduled}"
            );
            // Resumed (by either path): the park's check.
            assert!(s.take_cancel_request());
            assert!(s.is_cancelling() && !s.is_shutdown_cancelling());
            assert!(s.end_self_cancel());
            assert!(!s.is_cancelling() && !s.cancel_requested());
        });
    }

    /// A request that arrives while the fiber waits in an uncancellable park survives the
    /// token's consumption and the next real park; shutdown's claim of the parked fiber
    /// wins over it (exactly one of them takes the parked reference).
    #[test]
    fn cancel_request_is_sticky_and_claim_parked_excludes_it() {
        loom::model(|| {
            let s = Arc::new(State::new());
            assert_eq!(s.request_cancel(), AfterCancel::Done); // running: request + token
            assert!(s.take_notified()); // an uncancellable park returns once...
            assert_eq!(s.transition_to_parked(), AfterPark::Parked); // ...then really parks
            assert!(s.cancel_requested());
            let s2 = s.clone();
            let t = thread::spawn(move || s2.request_cancel() == AfterCancel::Schedule);
            let claimed = s.claim_parked();
            let scheduled = t.join().unwrap();
            assert!(
                claimed ^ scheduled,
                "claimed={claimed} scheduled={scheduled}"
            );
            if scheduled {
                assert!(s.take_cancel_request()); // its own unwind: shutdown never claims it
                assert!(!s.claim_dequeued());
            } else {
                assert!(s.is_shutdown_cancelling());
                assert!(!s.take_cancel_request());
            }
        });
    }
}
