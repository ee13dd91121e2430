//! Shutdown: every worker unwinds what is left, so destructors run and stacks come back.
//!
//! A started fiber is unwound on its home worker (its stack may hold `!Send` values); a fiber
//! that never ran is dropped by whoever dequeues it. A fiber with unfinished scoped children
//! waits for a later pass, so data borrowed by `fibra::scope` fibers outlives them. Workers
//! repeat passes until no fiber of the runtime is left (`Shared::live`).

use std::ptr;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;

use super::worker::Worker;
use crate::fiber::FiberRef;

/// Pause between passes while other workers are still unwinding fibers this one waits for.
const PASS_PAUSE: Duration = Duration::from_micros(50);

impl Worker {
    pub(crate) fn shutdown_phase(&self) {
        loop {
            let mut waiting = Vec::new();
            while let Some(fiber) = self.pop_any() {
                self.cancel_dequeued(fiber, &mut waiting);
            }
            waiting.into_iter().for_each(|f| self.push_back_started(f));
            for fiber in self.slot().registry.snapshot() {
                self.cancel_parked(&fiber);
            }
            // Acquire pairs with `finish`'s Release: every other fiber's unwinding is done.
            if self.shared.live.load(Acquire) == 0 {
                break;
            }
            std::thread::sleep(PASS_PAUSE);
        }
        self.timers().clear();
    }

    /// A fiber popped from a run queue: this worker owns its next run.
    fn cancel_dequeued(&self, fiber: FiberRef, waiting: &mut Vec<FiberRef>) {
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
            self.unwind(&fiber);
        }
    }

    /// A fiber of this worker's registry: unwound here if it is parked.
    fn cancel_parked(&self, fiber: &FiberRef) {
        if fiber.scoped_children.load(Acquire) == 0 && fiber.state.claim_parked() {
            // SAFETY: our PARKED → CANCELLING transition just succeeded.
            let parked_ref = unsafe { fiber.adopt_parked_ref() };
            self.unwind(fiber);
            drop(parked_ref);
        }
    }

    /// Unwinds (or, if it never ran, drops) a fiber whose claim this worker won.
    fn unwind(&self, fiber: &FiberRef) {
        // SAFETY: the claim (`claim_parked` / `claim_dequeued`) made this thread the owner of
        // the fiber's stack and code.
        let (start, co) = unsafe { ((*fiber.start.get()).take(), (*fiber.coroutine.get()).take()) };
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
