//! A worker: the loop that picks the next fiber, runs it until it switches out, and sleeps
//! when there is nothing to do. All of `Worker` is owner-thread only; `WorkerSlot` (mod.rs)
//! is what other threads see.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::hint::spin_loop;
use std::ptr;
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::context;
use super::placement::{Placement, Spot};
use super::queue::{Local, CAPACITY as LOCAL_CAPACITY};
use super::steal::StealPolicy;
use super::Shared;
use crate::fiber::header::{SpareHeaders, NOT_REGISTERED};
use crate::fiber::switch::FiberCoroutine;
use crate::fiber::{fiber_root, switch, AfterPark, FiberRef, Header, Suspend, Switched};
use crate::stack::LocalStackCache;
use crate::time::Timers;

/// A fiber woken by the running one may run next this many times in a row before the others
/// get a turn (tokio's cap: a ping-ponging pair must not starve the queue).
const MAX_RUN_NEXT_STREAK: u8 = 3;
/// Every this many ticks the global queue is served first (Go's 61: prime, so it does not
/// resonate with user loops).
const GLOBAL_QUEUE_INTERVAL: u32 = 61;
/// How long an idle worker searches before sleeping. A cross-worker wake costs a futex wake
/// (~5 µs on these VMs) when the target sleeps and ~100 ns when it is searching; 50 µs of
/// spinning covers a ping-pong partner's turn many times over at ≤ 1/2 of the cores.
const SEARCH_FOR: Duration = Duration::from_micros(50);
/// Search rounds (each polls the reactor once) of a worker that serves sockets before it
/// sleeps in `epoll_wait` (see `search`).
const IO_SEARCH_ROUNDS: u32 = 4;

/// Cold stacks returned to the kernel per idle pass: 32 × ~5 µs keeps a wake-up's extra
/// delay under ~0.2 ms.
const TRIM_BATCH: usize = 32;

pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// `&shared.slots[index]`, computed once: the scheduling loop reaches its slot several
    /// times a run, and the indexing (bounds check included) was ~37 instructions of a
    /// channel ping-pong round trip's ~1,210 (callgrind).
    slot: *const super::WorkerSlot,
    /// The fiber being resumed (or unwound) now; null between runs.
    pub(crate) current: Cell<*const Header>,
    pub(crate) local: RefCell<Local<FiberRef>>,
    run_next: Cell<Option<FiberRef>>,
    run_next_streak: Cell<u8>,
    pub(crate) pinned: RefCell<VecDeque<FiberRef>>,
    pub(crate) stacks: RefCell<LocalStackCache>,
    tick: Cell<u32>,
    /// Which of `pinned` and the ring the next pick tries first (flips every pick).
    ring_first: Cell<bool>,
    rng: Cell<u32>,
    /// This thread's copy of the slot's run counter (`RunSignal`: odd while a fiber runs).
    run_seq: Cell<u64>,
    /// Cooperative budget of the running fiber (`coop.rs`), reset at each run.
    pub(crate) budget: Cell<u32>,
    /// Spare workers: when the worker last ran out of work (`spare.rs`).
    pub(super) idle_since: Cell<Option<Instant>>,
    /// Header allocations of finished fibers, for this worker's next spawns.
    pub(crate) spare_headers: SpareHeaders,
    /// Wakes the running fiber asked to have delivered when it switches out (`defer_wake`).
    deferred_wakes: RefCell<Vec<Waker>>,
    /// When this worker, idle, steals from another (`steal.rs`).
    steal_policy: StealPolicy,
    /// Where this worker's new fibers start when it carries more than its share
    /// (`placement.rs`).
    placement: Placement,
}

