//! Shutdown: every worker unwinds what is left, so destructors run and stacks come back.
//!
//! A started fiber is unwound on its home worker (its stack may hold `!Send` values); a fiber
//! that never ran is dropped by whoever dequeues it. Workers repeat passes until no fiber of
//! the runtime is left (`Shared::live`). Two kinds of fiber wait for a later pass:
//! - one with unfinished scoped children (not claimed yet), so data borrowed by
//!   `fibra::scope` fibers outlives them;
//! - one whose `fibra::run_blocking` closure still runs on the pool (`Header::in_excursion`,
//!   checked after the claim): unwinding it would block this worker in the excursion's guard
//!   until the closure ends, and the closure may wait for another fiber of this very worker
//!   (blocking/excursion.rs). The claimed fiber stays in this worker's `excursions` list until
//!   the pool thread clears the mark, so the other fibers are unwound first. A closure that
//!   waits for something outside the runtime still holds the session's end until it returns.

use std::ptr;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;

use super::worker::Worker;
use crate::fiber::FiberRef;

/// Pause between passes while other workers are still unwinding fibers this one waits for.
const PASS_PAUSE: Duration = Duration::from_micros(50);
/// The longest pause between passes while only closures on the pool are awaited: they block
/// for as long as they like, and a pass costs a registry snapshot and a queue sweep.
const MAX_PASS_PAUSE: Duration = Duration::from_millis(1);

impl Worker {
    pub(crate) fn shutdown_phase(&self) {
        // Claimed fibers whose `fibra::run_blocking` closure still runs (module docs).
        let mut excursions: Vec<FiberRef> = Vec::new();
        let mut pause = PASS_PAUSE;
        loop {
            let mut waiting = Vec::new();
            while let Some(fiber) = self.pop_any() {
                self.cancel_dequeued(fiber, &mut waiting, &mut excursions);
            }
            waiting.into_iter().for_each(|f| self.push_back_started(f));
            for fiber in self.slot().registry.snapshot() {
                self.cancel_parked(&fiber, &mut excursions);
            }
            let before = excursions.len();
            excursions.retain(|fiber| {
                // Acquire pairs with the pool thread's Release clear (excursion.rs `finish`).
                let running = fiber.in_excursion.load(Acquire);
                if !running {
                    self.unwind(fiber); // its guard finds the job done (or nearly: it waits)
                }
                running
            });
            // Acquire pairs with `finish`'s Release: every other fiber's unwinding is done.
            if self.shared.live.load(Acquire) == 0 {
                break;
            }
            if !excursions.is_empty() {
                // Their closures may be queued behind a thread that could not start.
                self.shared.blocking.retry_start();
            }
            pause = if excursions.is_empty() || excursions.len() < before {
                PASS_PAUSE
            } else {
                (pause * 2).min(MAX_PASS_PAUSE)
            };
            std::thread::sleep(pause);
        }
        self.timers().clear();
    }

    /// A fiber popped from a run queue: this worker owns its next run.
    fn cancel_dequeued(
        &self,
        fiber: FiberRef,
        waiting: &mut Vec<FiberRef>,
        excursions: &mut Vec<FiberRef>,
    ) {
        let foreign = fiber.home().is_some_and(|h| h != self.index);
        if foreign && !self.shared.config.migrate {
            // Pinned elsewhere (a late wake sent it here?): put it back home to be unwound.
            return super::schedule_woken(fiber);
        }
        if fiber.scoped_children.load(Acquire) != 0 {
            // Its scoped children are still alive: it waits for a later pass.
            return waiting.push(fiber);
        }
        if fiber.state.claim_dequeued() {
            self.unwind_or_defer(fiber, excursions);
        }
    }

    /// A fiber of this worker's registry: unwound here if it is parked.
    fn cancel_parked(&self, fiber: &FiberRef, excursions: &mut Vec<FiberRef>) {
        if fiber.scoped_children.load(Acquire) == 0 && fiber.state.claim_parked() {
            // SAFETY: our PARKED → CANCELLING transition just succeeded.
            let parked_ref = unsafe { fiber.adopt_parked_ref() };
            self.unwind_or_defer(parked_ref, excursions);
        }
    }

    /// A fiber whose claim this worker just won: unwound now, or, while its `fibra::run_blocking`
    /// closure runs, kept (with the reference the claim gave us) for a later pass.
    fn unwind_or_defer(&self, fiber: FiberRef, excursions: &mut Vec<FiberRef>) {
        // Acquire: the claim's Acquire already shows the fiber's own store (it precedes its
        // park); this one pairs with the pool thread's Release clear.
        if fiber.in_excursion.load(Acquire) {
            excursions.push(fiber);
        } else {
            self.unwind(&fiber);
        }
    }

    /// Unwinds (or, if it never ran, drops) a fiber whose claim this worker won.
    fn unwind(&self, fiber: &FiberRef) {
        // SAFETY: the claim (`claim_parked` / `claim_dequeued`) made this thread the owner of
        // the fiber's stack and code; the `StartRef` is dropped below, before `fiber`.
        let (start, co) = unsafe { (fiber.take_start(), (*fiber.coroutine.get()).take()) };
        if let Some(start) = start {
            start.discard(); // never ran: its closure is `Send`, dropping it here is fine
        }
        if let Some(mut co) = co {
            self.current.set(Arc::as_ptr(fiber));
            // Unwinds the fiber's frames on this (its home) thread, running their destructors;
            // the fiber's root sees `is_cancelling` and records `JoinError::Cancelled`. Parks
            // and yields inside destructors return at once, so the unwinding runs to the end.
            co.force_unwind();
            let stack = co.into_stack();
            self.current.set(ptr::null());
            self.recycle_stack(stack);
            self.flush_deferred_wakes(); // its destructors may have received from a channel
        }
        self.finish(fiber);
    }
}
