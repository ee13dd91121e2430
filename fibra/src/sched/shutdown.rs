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
use crate::fiber::{Claim, FiberRef};

/// Pause between passes while other workers are still unwinding fibers this one waits for.
const PASS_PAUSE: Duration = Duration::from_micros(50);

impl Worker {
    pub(crate) fn shutdown_phase(&self) {
        loop {
            while let Some(fiber) = self.pop_any() {
                self.cancel(&fiber);
            }
            for fiber in self.shared.slots[self.index].registry.snapshot() {
                if fiber.scoped_children.load(Acquire) == 0 {
                    self.cancel(&fiber);
                }
            }
            // Acquire pairs with `finish`'s Release: every other fiber's unwinding is done.
            if self.shared.live.load(Acquire) == 0 {
                break;
            }
            std::thread::sleep(PASS_PAUSE);
        }
        self.timers.borrow_mut().clear();
    }

    /// Unwinds (or, if it never ran, drops) a fiber this worker may destroy.
    fn cancel(&self, fiber: &FiberRef) {
        let foreign = fiber.home().is_some_and(|h| h != self.index);
        if foreign && !self.shared.config.migrate {
            return; // pinned elsewhere: its home worker unwinds it from its registry
        }
        if fiber.scoped_children.load(Acquire) != 0 {
            return;
        }
        let parked_ref = match fiber.state.claim_for_cancel() {
            Claim::No => return,
            Claim::Queued => None,
            // SAFETY: our PARKED → CANCELLING transition just succeeded.
            Claim::Parked => Some(unsafe { fiber.adopt_parked_ref() }),
        };
        // SAFETY: `claim_for_cancel` made this thread the owner of the fiber's stack and code.
        let (start, co) = unsafe { ((*fiber.start.get()).take(), (*fiber.coroutine.get()).take()) };
        drop(start); // never ran: its closure is `Send`, dropping it here is fine
        if let Some(co) = co {
            self.current.set(Arc::as_ptr(fiber));
            // Forces an unwind through the fiber's frames on this (its home) thread; the
            // fiber's root sees `is_cancelling` and records `JoinError::Cancelled`.
            let stack = co.into_stack();
            self.current.set(ptr::null());
            self.recycle_stack(stack);
        }
        self.finish(fiber);
        drop(parked_ref);
    }
}
