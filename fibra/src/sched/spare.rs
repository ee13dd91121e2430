//! Spare workers: threads the monitor starts on dormant slots while workers are stuck
//! (`monitor.rs`), and how they retire, so the runtime converges back to its configured size.
//!
//! # Retiring without stranding work
//! A spare retires when it has been idle for [`SPARE_IDLE`], no worker is stuck, and nothing
//! can still need it: its queues, inbox, timers and registry are empty (a started fiber homed
//! here is either running, queued in one of those queues, or parked and registered), and
//! the global queue and the other rings hold nothing. Only this thread pushes to its ring, and
//! only fibers homed here are sent to its inbox, so none of that can fill up behind it. The
//! one race is a notifier that chose this worker from the sleeping list just before it left
//! the list (`Idle::unregister_sleeping`, under the list's lock): the notifier pushed its work
//! before taking that lock, so the re-check after leaving the list sees the work and the spare
//! stays.

use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

use super::worker::Worker;

/// How long a spare stays idle before it retires. Starting a thread costs ~30-50 µs here, so
/// a slot restarts at most ~10 times a second: well under 0.1% of a core.
const SPARE_IDLE: Duration = Duration::from_millis(100);

impl Worker {
    /// Slots past the configured workers are spares.
    pub(super) fn is_spare(&self) -> bool {
        self.index >= self.shared.config.workers
    }

    /// A spare with nothing to do: sleeps at most until it has been idle for [`SPARE_IDLE`];
    /// returns true if it should retire now.
    pub(super) fn idle_spare(&self) -> bool {
        let now = Instant::now();
        let since = self.idle_since.get().unwrap_or(now);
        self.idle_since.set(Some(since));
        let idle_for = now - since;
        if idle_for >= SPARE_IDLE && self.can_retire() {
            return true;
        }
        let cap = SPARE_IDLE
            .saturating_sub(idle_for)
            .max(Duration::from_millis(1));
        self.sleep(Some(cap));
        false
    }

    /// Owner thread, not registered as sleeping (see the module header).
    fn can_retire(&self) -> bool {
        let slot = self.slot();
        let run_next = self.run_next_is_empty();
        self.shared.stuck.load(Relaxed) == 0
            && run_next
            && self.pinned.borrow().is_empty()
            && self.local.borrow().is_empty()
            && self.timers().is_empty()
            && slot.registry.is_empty()
            // Sockets registered here are polled only by this slot's thread (io/reactor).
            && !slot.reactor.has_registrations()
            && !self.shared.has_work_for(self.index)
    }

    /// After the loop, once the thread no longer drives the worker (`WorkerRegistration`):
    /// gives the (empty) ring back to the slot for its next spare, then frees the slot.
    pub(super) fn retire(self) {
        let shared = self.shared.clone();
        let index = self.index;
        shared.return_ring(index, self.local.into_inner());
        // Release: the ring is back before the monitor (Acquire) may start the slot again.
        shared.slots[index].signal.active.store(false, Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use crate::loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use crate::loom::sync::Arc;
    use crate::loom::thread;
    use crate::sched::Idle;

    /// A submitter pushes to the global queue and wakes a sleeper while spare worker 1, its
    /// sleep timed out, decides whether to retire (module header, "Retiring without stranding
    /// work"): if the submitter chose the spare, the spare sees the work and stays.
    #[test]
    fn retiring_spare_never_swallows_a_wake() {
        loom::model(|| {
            let idle = Arc::new(Idle::new(1));
            let work = Arc::new(AtomicBool::new(false)); // the global queue's length (Relaxed)
            let submitter = {
                let (idle, work) = (idle.clone(), work.clone());
                thread::spawn(move || {
                    work.store(true, Relaxed);
                    idle.worker_to_notify() == Some(1)
                })
            };
            // The spare: registered as sleeping, its timed sleep ends, it leaves the list,
            // then re-checks the queues.
            idle.register_sleeping(1);
            idle.unregister_sleeping(1);
            let retires = !work.load(Relaxed);
            let chose_spare = submitter.join().unwrap();
            assert!(
                !(chose_spare && retires),
                "the wake went to a retiring spare"
            );
        });
    }
}
