//! The M:N scheduler: fibers multiplexed over worker OS threads.
//!
//! # Glossary
//! - A **fiber** runs on a **worker**: a slot (run queues, timers, stack cache) driven by one OS
//!   thread. Fibers are *ready* (queued), *run*, *park* and are *unparked*; workers *search*
//!   (spin looking for work), *sleep* and are *notified*. Work is *stolen* from another
//!   worker's ring (when `steal.rs` judges waiting the slower choice) or *injected* through
//!   the global queue.
//! - A fiber's **home** is the worker of its first run. Before that it is *movable* and may be
//!   stolen; afterwards it is *pinned* there, because a started fiber's stack may hold `!Send`
//!   values and thread-local addresses cached in registers (ARCHITECTURE.md §4). The unsafe
//!   migration opt-in (`RuntimeBuilder::migrate_started_fibers`) lifts the pin.
//!
//! # Queues of one worker, and who touches them
//! | queue | holds | pushed by | popped by |
//! |---|---|---|---|
//! | `run_next` | the fiber just woken by the running one; inherits the time slice (≤ 3 in a row) | owner | owner |
//! | `pinned` (FIFO) | started fibers woken or yielding here; new fibers placed here (`placement.rs`) | owner | owner |
//! | `local` ring (256) | movable fibers: new spawns; with migration, every fiber | owner | owner, stealers (half) |
//! | `inbox` | pinned fibers woken from other threads; new fibers placed here (`placement.rs`) | any thread | owner |
//! | global `inject` | spawns from outside; ring overflow; remote wakes under migration | any | any |
//!
//! # Fairness
//! Each scheduling tick takes `run_next` first (bounded streak), then alternates between the
//! `pinned` queue and the `local` ring; every 61 ticks the global queue goes first (Go's
//! number: a prime, so it does not beat in step with user loops), and the inbox is drained
//! into `pinned` whenever its flag is set. A yielding fiber goes to the back of `pinned`.
//!
//! The sleep/wake protocol is written in `idle.rs`; the state word in `fiber/state.rs`. A
//! worker sleeps inside its slot's I/O poller (`io/reactor`), so readiness, its next timer and
//! a notification all end the sleep.
//!
//! # Stuck workers
//! A worker whose thread stays inside one fiber run (a blocking syscall, FFI, a CPU loop) is
//! *stuck*. The *monitor* thread (`monitor.rs`, Go's sysmon) notices it from a run counter the
//! worker bumps at each run, moves its movable work to the global queue, polls its reactor
//! (a socket registered there may belong to a fiber elsewhere), fires its due timers under the
//! migration opt-in (their fibers may then run elsewhere), starts a *spare* worker on a
//! pre-allocated slot when nobody idle can take it, and reports the fiber. Slots
//! `0..workers` are the configured workers; slots `workers..workers + max_spare` are spares,
//! dormant until the monitor starts one, retired again when idle (`worker.rs`, `retire`).

pub(crate) mod anchor;
pub(crate) mod clock;
pub(crate) mod context;
mod idle;
mod inbox;
mod lock_holder;
pub(crate) mod monitor;
mod placement;
pub(crate) mod queue;
mod registry;
pub(crate) mod sessions;
mod shutdown;
mod spare;
pub(crate) mod stall;
mod stall_log;
pub(crate) mod stats;
mod steal;
pub(crate) mod worker;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blocking::BlockingPool;
use crate::fiber::{FiberRef, Header};
use crate::io::reactor::Reactor;
use crate::stack::StackPool;
use crate::time::Timers;
pub(crate) use idle::{Idle, Sleeper, Unblock};
use inbox::Inbox;
pub(crate) use inbox::Linked;
use monitor::RunSignal;
use queue::{Inject, Local, Stealer};
pub(crate) use registry::Registry;
use stall::StallReport;

/// What the runtime builder decided, fixed for a session.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) stack_size: usize,
    /// The unsafe opt-in: started fibers may move between workers.
    pub(crate) migrate: bool,
    pub(crate) thread_name: String,
    /// Blocking pool: most threads, and how long an idle one lingers.
    pub(crate) max_blocking_threads: usize,
    pub(crate) blocking_keep_alive: Duration,
    /// Whether the monitor thread runs; a run longer than this makes a worker stuck.
    pub(crate) monitor: bool,
    pub(crate) stall_threshold: Duration,
    /// Spare worker slots (threads the monitor may add while workers are stuck).
    pub(crate) max_spare_workers: usize,
    pub(crate) on_stall: Option<StallHook>,
    /// Operations a fiber may complete without parking before it yields (`coop.rs`).
    pub(crate) coop_budget: u32,
    /// One I/O poller for all workers instead of one each (`io/reactor`).
    pub(crate) shared_poller: bool,
    /// Panics in this session's fibers name the fiber (`debug/panic.rs`).
    pub(crate) panic_names_fiber: bool,
}