impl Worker {
    /// Body of a worker OS thread driving slot `index`: runs until shutdown, then unwinds what
    /// is left. A spare worker (a slot past `config.workers`) may retire earlier (`spare.rs`).
    pub(crate) fn run_thread(index: usize, shared: Arc<Shared>) {
        crate::stack::ensure_alt_stack();
        let stacks = LocalStackCache::new(shared.stacks.clone());
        let local = shared.take_ring(index);
        let signal = &shared.slots[index].signal;
        let run_seq = signal.thread_start();
        // Release pairs with the monitor's Acquire load (a spare's starter set it already).
        signal.active.store(true, Release);
        let steal_policy = StealPolicy::new(shared.slots.len());
        let placement = Placement::new(shared.slots.len());
        let slot = std::ptr::from_ref(&shared.slots[index]);
        let worker = Worker {
            index,
            slot,
            shared,
            current: Cell::new(ptr::null()),
            local: RefCell::new(local),
            run_next: Cell::new(None),
            run_next_streak: Cell::new(0),
            pinned: RefCell::new(VecDeque::new()),
            stacks: RefCell::new(stacks),
            tick: Cell::new(0),
            ring_first: Cell::new(false),
            rng: Cell::new(0x9e37_79b9 ^ (index as u32 + 1).wrapping_mul(0x85eb_ca6b)),
            run_seq: Cell::new(run_seq + run_seq % 2),
            budget: Cell::new(0),
            deferred_wakes: RefCell::new(Vec::new()),
            idle_since: Cell::new(None),
            spare_headers: SpareHeaders::new(),
            steal_policy,
            placement,
        };
        let registered = context::WorkerRegistration::new(&worker);
        let retired = worker.run_loop();
        if !retired {
            worker.shutdown_phase();
        }
        drop(registered);
        if retired {
            worker.retire();
        }
    }

    /// The scheduling loop. Returns true if this spare worker retires, false at shutdown.
    fn run_loop(&self) -> bool {
        let spare = self.is_spare();
        while !self.shared.shutdown.load(Acquire) {
            if let Some(f) = self.next_local() {
                self.run(f);
            } else if self.fire_timers() || self.poll_io() {
                continue;
            } else if let Some(f) = self.search() {
                self.run(f);
            } else if spare {
                if self.idle_spare() {
                    return true;
                }
            } else {
                self.sleep(None);
            }
        }
        false
    }

