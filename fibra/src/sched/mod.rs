//! The M:N scheduler: fibers multiplexed over worker OS threads.
//!
//! # Glossary
//! - A **fiber** runs on a **worker**: a slot (run queues, timers, stack cache) driven by one OS
//!   thread. Fibers are *ready* (queued), *run*, *park* and are *unparked*; workers *search*
//!   (spin looking for work), *sleep* and are *notified*. Work is *stolen* from another
//!   worker's ring or *injected* through the global queue.
//! - A fiber's **home** is the worker of its first run. Before that it is *movable* and may be
//!   stolen; afterwards it is *pinned* there, because a started fiber's stack may hold `!Send`
//!   values and thread-local addresses cached in registers (ARCHITECTURE.md §4). The unsafe
//!   migration opt-in (`RuntimeBuilder::migrate_started_fibers`) lifts the pin.
//!
//! # Queues of one worker, and who touches them
//! | queue | holds | pushed by | popped by |
//! |---|---|---|---|
//! | `run_next` | the fiber just woken by the running one; inherits the time slice (≤ 3 in a row) | owner | owner |
//! | `pinned` (FIFO) | started fibers woken or yielding here | owner | owner |
//! | `local` ring (256) | movable fibers: new spawns; with migration, every fiber | owner | owner, stealers (half) |
//! | `inbox` | pinned fibers woken from other threads | any thread | owner |
//! | global `inject` | spawns from outside; ring overflow; remote wakes under migration | any | any |
//!
//! # Fairness
//! Each scheduling tick takes `run_next` first (bounded streak), then alternates between the
//! `pinned` queue and the `local` ring; every 61 ticks the global queue goes first (Go's
//! number: a prime, so it does not beat in step with user loops), and the inbox is drained
//! into `pinned` whenever its flag is set. A yielding fiber goes to the back of `pinned`.
//!
//! The sleep/wake protocol is written in `idle.rs`; the state word in `fiber/state.rs`.

pub(crate) mod context;
mod idle;
mod inbox;
pub(crate) mod queue;
mod registry;
mod shutdown;
pub(crate) mod worker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;

use crate::fiber::{FiberRef, Header};
use crate::stack::StackPool;
pub(crate) use idle::{Idle, Sleeper};
use inbox::Inbox;
pub(crate) use inbox::Linked;
use queue::{Inject, Stealer};
pub(crate) use registry::Registry;

/// What the runtime builder decided, fixed for a session.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    /// The unsafe opt-in: started fibers may move between workers.
    pub(crate) migrate: bool,
    pub(crate) thread_name: String,
}

/// The parts of a worker other threads reach.
pub(crate) struct WorkerSlot {
    pub(crate) stealer: Stealer<FiberRef>,
    inbox: Inbox<Header>,
    pub(crate) sleeper: Sleeper,
    pub(crate) registry: Registry,
}

/// One runtime session: everything its workers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) slots: Box<[WorkerSlot]>,
    pub(crate) inject: Inject<FiberRef>,
    pub(crate) idle: Idle,
    pub(crate) stacks: Arc<StackPool>,
    pub(crate) shutdown: AtomicBool,
    /// Fibers spawned and not yet finished (completed or unwound).
    pub(crate) live: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(config: Config, stealers: Vec<Stealer<FiberRef>>) -> Shared {
        let slots = stealers
            .into_iter()
            .map(|stealer| WorkerSlot {
                stealer,
                inbox: Inbox::new(),
                sleeper: Sleeper::new(),
                registry: Registry::default(),
            })
            .collect();
        Shared {
            idle: Idle::new(config.workers),
            config,
            slots,
            inject: Inject::new(),
            stacks: Arc::new(StackPool::new()),
            shutdown: AtomicBool::new(false),
            live: AtomicUsize::new(0),
        }
    }

    /// After pushing stealable work: wakes a sleeping worker unless one is already searching.
    pub(crate) fn notify_one(&self) {
        if let Some(idx) = self.idle.worker_to_notify() {
            self.slots[idx].sleeper.wake();
        }
    }

    /// Any thread: a movable fiber for whichever worker gets to it first.
    pub(crate) fn inject(&self, fiber: FiberRef) {
        self.inject.push(fiber);
        self.notify_one();
    }

    /// Any thread: a pinned fiber for worker `idx`.
    fn send_to_inbox(&self, idx: usize, fiber: FiberRef) {
        let slot = &self.slots[idx];
        slot.inbox.push(fiber);
        slot.sleeper.wake_if_sleeping();
    }

    /// Owner worker: everything woken for it from other threads.
    pub(crate) fn take_inbox(&self, idx: usize, into: &mut VecDeque<FiberRef>) {
        self.slots[idx].inbox.take_all(into);
    }

    pub(crate) fn inbox_pending(&self, idx: usize) -> bool {
        !self.slots[idx].inbox.is_empty()
    }

    /// Is there anything a worker `idx` could run (the sleep re-check)?
    pub(crate) fn has_work_for(&self, idx: usize) -> bool {
        self.inbox_pending(idx)
            || !self.inject.is_empty()
            || self.slots.iter().any(|s| !s.stealer.is_empty())
            || self.shutdown.load(Acquire)
    }

    /// After the workers exited: drops the references left in shared queues (late wakes), so
    /// no cycle keeps the session alive.
    pub(crate) fn release_queues(&self) {
        while self.inject.pop().is_some() {}
        for slot in self.slots.iter() {
            slot.inbox.take_all(&mut VecDeque::new());
        }
    }

    /// Sets the shutdown flag and wakes every worker.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Release);
        for slot in self.slots.iter() {
            slot.sleeper.wake();
        }
    }
}

/// Any thread: schedules a fiber that `unpark` just moved PARKED → QUEUED.
pub(crate) fn schedule_woken(fiber: FiberRef) {
    let shared = fiber.shared.clone();
    let home = fiber.home();
    context::with_worker(|w| {
        let here = w.filter(|w| Arc::ptr_eq(&w.shared, &shared));
        match (here, home) {
            (Some(w), Some(h)) if w.index == h || shared.config.migrate => {
                w.schedule_started(fiber, true)
            }
            (_, Some(h)) if !shared.config.migrate => shared.send_to_inbox(h, fiber),
            _ => shared.inject(fiber),
        }
    })
}

/// A session with one worker and no threads, for unit tests of the parts around it.
#[cfg(test)]
pub(crate) fn test_shared() -> Arc<Shared> {
    let (_local, stealer) = queue::local();
    let config = Config {
        workers: 1,
        stack_size: crate::stack::DEFAULT_STACK_SIZE,
        migrate: false,
        thread_name: "test".into(),
    };
    Arc::new(Shared::new(config, vec![stealer]))
}