/// The user's stall hook (`RuntimeBuilder::on_stall`).
#[derive(Clone)]
pub(crate) struct StallHook(pub(crate) Arc<dyn Fn(&StallReport) + Send + Sync>);

impl fmt::Debug for StallHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StallHook(..)")
    }
}

/// The parts of a worker other threads reach.
pub(crate) struct WorkerSlot {
    pub(crate) stealer: Stealer<FiberRef>,
    inbox: Inbox<Header>,
    pub(crate) sleeper: Sleeper,
    /// The slot's poller: its owner thread polls it and sleeps in it (io/reactor).
    pub(crate) reactor: Arc<Reactor>,
    pub(crate) registry: Registry,
    /// What the monitor reads: the run counter and who runs (monitor.rs).
    pub(crate) signal: RunSignal,
    /// The ring's owner handle while no thread drives this slot (before the session starts,
    /// and a spare slot between uses).
    ring: Mutex<Option<Local<FiberRef>>>,
    /// Deadlines of the timed waits armed on this worker. Only its thread touches them, except
    /// the monitor under the migration opt-in: it fires a stuck worker's due timers so those
    /// fibers run elsewhere (`monitor.rs`). Uncontended otherwise (~20 ns a lock).
    pub(crate) timers: Mutex<Timers>,
    /// Counters written by this slot's driving thread only (`fibra::debug::metrics`).
    pub(crate) stats: stats::WorkerStats,
    /// Started fibers whose home this is (`placement.rs`).
    pub(crate) homed: placement::Homed,
}

impl WorkerSlot {
    /// Owner worker: everything woken for it from other threads (and new fibers placed here).
    #[inline(always)]
    pub(crate) fn take_inbox(&self, into: &RefCell<VecDeque<FiberRef>>) {
        // Checked inline, before borrowing `into`: this runs at every scheduling tick and the
        // inbox is almost always empty (an out-of-line call cost ~24 instructions a tick, and
        // plain `#[inline]` was not honoured inside the big scheduling loop: callgrind). The
        // worker reaches its slot through a cached pointer (`Worker::slot`), not by index.
        if !self.inbox.is_empty() {
            self.inbox.take_all(&mut into.borrow_mut());
        }
    }
}

/// One runtime session: everything its workers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) slots: Box<[WorkerSlot]>,
    pub(crate) inject: Inject<FiberRef>,
    pub(crate) idle: Idle,
    pub(crate) stacks: Arc<StackPool>,
    pub(crate) shutdown: AtomicBool,
    /// Fibers spawned and not yet finished (completed or unwound). Blocking-pool tasks are
    /// not fibers and do not count.
    pub(crate) live: AtomicUsize,
    /// The session's blocking pool (`fibra::spawn_blocking`, `fibra::run_blocking`).
    pub(crate) blocking: BlockingPool,
    /// Workers the monitor considers stuck now; a spare retires only when it is 0.
    pub(crate) stuck: AtomicUsize,
    /// Coarse session time for parked-since stamps (`clock.rs`).
    pub(crate) clock: clock::CoarseClock,
    /// Counters written by the monitor thread only (`fibra::debug::metrics`).
    pub(crate) monitor_stats: stats::MonitorStats,
    /// With `RuntimeBuilder::shared_poller`: the one poller every socket registers with, polled
    /// by whichever worker gets to it (`io/reactor`); the slots' own pollers then only sleep.
    pub(crate) shared_poller: Option<Arc<Reactor>>,
    /// The `Runtime` this session belongs to (`Runtime::key_addr`): what a `Handle` names.
    pub(crate) runtime_key: Arc<()>,
    /// Whether spawns from outside the session's fibers (`Handle::spawn` from a plain thread)
    /// are accepted. Such a spawner holds the lock across its whole spawn (`live` += 1, the
    /// global queue push); `finish_session` clears it under the lock *before* shutdown
    /// begins, so every accepted spawn is counted in `live` before a worker can see shutdown
    /// and wait for `live` to reach 0, and none comes after (no fiber stranded in a queue of
    /// a session that has ended, no `join` that waits for ever).
    pub(crate) accepts_outside: Mutex<bool>,
}