    /// Local scheduling decision (see the fairness section in `sched/mod.rs`).
    fn next_local(&self) -> Option<FiberRef> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % GLOBAL_QUEUE_INTERVAL == 0 {
            // Timers are checked here and whenever the local queues run dry: reading the clock
            // costs ~80 ns on these VMs, too much for every tick.
            self.fire_timers();
            self.poll_io(); // a busy worker still serves its sockets (Go polls in findrunnable)
            self.offer_core();
            if let Some(f) = self.shared.inject.pop() {
                return Some(f);
            }
        }
        self.slot().take_inbox(&self.pinned);
        if let Some(f) = self.run_next.take() {
            if self.run_next_streak.get() < MAX_RUN_NEXT_STREAK {
                self.run_next_streak.set(self.run_next_streak.get() + 1);
                super::stats::bump(&self.slot().stats.run_next_hits);
                return Some(f);
            }
            self.push_back_started(f);
        }
        self.run_next_streak.set(0);
        let from_pinned = || self.pinned.borrow_mut().pop_front();
        let from_ring = || self.local.borrow_mut().pop();
        // Alternate on picks, not ticks: a ping-pong pair takes exactly 4 ticks per cycle
        // (3 run-next runs, then a pick), so a tick parity would always favour one queue and
        // starve the other (found by sched_fairness::ping_pong_pair_does_not_starve_a_new_fiber).
        let ring_first = !self.ring_first.get();
        self.ring_first.set(ring_first);
        let found = if !ring_first {
            from_pinned().or_else(from_ring)
        } else {
            from_ring().or_else(from_pinned)
        };
        found.or_else(|| self.pop_global())
    }

    /// The global queue's oldest fiber, and a fair share of the next ones moved into our ring
    /// (Go's `globrunqget`: `len / workers`, at most half a ring). A worker fed by the global
    /// queue (the thief of a spawner whose ring overflows) took its lock once per fiber, ~47
    /// instructions of a ~1,150-instruction spawn-and-join (callgrind, lab `churn`); now once
    /// per batch. The moved fibers have no home (the global queue holds only those, or, under
    /// the migration opt-in, fibers that may run anywhere), so the ring may hold them.
    fn pop_global(&self) -> Option<FiberRef> {
        let inject = &self.shared.inject;
        if inject.is_empty() {
            return None; // the common case, before the division and the ring's borrow
        }
        let share = (inject.len() / self.shared.config.workers.max(1)).min(LOCAL_CAPACITY / 2);
        let mut local = self.local.borrow_mut();
        inject.pop_batch(share, |f| local.push_if_room(f))
    }

    /// Idle: look for work for a while before sleeping. Stealing is left to at most half the
    /// busy workers (Go's rule, so an idle runtime does not burn every core); every idle
    /// worker, searching or not, keeps watching its own inbox, because its pinned fibers can
    /// only ever run here and a partner on another worker is likely to wake one within
    /// microseconds (a sleeping worker costs that wake a futex call, ~5-10 µs here).
    fn search(&self) -> Option<FiberRef> {
        let searching = self.shared.idle.try_start_searching();
        if searching {
            self.steal_policy.begin_search(&self.shared.slots);
        }
        let give_up = Instant::now() + SEARCH_FOR;
        let next_timer = self.timers().next_deadline();
        // A worker that serves sockets waits for them in `epoll_wait` rather than spinning
        // (may's workers do): the sleep ends on its sockets' readiness as soon as a poll
        // would, and a spin that never ends under steady load (requests arrive within
        // SEARCH_FOR) leaves the kernel no way to run the load's other threads but to preempt
        // the worker mid-run, with its pinned fibers behind it (docs/lab/IDLE.md).
        let serving_io = self.slot().reactor.has_registrations();
        let mut round = 0u32;
        let found = loop {
            if searching {
                if let Some(f) = self.steal().or_else(|| self.pop_global()) {
                    break Some(f);
                }
            }
            if self.shared.inbox_pending(self.index) {
                self.slot().take_inbox(&self.pinned);
                if let Some(f) = self.pinned.borrow_mut().pop_front() {
                    break Some(f);
                }
            }
            if round == 0 {
                self.offer_core(); // nothing of ours waits: the cheapest moment
            }
            // Readiness for this worker's sockets ends the search too (Go's spinning Ms poll
            // the network as well): without it a reply arriving while we spin waited for the
            // search to end, up to SEARCH_FOR (measured: a cross-worker TCP ping-pong went
            // from ~40-60 µs to ~ a round trip). Skipped when nothing is registered.
            if self.poll_io() {
                // Woken fibers are in `pinned`, or in the ring under the migration opt-in.
                let f = self.pinned.borrow_mut().pop_front();
                if let Some(f) = f.or_else(|| self.local.borrow_mut().pop()) {
                    break Some(f);
                }
            }
            if self.shared.shutdown.load(Relaxed) || serving_io && round >= IO_SEARCH_ROUNDS {
                break None;
            }
            round += 1;
            if round % 64 == 0 {
                // Reading the clock costs ~80 ns here: every 64th round is enough.
                let now = Instant::now();
                // A steal judgement under way keeps the search going (`steal.rs`).
                let judging = searching && self.steal_policy.watching();
                let over = now >= give_up && !(judging && now < give_up + super::steal::MAX_WAIT);
                if over || next_timer.is_some_and(|t| t <= now) {
                    break None;
                }
                // When the machine has more runnable threads than cores, a spinning worker
                // can hold the very core its partner needs to produce the work it waits for:
                // cross-worker ping-pong went from ~0.4 µs to ~110 µs a round trip with one
                // busy process beside it. Offering the core now and then (sched_yield every 64
                // rounds: ~10 µs there; every 8 rounds gave ~5.5 µs but cost ~20% on a quiet
                // machine, 494 vs 414 ns) lets the partner run.
            }
            if round % 64 == 32 {
                std::thread::yield_now();
            }
            spin_loop();
        };
        if searching && self.shared.idle.stop_searching() && found.is_some() {
            // The last searcher found work: wake another so the next spawn has a taker.
            self.shared.notify_one();
        }
        found
    }

    /// Steal half of some other worker's ring, starting at a random victim, if the steal
    /// policy finds one worth it (`steal.rs`).
    fn steal(&self) -> Option<FiberRef> {
        self.steal_where(|v| self.steal_policy.worth_stealing(v, &self.shared.slots[v]))
    }

    /// `steal`, from any victim with fibers queued: shutdown drains everything.
    fn steal_any(&self) -> Option<FiberRef> {
        self.steal_where(|_| true)
    }

    fn steal_where(&self, worth: impl Fn(usize) -> bool) -> Option<FiberRef> {
        let n = self.shared.slots.len();
        if n == 1 {
            return None;
        }
        let start = self.next_random() as usize % n;
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&v| v != self.index && worth(v))
            .find_map(|v| {
                self.shared.slots[v]
                    .stealer
                    .steal_into(&mut self.local.borrow_mut())
            })
            .inspect(|_| super::stats::bump(&self.slot().stats.steals))
    }

    /// Sleeps until notified, the next timer, or `cap` (spares), whichever comes first. Never
    /// while any ring holds fibers (`has_work_for`), so a steal judgement under way
    /// (`steal.rs`) goes on in the next search instead.
    pub(super) fn sleep(&self, cap: Option<Duration>) {
        // Idle time is when cold stacks go back to the kernel (never on the release path),
        // and spare header allocations to the allocator.
        self.spare_headers.clear();
        if self.shared.stacks.trim(TRIM_BATCH) > 0 {
            return; // look for work again before going to sleep
        }
        let idle = &self.shared.idle;
        idle.register_sleeping(self.index);
        if !self.shared.has_work_for(self.index) && !self.timers_due() {
            let timeout = self
                .timers()
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let timeout = match (timeout, cap) {
                (Some(t), Some(c)) => Some(t.min(c)),
                (t, c) => t.or(c),
            };
            let shared = &self.shared;
            let slot = self.slot();
            let mut woken = Vec::new();
            // The blocking primitive is the slot's poller: I/O readiness, the next timer and
            // `Sleeper::wake` (through the poller's waker) all end the sleep.
            slot.sleeper.sleep_in(
                timeout,
                || shared.inbox_pending(self.index),
                |t| slot.reactor.poll(t, &mut woken),
            );
            // Each released `FiberRef` is a waiter list's count, as a timer heap's is.
            for fiber in woken.into_iter().filter_map(crate::park::unpark_owned) {
                self.place_woken(fiber);
            }
            // The sleep may have ended for the shared poller's events (its nested fd).
            self.poll_shared();
        }
        idle.unregister_sleeping(self.index);
    }

    /// Polls the slot's reactor without blocking and makes the fibers it releases runnable;
    /// true if any became runnable here. Skipped while nothing is registered (a syscall saved).
    fn poll_io(&self) -> bool {
        let mut here = false;
        self.slot()
            .reactor
            .poll_now(|fiber| here |= self.place_woken(fiber));
        here | self.poll_shared() | self.woken_by_wakers()
    }

    /// Did a waker the scheduler ran (a future's, woken by a poll or a timer rather than
    /// handed back as a fiber) queue a fiber here? Called only where the local queues were
    /// empty before the poll (`run_loop`, `search`), so anything in them is new.
    fn woken_by_wakers(&self) -> bool {
        !self.pinned.borrow().is_empty() || !self.local.borrow().is_empty()
    }

    /// Polls the session's shared poller, if it has one (`RuntimeBuilder::shared_poller`),
    /// unless another worker is polling it; true if a fiber became runnable here.
    fn poll_shared(&self) -> bool {
        let mut here = false;
        if let Some(poller) = &self.shared.shared_poller {
            poller.poll_shared(|fiber| here |= self.place_woken(fiber));
        }
        here
    }

    /// A fiber this worker's timers or reactor just made runnable: queued here, or sent to its
    /// home if it is pinned elsewhere. True if it was queued here.
    fn place_woken(&self, fiber: FiberRef) -> bool {
        match fiber.home() {
            Some(h) if h != self.index && !self.shared.config.migrate => {
                super::schedule_woken(fiber);
                false
            }
            _ => {
                self.schedule_started(fiber, false);
                true
            }
        }
    }

    /// Runs `fiber` until it switches out, then files it where it belongs.
    fn run(&self, fiber: FiberRef) {
        if self.shared.shutdown.load(Acquire) {
            // Shutdown began after this fiber was picked: it is unwound, never resumed
            // (found by rt_shutdown::fibers_woken_during_shutdown_are_unwound_not_resumed).
            return self.leave_for_shutdown(fiber);
        }
        match fiber.home() {
            None if fiber.state.cancel_requested() => return self.discard_unstarted(fiber),
            None => {
                self.adopt(&fiber);
                if fiber.identity.name.is_some() {
                    // Named fibers are registered from their first run, so the monitor's stall
                    // report finds the name even when that run never parks. Unnamed ones wait
                    // for their first park (`register`): no registry traffic on the hot path.
                    self.register(&fiber);
                }
            }
            // The pinning rule (docs/SOUNDNESS.md §2), checked where it matters: resuming a
            // started fiber on another thread could reach the old thread's thread-locals.
            Some(home) if home != self.index && !self.shared.config.migrate => fatal!(
                "sched::worker::run: fiber {} of worker {home} picked by worker {}",
                fiber.identity.id,
                self.index
            ),
            Some(_) => {}
        }
        // The run counts from here, a first run's stack set-up included: thieves and the
        // monitor read a run that does not end as a worker that is stuck (`steal.rs`).
        let signal = &self.slot().signal;
        let seq = self.run_seq.get();
        signal.run_start(seq + 1, fiber.identity.id, fiber.identity.location);
        self.run_seq.set(seq + 2);
        // SAFETY: popping the fiber from a run queue made this worker the owner of the run (header.rs
        // field table), so nobody else touches the coroutine until it switches out.
        let slot = unsafe { &mut *fiber.coroutine.get() };
        if slot.is_none() {
            match self.create_coroutine(&fiber) {
                Ok(co) => *slot = Some(co),
                Err(e) => {
                    signal.run_end(seq + 2);
                    // SAFETY: as above; the joiner reads it only after COMPLETE.
                    unsafe { *fiber.start_error.get() = Some(Box::new(e)) };
                    return self.finish(&fiber);
                }
            }
        }
        let co = slot.as_mut().expect("created above");
        self.current.set(Arc::as_ptr(&fiber));
        self.idle_since.set(None);
        self.budget.set(self.shared.config.coop_budget);
        super::stats::record_wake(&fiber, &self.slot().stats);
        let switched = switch::resume(co);
        signal.run_end(seq + 2);
        self.current.set(ptr::null());
        match switched {
            Switched::Suspended(Suspend::Park) => match self.register_and_park(&fiber) {
                AfterPark::Requeue => self.push_back_started(fiber),
                AfterPark::Parked => Header::park_ref(fiber),
            },
            Switched::Suspended(Suspend::Yield) => self.push_back_started(fiber),
            Switched::Finished => self.complete(fiber),
        }
        self.flush_deferred_wakes();
    }

    /// A fiber cancelled (`JoinHandle::cancel`) before its first run: it never runs; its
    /// closure is dropped here, and its `join` reports `Cancelled`.
    fn discard_unstarted(&self, fiber: FiberRef) {
        // SAFETY: popping the fiber from a run queue made this worker the owner of its run
        // (header.rs field table); it never ran, so its code is still in the header; the
        // `StartRef` is dropped (by `discard`'s caller, here) before `fiber`.
        let start = unsafe { fiber.take_start() };
        if let Some(start) = start {
            start.discard(); // its closure is `Send`: dropping it on any worker is fine
        }
        self.finish(&fiber);
        self.spare_headers.recycle(fiber);
    }

    /// The running fiber's deferred wakes, now that it has switched out (or been unwound).
    #[inline]
    pub(super) fn flush_deferred_wakes(&self) {
        if self.deferred_wakes.borrow().is_empty() {
            return;
        }
        let wakes = std::mem::take(&mut *self.deferred_wakes.borrow_mut());
        wakes.into_iter().for_each(Waker::wake);
    }

    /// The running fiber: `waker` is woken when this fiber next switches out (parks, yields
    /// or finishes) instead of now. Returns it if no fiber runs here (the caller wakes it).
    ///
    /// For a wake that cannot matter before then: a channel receiver that moves a waiting
    /// sender's value into the slot it freed (`chan/channel.rs`) has completed that send; the
    /// sender would only come back for its next send, and while the receiver keeps running the
    /// buffer stays full. A sender on another worker woken at once comes back to a full buffer
    /// and parks again, one cross-thread round per item; woken at the receiver's switch-out it
    /// finds the buffer drained and sends a batch (8 → 1 through `bounded(128)` split over 2
    /// workers: see `examples/fan_in.rs`). The cost: a receiver that keeps running without any
    /// fibra call holds these wakes that long, as it holds its worker.
    pub(crate) fn defer_wake(&self, waker: Waker) -> Option<Waker> {
        if self.current.get().is_null() {
            return Some(waker);
        }
        self.deferred_wakes.borrow_mut().push(waker);
        None
    }

    /// Puts a fiber picked after shutdown began back where `shutdown_phase` drains from.
    fn leave_for_shutdown(&self, fiber: FiberRef) {
        if fiber.home().is_some() {
            self.push_back_started(fiber);
        } else {
            self.local
                .borrow_mut()
                .push_back(fiber, &self.shared.inject);
        }
    }

    /// First run: the fiber's stack comes from this worker's cache, and its code moves onto it.
    fn create_coroutine(&self, fiber: &FiberRef) -> Result<FiberCoroutine, crate::SpawnError> {
        // SAFETY: we own the run (see `run`); the `StartRef` moves into the coroutine, which
        // the header owns.
        let start = unsafe { fiber.take_start() };
        let Some(start) = start else {
            fatal!("sched::worker::run: fiber without code")
        };
        let stack = match self.stacks.borrow_mut().take(fiber.identity.stack_size) {
            Ok(stack) => stack,
            Err(e) => {
                // The fiber will never run: drop its closure now, as shutdown does, so what it
                // captured (a channel's sender, a lock guard) is let go before anyone joins.
                start.discard();
                return Err(e);
            }
        };
        stack.set_identity(&fiber.identity);
        // SAFETY: the header owns the coroutine and outlives it; `spawn_raw`'s caller promised
        // that the code's borrows outlive the fiber; `fiber_root` lets only forced unwinds
        // escape: `Start::run` catches the code's panics, and what it drops afterwards (the
        // fiber side, a detached result, the fiber-locals) aborts rather than unwind. All of
        // that happens on the fiber's stack, before COMPLETE.
        Ok(unsafe { switch::new_coroutine(stack, Arc::as_ptr(fiber), move || fiber_root(start)) })
    }

    /// First run: this worker becomes the fiber's home.
    fn adopt(&self, fiber: &FiberRef) {
        // Release pairs with `Header::home`'s Acquire in `schedule_woken`.
        fiber.home.store(self.index as u32, Release);
        self.slot().homed.arrive(self.shared.config.migrate);
    }

    fn register_and_park(&self, fiber: &FiberRef) -> AfterPark {
        self.register(fiber);
        fiber.state.transition_to_parked()
    }

    /// First park: the fiber enters its home's registry, where shutdown finds parked fibers.
    /// Done here rather than at the first run so fibers that never park (most short ones)
    /// cost no registry traffic; done before the PARKED transition, while we own the run.
    fn register(&self, fiber: &FiberRef) {
        if fiber.registry_key.load(Relaxed) == NOT_REGISTERED {
            let home = fiber.home().unwrap_or(self.index);
            let key = self.shared.slots[home].registry.insert(fiber.clone());
            fiber.registry_key.store(key as u32, Relaxed);
        }
    }

    fn complete(&self, fiber: FiberRef) {
        // SAFETY: the fiber finished on this thread; we still own its run.
        let co = unsafe { (*fiber.coroutine.get()).take() };
        if let Some(co) = co {
            self.recycle_stack(co.into_stack());
        }
        self.finish(&fiber);
        self.spare_headers.recycle(fiber);
    }

    pub(crate) fn recycle_stack(&self, stack: crate::stack::FiberStack) {
        stack.set_identity(ptr::null());
        self.stacks.borrow_mut().give(stack);
    }

    /// The fiber's stack is gone: deregister, publish completion, wake the joiner.
    pub(crate) fn finish(&self, fiber: &FiberRef) {
        let home = fiber.home();
        let key = fiber.registry_key.load(Relaxed);
        if key != NOT_REGISTERED {
            let slot = &self.shared.slots[home.unwrap_or(self.index)];
            slot.registry.remove(key as usize);
        }
        if let Some(home) = home {
            self.shared.slots[home]
                .homed
                .leave(self.shared.config.migrate);
        }
        fiber.state.transition_to_complete();
        fiber.wake_joiner();
        // Release pairs with shutdown's Acquire load of `live`.
        self.shared.live.fetch_sub(1, Release);
    }

    /// A started fiber that became runnable here. `lifo`: it was woken by the running fiber and
    /// inherits the time slice.
    pub(crate) fn schedule_started(&self, fiber: FiberRef, lifo: bool) {
        if lifo {
            if let Some(old) = self.run_next.replace(Some(fiber)) {
                self.push_back_started(old);
            }
        } else {
            self.push_back_started(fiber);
        }
    }

    pub(super) fn push_back_started(&self, fiber: FiberRef) {
        if self.shared.config.migrate {
            self.local
                .borrow_mut()
                .push_back(fiber, &self.shared.inject);
            self.shared.notify_one();
        } else {
            self.pinned.borrow_mut().push_back(fiber);
        }
    }

    /// A new fiber: stealable until it first runs, unless this worker carries more than its
    /// share of started fibers and sends it to start on another (`placement.rs`).
    /// `spread`: the spawner asked for the least loaded worker (`Builder::spread`).
    pub(crate) fn schedule_new(&self, fiber: FiberRef, spread: bool) {
        // The monitor tells a fiber spawning a batch from a CPU loop by this (`stall.rs`).
        super::stats::bump(&self.slot().stats.spawns);
        if !self.shared.config.migrate {
            let shared = &self.shared;
            let workers = shared.config.workers;
            if spread {
                match self.placement.spread(self.index, &shared.slots, workers) {
                    Spot::Inbox(target) => return shared.send_to_inbox(target, fiber),
                    // Our share of a burst: not stealable, so it stays ours (placement.rs).
                    Spot::Here => return self.pinned.borrow_mut().push_back(fiber),
                    Spot::Ring => {}
                }
            } else if let Some(target) =
                self.placement.elsewhere(self.index, &shared.slots, workers)
            {
                return shared.send_to_inbox(target, fiber);
            }
        }
        self.local
            .borrow_mut()
            .push_back(fiber, &self.shared.inject);
        self.shared.notify_one();
    }

    /// The part of this worker other threads reach.
    #[inline(always)]
    pub(super) fn slot(&self) -> &super::WorkerSlot {
        // SAFETY: `slot` points into `self.shared.slots`, a boxed slice that is never moved or
        // resized while the `Shared` lives, and `self.shared` keeps it alive.
        unsafe { &*self.slot }
    }

    /// This worker's timers (the slot's; see `WorkerSlot::timers`).
    pub(crate) fn timers(&self) -> MutexGuard<'_, Timers> {
        self.slot().timers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unparks every fiber whose deadline has passed; true if any became runnable here.
    fn fire_timers(&self) -> bool {
        if self.timers().is_empty() {
            return false;
        }
        let mut woke = false;
        let timers = &self.slot().timers;
        crate::time::fire_due(timers, Instant::now(), |fiber| {
            woke |= self.place_woken(fiber);
        });
        woke | self.woken_by_wakers()
    }

    fn timers_due(&self) -> bool {
        self.timers()
            .next_deadline()
            .is_some_and(|d| d <= Instant::now())
    }

    fn next_random(&self) -> u32 {
        // xorshift32: only spreads steal victims, no quality needed.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.set(x);
        x
    }

    /// Offers this worker's core to another thread (`sched_yield`: ~0.2 µs when no other
    /// thread is runnable) if the worker serves sockets and fewer fibers wait here than it runs
    /// between two polls of its reactor. Called when its queues run dry (before it searches)
    /// and at each busy poll. A server shares its cores with its clients, sidecars and
    /// neighbours; without this the kernel gets a core back only by preempting a worker at a
    /// moment of its choosing (EEVDF lets the running thread finish its 1.4 ms slice first), so
    /// a client's thread waits for its core with answers in its socket, and the fibers pinned
    /// behind the preempted worker wait too. Yielding where few of ours wait moves that switch
    /// to a cheap moment; with many queued (1,000 connections) they would pay for it, so the
    /// worker runs on and lets the kernel preempt it. Under `wrk -t2` on 2 shared cores the
    /// p99 at 100 connections fell from ~2.8 to ~1.4 ms (hyper's server: ~5 to ~1.8 ms), with
    /// req/s and the 1,000-connection row unchanged (docs/lab/IDLE.md). Workers without
    /// sockets (channel, spawn and switch loads) never yield here.
    fn offer_core(&self) {
        let few_waiting = || {
            self.pinned.borrow().len() + self.local.borrow().len() < GLOBAL_QUEUE_INTERVAL as usize
        };
        if self.slot().reactor.has_registrations() && few_waiting() {
            std::thread::yield_now();
        }
    }

    pub(super) fn run_next_is_empty(&self) -> bool {
        let f = self.run_next.take();
        let empty = f.is_none();
        self.run_next.set(f);
        empty
    }

    /// Pops anything runnable this worker can reach (shutdown drains with it).
    pub(crate) fn pop_any(&self) -> Option<FiberRef> {
        self.slot().take_inbox(&self.pinned);
        self.run_next
            .take()
            .or_else(|| self.pinned.borrow_mut().pop_front())
            .or_else(|| self.local.borrow_mut().pop())
            .or_else(|| self.shared.inject.pop())
            .or_else(|| self.steal_any())
    }
}