impl Shared {
    /// A session of the runtime `runtime_key`: `workers + max_spare_workers` slots, each
    /// with its ring.
    pub(crate) fn new(config: Config, runtime_key: Arc<()>) -> Shared {
        let slots = (0..config.workers + config.max_spare_workers)
            .map(|_| {
                let (local, stealer) = queue::local();
                let (reactor, waker) = Reactor::new().unwrap_or_else(|e| {
                    panic!("fibra: cannot create a worker's I/O poller (epoll): {e}")
                });
                WorkerSlot {
                    stealer,
                    inbox: Inbox::new(),
                    // The slot's thread sleeps in its poller; the poller's waker ends the sleep.
                    sleeper: Sleeper::external(Box::new(waker)),
                    reactor: Arc::new(reactor),
                    registry: Registry::default(),
                    signal: RunSignal::new(),
                    ring: Mutex::new(Some(local)),
                    timers: Mutex::new(Timers::default()),
                    stats: stats::WorkerStats::default(),
                    homed: placement::Homed::default(),
                }
            })
            .collect::<Box<[WorkerSlot]>>();
        let shared_poller = config.shared_poller.then(|| {
            let (poller, _waker) = Reactor::new().unwrap_or_else(|e| {
                panic!("fibra: cannot create the shared I/O poller (epoll): {e}")
            });
            for slot in slots.iter() {
                // A sleeping worker wakes when the shared poller has events (nested epoll).
                slot.reactor
                    .watch(&poller)
                    .unwrap_or_else(|e| panic!("fibra: cannot watch the shared I/O poller: {e}"));
            }
            Arc::new(poller)
        });
        Shared {
            shared_poller,
            idle: Idle::new(config.workers),
            blocking: BlockingPool::new(
                config.max_blocking_threads,
                config.blocking_keep_alive,
                format!("{}-blocking", config.thread_name),
                config.monitor,
            ),
            config,
            slots,
            inject: Inject::new(),
            stacks: Arc::new(StackPool::new()),
            shutdown: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            stuck: AtomicUsize::new(0),
            clock: clock::CoarseClock::new(),
            monitor_stats: stats::MonitorStats::default(),
            runtime_key,
            accepts_outside: Mutex::new(true),
        }
    }

    /// The thread about to drive slot `idx` takes its ring.
    pub(crate) fn take_ring(&self, idx: usize) -> Local<FiberRef> {
        let mut ring = self.slots[idx]
            .ring
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match ring.take() {
            Some(local) => local,
            None => fatal!("sched: slot {idx} started twice"),
        }
    }

    /// A retiring spare gives its (empty) ring back for the slot's next thread.
    pub(crate) fn return_ring(&self, idx: usize, local: Local<FiberRef>) {
        *self.slots[idx]
            .ring
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(local);
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
    pub(crate) fn send_to_inbox(&self, idx: usize, fiber: FiberRef) {
        let slot = &self.slots[idx];
        slot.inbox.push(fiber);
        slot.sleeper.wake_if_sleeping();
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
            slot.reactor.clear();
        }
        if let Some(poller) = &self.shared_poller {
            poller.clear();
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

/// Any thread: schedules a fiber that `unpark` just moved PARKED → SCHEDULED.
pub(crate) fn schedule_woken(fiber: FiberRef) {
    let home = fiber.home();
    let migrate = fiber.shared.config.migrate;
    context::with_worker(|w| {
        let here = w.filter(|w| Arc::ptr_eq(&w.shared, &fiber.shared));
        match (here, home) {
            // Run-next only when a running fiber woke it (it inherits that fiber's slice).
            // A waker the scheduler itself runs (a future's, from a poll or a timer) files
            // it in the queues, which the worker's poll reports (`Worker::poll_io`).
            (Some(w), Some(h)) if w.index == h || migrate => {
                w.schedule_started(fiber, !w.current.get().is_null())
            }
            // The session is reached through the fiber, which the queue takes: a clone of the
            // `Arc` only on these cross-thread paths (two contended RMWs per local wake-up
            // otherwise, ~8% of a ping-pong round trip).
            (_, Some(h)) if !migrate => fiber.shared.clone().send_to_inbox(h, fiber),
            _ => fiber.shared.clone().inject(fiber),
        }
    })
}

/// A session with one worker and no threads, for unit tests of the parts around it.
#[cfg(test)]
pub(crate) fn test_shared() -> Arc<Shared> {
    let config = Config {
        workers: 1,
        stack_size: crate::stack::DEFAULT_STACK_SIZE,
        migrate: false,
        thread_name: "test".into(),
        max_blocking_threads: 1,
        blocking_keep_alive: Duration::from_secs(1),
        monitor: false,
        stall_threshold: Duration::from_millis(10),
        max_spare_workers: 0,
        on_stall: None,
        coop_budget: crate::coop::DEFAULT_BUDGET,
        shared_poller: false,
        panic_names_fiber: true,
    };
    Arc::new(Shared::new(config, Arc::new(())))
}
