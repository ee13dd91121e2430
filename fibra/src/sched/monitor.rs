//! The monitor (Go's sysmon): notices stuck workers, hands their movable work away, starts
//! spare workers, and reports the offending fiber.
//!
//! # What a worker publishes
//! Each slot's [`RunSignal`] holds a run counter `seq`, odd while a fiber runs and even
//! between runs, plus the running fiber's id and spawn location. The driving thread writes
//! them with plain stores at each run's start and end (a seqlock, one writer): no
//! read-modify-write on the hot path. The monitor samples `seq`; a slot whose `seq` is odd and
//! unchanged for longer than `stall_threshold` is *stuck*.
//!
//! # What the monitor does about it (once per sample while the episode lasts)
//! 1. Moves the stuck worker's ring (fibers not started yet; with the unsafe migration
//!    opt-in, every fiber that was queued there) to the global queue, stealing it in halves.
//! 2. If that queue holds work: wakes a sleeping worker, or, when none sleeps and a stuck
//!    thread sleeps in the kernel (a syscall, not a CPU loop), starts a spare worker on a
//!    dormant spare slot (at most one per such stuck worker; the cap on spare slots is reported
//!    once when hit). A CPU loop gets no spare: every core is already busy, and a spare would
//!    only add a thread (Go likewise hands a P to a new thread only for syscalls). A spare runs the normal worker loop and retires when it has
//!    been idle for a while with nothing homed on it and no worker stuck (`worker.rs`).
//! 3. Reports the fiber once per episode: id, name, spawn location, how long, and the cause
//!    with advice that fits it, judged from the thread's CPU time over the stall and the
//!    system call it sits in (`stall.rs`). A futex wait on a lock that a fiber pinned to the
//!    same worker holds is a deadlock, reported with the holder and its stack
//!    (`lock_holder.rs`). The `on_stall` hook gets each episode as it begins;
//!    without one, the default log prints a begin and an end line, sums up repeats and keeps
//!    to a rate limit (`stall_log.rs`).
//!
//! # Failures
//! - A spare that cannot start (`RLIMIT_NPROC`, `EAGAIN`) is reported once per session; the
//!   slot stays dormant and the next sample that still needs a spare tries again.
//! - The blocking pool's failed thread starts are retried here too, on every sample
//!   (`BlockingPool::retry_start`: one relaxed load when nothing failed).
//! - A panicking `on_stall` hook is caught and reported with the report it was given, and the
//!   monitor goes on; so is a panic from dropping that panic's payload, whose own payload is
//!   then leaked (dropping it could panic again). The monitor never dies of a user callback.
//!
//! # Honest limits
//! A started fiber is pinned to its home thread (ARCHITECTURE.md §4): fibers that already ran
//! on the stuck thread, and its run-next slot, timers and inbox, wait for that thread. Every
//! other fiber, every fiber not yet started, and new spawns keep moving. `fibra::run_blocking`
//! around the call, or the migration opt-in, removes the stall.
//!
//! # Sampling
//! 20 µs between samples while it acts, doubling after 50 quiet samples up to 10 ms (Go's
//! sysmon numbers: 1 ms of quiet before backing off, ≤ 10 ms so a stall is seen within a
//! scheduling quantum). A run approaching the threshold shortens the next sleep, so a stall is
//! seen within ~one sample of the threshold and a quiet runtime costs ~100 wake-ups a second.

use std::panic::Location;
use std::ptr;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering::*,
};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// `eprintln!` without std's stderr lock: the monitor must never wait for a thread that holds
/// it (a caller of `Runtime::run` holding `stderr().lock()` waits for the monitor at the
/// session's end, and the monitor would wait for it: a hang).
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        crate::sys::write_stderr(line.as_bytes());
    }};
}

use super::lock_holder;
use super::queue::{self, Local};
use super::stall::{
    cpu_time, sched_stat, syscall_of, thread_state, Evidence, LockHolder, StallKind, StallReport,
    Syscall,
};
use super::stall_log::{Shown, StallLog};
use super::worker::Worker;
use super::Shared;
use crate::fiber::{FiberId, FiberRef};
use crate::sys::{spawn_thread, ThreadStart};

const MIN_DELAY: Duration = Duration::from_micros(20);
const MAX_DELAY: Duration = Duration::from_millis(10);
/// How long the monitor watches a stuck run's spawn count when its last look is stale: a
/// spawning loop spawns many fibers in it (each spawn takes well under a microsecond).
const SPAWN_LOOK: Duration = Duration::from_micros(500);
/// Quiet samples before the delay starts doubling (Go: 50 × 20 µs = 1 ms).
const QUIET_SAMPLES: u32 = 50;
/// A stuck thread counts as "in a syscall" (and may get a spare) once every sample for this
/// long saw it sleeping in the kernel: a CPU loop also sleeps now and then, for microseconds
/// (a contended lock, a page fault), and a spare would only add a thread there.
const SYSCALL_FOR: Duration = Duration::from_millis(1);

/// Values of [`RunSignal::activity`]: set by the driving thread around work the monitor
/// should not mistake for a stall's cause (the panic hook, `debug/panic.rs`).
pub(crate) mod activity {
    pub(crate) const NONE: u8 = 0;
    /// Inside the panic hook (the default hook captures a backtrace when asked to).
    pub(crate) const PANICKING: u8 = 1;
}

/// Sets the calling worker's [`activity`] and returns what it was; a no-op returning
/// `activity::NONE` on a thread that is not a worker. Driving thread only (the one writer).
pub(crate) fn set_activity(a: u8) -> u8 {
    super::context::with_worker(|w| match w {
        Some(w) => w.slot().signal.activity.swap(a, Relaxed),
        None => activity::NONE,
    })
}

/// What a slot's driving thread publishes for the monitor (see the module header).
pub(crate) struct RunSignal {
    /// Odd while a fiber runs, even between runs. Written by the driving thread only.
    seq: AtomicU64,
    fiber_id: AtomicU64,
    /// Always null or a `&'static Location` (so any value read is valid).
    spawned_at: AtomicPtr<Location<'static>>,
    /// The Linux thread id of the driving thread.
    tid: AtomicI32,
    /// The driving thread's CPU clock (`pthread_getcpuclockid`), or -1.
    cpu_clock: AtomicI32,
    /// The driving thread's own stack `[lo, hi)`, for a capture of it (0, 0: unknown).
    stack_lo: AtomicUsize,
    stack_hi: AtomicUsize,
    /// What the running fiber is busy with that the monitor should know ([`activity`]).
    pub(crate) activity: AtomicU8,
    /// A thread drives this slot. Set by whoever starts the thread; cleared by a retiring spare.
    pub(crate) active: AtomicBool,
}

impl RunSignal {
    pub(crate) fn new() -> RunSignal {
        RunSignal {
            seq: AtomicU64::new(0),
            fiber_id: AtomicU64::new(0),
            spawned_at: AtomicPtr::new(ptr::null_mut()),
            tid: AtomicI32::new(0),
            cpu_clock: AtomicI32::new(-1),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            activity: AtomicU8::new(activity::NONE),
            active: AtomicBool::new(false),
        }
    }

    /// The driving thread, at its start: where the counter stands (it continues from there).
    pub(crate) fn thread_start(&self) -> u64 {
        // SAFETY: `gettid` has no preconditions.
        self.tid.store(unsafe { libc::gettid() }, Relaxed);
        self.cpu_clock.store(super::stall::own_cpu_clock(), Relaxed);
        let (lo, hi) = crate::sys::own_stack_bounds().unwrap_or((0, 0));
        self.stack_lo.store(lo, Relaxed);
        self.stack_hi.store(hi, Relaxed);
        self.seq.load(Relaxed) // our own slot: only we (or this slot's earlier thread) wrote it
    }

    /// The driving thread, as a run starts; `seq` is odd.
    #[inline]
    pub(crate) fn run_start(&self, seq: u64, fiber_id: u64, at: &'static Location<'static>) {
        self.fiber_id.store(fiber_id, Relaxed);
        self.spawned_at.store(ptr::from_ref(at).cast_mut(), Relaxed);
        // Release publishes the two stores above; pairs with `Monitor::report`'s Acquire load
        // of `seq` (seqlock: a plain `mov` on x86).
        self.seq.store(seq, Release);
    }

    /// Any thread: the fiber this slot runs now (its id and spawn location), if any. A hint:
    /// it may change at once.
    pub(crate) fn running(&self) -> Option<(u64, &'static Location<'static>)> {
        let seq = self.seq.load(Relaxed);
        if seq % 2 == 0 || !self.active.load(Relaxed) {
            return None;
        }
        let id = self.fiber_id.load(Relaxed);
        let at = self.spawned_at.load(Relaxed);
        // Seqlock read, as in `Monitor::report`.
        fence(Acquire);
        if self.seq.load(Relaxed) != seq || id == 0 || at.is_null() {
            return None;
        }
        // SAFETY: `spawned_at` only ever holds null or a `&'static Location` (`run_start`).
        Some((id, unsafe { &*at }))
    }

    /// Any thread: fiber runs started on this slot so far (the counter rises by 2 a run).
    pub(crate) fn runs(&self) -> u64 {
        self.seq.load(Relaxed).div_ceil(2)
    }

    /// The driving thread, as the run ends; `seq` is even.
    #[inline]
    pub(crate) fn run_end(&self, seq: u64) {
        self.seq.store(seq, Relaxed);
    }
}

/// Per slot: what the monitor saw last.
#[derive(Default)]
struct Watch {
    seq: u64,
    since: Option<Instant>,
    stuck: bool,
    reported: bool,
    /// Since when every sample saw the stuck thread sleeping in the kernel.
    in_kernel_since: Option<Instant>,
    /// The thread's CPU clock and the slot's spawn count when this run was first seen.
    cpu_at_start: Option<Duration>,
    spawns_at_start: u64,
    /// The spawn count at the last look before the threshold, and when that look was.
    spawns_prev: u64,
    spawns_looked_at: Option<Instant>,
    /// When the look at half the threshold was, and the thread's CPU and run-queue wait then.
    sched_at_half: Option<(Instant, (Duration, Duration))>,
    /// The report of the stall under way (begun), and what the default log did with it.
    begun: Option<(StallReport, Shown)>,
}

/// A thread state that means the thread sleeps in the kernel (a blocking syscall).
fn in_syscall(state: Option<char>) -> bool {
    matches!(state, Some('S' | 'D'))
}

/// What the monitor noted about a run before it got stuck (from its [`Watch`]).
#[derive(Clone, Copy)]
struct RunSeen {
    cpu_at_start: Option<Duration>,
    spawns_at_start: u64,
    spawns_prev: u64,
    spawns_looked_at: Option<Instant>,
    sched_at_half: Option<(Instant, (Duration, Duration))>,
}

pub(crate) struct Monitor {
    shared: Arc<Shared>,
    /// The default report (quiet: begin and end lines, repeats summed up, rate-limited).
    log: StallLog,
    watch: Vec<Watch>,
    /// Threads started on spare slots, by slot - workers.
    spares: Vec<Option<JoinHandle<()>>>,
    /// The monitor's own ring, only to receive steals before they go to the global queue.
    scratch: Local<FiberRef>,
    cap_reported: bool,
    /// A spare that could not start was reported (once per session).
    start_failure_reported: bool,
}

/// Starts the session's monitor thread, unless the builder turned it off.
pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Option<JoinHandle<()>>> {
    if !shared.config.monitor {
        return Ok(None);
    }
    let monitor = Monitor {
        shared: shared.clone(),
        log: StallLog::new(Instant::now()),
        watch: (0..shared.slots.len()).map(|_| Watch::default()).collect(),
        spares: (0..shared.config.max_spare_workers).map(|_| None).collect(),
        scratch: queue::local().0,
        cap_reported: false,
        start_failure_reported: false,
    };
    thread::Builder::new()
        .name(format!("{}-monitor", shared.config.thread_name))
        .spawn(move || monitor.run())
        .map(Some)
}

impl Monitor {
    /// Body of the monitor thread, until shutdown; then joins every spare it started.
    fn run(mut self) {
        let mut delay = MIN_DELAY;
        let mut quiet = 0u32;
        // Acquire pairs with `begin_shutdown`'s Release store.
        while !self.shared.shutdown.load(Acquire) {
            let now = Instant::now();
            self.shared.clock.refresh(now);
            self.shared.blocking.retry_start();
            let (acted, next_due) = self.sample(now);
            if acted {
                (delay, quiet) = (MIN_DELAY, 0);
            } else {
                quiet += 1;
                if quiet > QUIET_SAMPLES {
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
            let until_due = next_due.map_or(delay, |t| t.saturating_duration_since(now));
            // `finish_session` unparks us at shutdown.
            thread::park_timeout(delay.min(until_due).max(MIN_DELAY));
        }
        // Stalls still under way end with the session: their end lines.
        let now = Instant::now();
        for w in &mut self.watch {
            if let (Some((report, shown)), Some(since)) = (w.begun.take(), w.since) {
                self.log
                    .ended(&report, (now - since).max(report.stuck_for), shown);
            }
        }
        self.log.tick(now);
        for t in self.spares.iter_mut().filter_map(Option::take) {
            let _ = t.join(); // a worker that panicked already reported it on stderr
        }
    }

    /// One look at every slot. Returns whether it acted, and when a running fiber reaches
    /// the threshold.
    fn sample(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let threshold = self.shared.config.stall_threshold;
        let (mut acted, mut next_due) = (false, None::<Instant>);
        let (mut stuck_now, mut in_syscalls) = (0, 0);
        for idx in 0..self.shared.slots.len() {
            let signal = &self.shared.slots[idx].signal;
            // Acquire pairs with the Release store of a starting spare or retiring one.
            let active = signal.active.load(Acquire);
            let seq = signal.seq.load(Relaxed);
            let w = &mut self.watch[idx];
            if !active || seq != w.seq || seq % 2 == 0 {
                let ended = std::mem::take(&mut w.begun);
                let ran = w.since.map(|t| now - t);
                // A new run: note the thread's CPU clock and the spawn count to judge it by,
                // should it get stuck (one `clock_gettime` per run the monitor sees).
                let fresh = active && seq % 2 == 1;
                let spawns = self.shared.slots[idx].stats.spawns.load(Relaxed);
                *w = Watch {
                    seq,
                    since: Some(now),
                    cpu_at_start: fresh
                        .then(|| cpu_time(signal.cpu_clock.load(Relaxed)))
                        .flatten(),
                    spawns_at_start: spawns,
                    spawns_prev: spawns,
                    spawns_looked_at: Some(now),
                    ..Watch::default()
                };
                if let (Some((report, shown)), Some(ran)) = (ended, ran) {
                    self.log.ended(&report, ran.max(report.stuck_for), shown);
                }
                continue;
            }
            let since = *w.since.get_or_insert(now);
            // A threshold past the clock's range (`Duration::MAX`) is never reached.
            let Some(due) = since.checked_add(threshold) else {
                continue;
            };
            if now < due {
                // A look at half the threshold notes the thread's scheduler times (a file
                // read, so only for runs that last), to tell a starved loop (runnable all
                // along) from a thread that slept; one shortly before the threshold tells a
                // fiber still spawning from one that spawned a batch and then looped.
                let half = since + threshold / 2;
                if w.sched_at_half.is_none() && now >= half {
                    w.sched_at_half = sched_stat(signal.tid.load(Relaxed)).map(|s| (now, s));
                }
                w.spawns_prev = self.shared.slots[idx].stats.spawns.load(Relaxed);
                w.spawns_looked_at = Some(now);
                let look = due - threshold / 8;
                let next = match () {
                    _ if now < half => half,
                    _ if now < look => look,
                    _ => due,
                };
                next_due = Some(next_due.map_or(next, |t| t.min(next)));
                continue;
            }
            w.stuck = true;
            stuck_now += 1;
            if let Some((report, _)) = &mut w.begun {
                // Keep the judgement current for the end line: CPU over the whole stall.
                report.stuck_for = now - since;
                if let (Some(c0), Some(c)) =
                    (w.cpu_at_start, cpu_time(signal.cpu_clock.load(Relaxed)))
                {
                    report.cpu_time = Some(c.saturating_sub(c0));
                    report.kind = rejudge(report);
                }
            }
            w.in_kernel_since = match in_syscall(thread_state(signal.tid.load(Relaxed))) {
                true => Some(w.in_kernel_since.unwrap_or(now)),
                false => None,
            };
            let in_kernel_for = w.in_kernel_since.map(|t| now - t);
            in_syscalls += usize::from(in_kernel_for.is_some_and(|d| d >= SYSCALL_FOR));
            let report = !std::mem::replace(&mut w.reported, true);
            let seen = RunSeen {
                cpu_at_start: w.cpu_at_start,
                spawns_at_start: w.spawns_at_start,
                spawns_prev: w.spawns_prev,
                spawns_looked_at: w.spawns_looked_at,
                sched_at_half: w.sched_at_half,
            };
            acted |= self.hand_off(idx);
            acted |= self.poll_io_of(idx);
            if self.shared.config.migrate {
                // Its sleepers may run elsewhere: fire their due timers from here, and look
                // again when the next one is due.
                acted |= self.fire_timers_of(idx, now);
                let next = self.shared.slots[idx]
                    .timers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next_deadline();
                next_due = match (next_due, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if report {
                let begun = self.report(idx, seq, now, now - since, seen);
                self.watch[idx].begun = begun;
            }
        }
        self.log.tick(now);
        self.shared.stuck.store(stuck_now, Relaxed); // a hint for retiring spares
        if stuck_now > 0 {
            acted |= self.add_capacity(in_syscalls);
        }
        (acted, next_due)
    }

    /// Whether the stuck run on slot `idx` is still spawning. The count at the last look
    /// before the threshold tells, when that look was recent; a monitor that slept past the
    /// looks (its delay grows to the threshold when quiet) may have last looked while a batch
    /// was under way, before a loop, so it looks again over a short window instead.
    fn still_spawning(
        &self,
        idx: usize,
        now: Instant,
        spawns_now: u64,
        spawns_prev: u64,
        looked_at: Option<Instant>,
    ) -> bool {
        let threshold = self.shared.config.stall_threshold;
        let recent = looked_at.is_some_and(|t| now.saturating_duration_since(t) <= threshold / 4);
        if recent || spawns_now == spawns_prev {
            return spawns_now != spawns_prev;
        }
        thread::sleep(SPAWN_LOOK);
        self.shared.slots[idx].stats.spawns.load(Relaxed) != spawns_now
    }

    /// Moves the stuck worker's ring to the global queue. True if it moved anything.
    fn hand_off(&mut self, idx: usize) -> bool {
        let shared = &self.shared;
        let mut moved = false;
        while let Some(first) = shared.slots[idx].stealer.steal_into(&mut self.scratch) {
            let scratch = &mut self.scratch;
            shared
                .inject
                .push_batch(std::iter::once(first).chain(std::iter::from_fn(|| scratch.pop())));
            moved = true;
        }
        moved
    }

    /// Polls stuck slot `idx`'s reactor (without blocking; its owner is not polling) and sends
    /// each fiber it releases home, or anywhere under the migration opt-in: a socket registered
    /// there may be used by a fiber of another worker (io/reactor). True if it woke any.
    fn poll_io_of(&self, idx: usize) -> bool {
        let mut woke = false;
        self.shared.slots[idx].reactor.poll_now(|fiber| {
            woke = true;
            super::schedule_woken(fiber); // no worker here: its inbox, or the global queue
        });
        woke
    }

    /// Migration opt-in: unparks the due sleepers of stuck slot `idx` into the global queue.
    /// True if it woke any.
    fn fire_timers_of(&self, idx: usize, now: Instant) -> bool {
        let mut woke = false;
        crate::time::fire_due(&self.shared.slots[idx].timers, now, |fiber| {
            woke = true;
            self.shared.inject(fiber);
        });
        woke
    }

    /// While workers are stuck and the global queue holds work: wake a sleeper, or start a
    /// spare (at most one per worker stuck in a syscall). True if it started or woke someone.
    fn add_capacity(&mut self, in_syscalls: usize) -> bool {
        let shared = self.shared.clone();
        if shared.inject.is_empty() {
            return false;
        }
        if shared.idle.sleepers() > 0 {
            shared.notify_one();
            return true;
        }
        let workers = shared.config.workers;
        let active_spares = (workers..shared.slots.len())
            .filter(|&i| shared.slots[i].signal.active.load(Acquire))
            .count();
        if active_spares >= in_syscalls {
            return false;
        }
        let Some(idx) =
            (workers..shared.slots.len()).find(|&i| !shared.slots[i].signal.active.load(Acquire))
        else {
            if shared.config.max_spare_workers > 0
                && !std::mem::replace(&mut self.cap_reported, true)
            {
                say!(
                    "fibra: all {} spare workers are in use while workers are stuck; raise \
                     RuntimeBuilder::max_spare_workers, or wrap blocking calls in fibra::run_blocking",
                    shared.config.max_spare_workers
                );
            }
            return false;
        };
        if let Some(old) = self.spares[idx - workers].take() {
            let _ = old.join(); // it retired (cleared `active`) and is exiting
        }
        // Release pairs with this very load in the next sample.
        shared.slots[idx].signal.active.store(true, Release);
        let s = shared.clone();
        let spawned = spawn_thread(
            ThreadStart::SpareWorker,
            format!("{}-{idx}", shared.config.thread_name),
            move || Worker::run_thread(idx, s),
        );
        match spawned {
            Ok(t) => {
                self.spares[idx - workers] = Some(t);
                super::stats::bump(&shared.monitor_stats.spares_started);
            }
            Err(e) => {
                // Nothing ran on the slot: dormant again, and a later sample tries again.
                shared.slots[idx].signal.active.store(false, Release);
                if !std::mem::replace(&mut self.start_failure_reported, true) {
                    say!(
                        "fibra: could not start a spare worker: {e}; the monitor retries while \
                         a worker stays stuck"
                    );
                }
                return false;
            }
        }
        true
    }

    /// Reports the fiber running on stuck slot `idx` (whose counter read `seq`): judges the
    /// cause, hands the report to the hook or the default log. Returns the report and what the
    /// log did with it, for the end line.
    fn report(
        &mut self,
        idx: usize,
        seq: u64,
        now: Instant,
        stuck_for: Duration,
        seen: RunSeen,
    ) -> Option<(StallReport, Shown)> {
        let RunSeen {
            cpu_at_start,
            spawns_at_start,
            spawns_prev,
            spawns_looked_at,
            sched_at_half,
        } = seen;
        let slot = &self.shared.slots[idx];
        let signal = &slot.signal;
        let id = signal.fiber_id.load(Relaxed);
        let at = signal.spawned_at.load(Relaxed);
        let panicking = signal.activity.load(Relaxed) == activity::PANICKING;
        // Seqlock read: the Acquire fence pairs with `run_start`'s Release store, and an
        // unchanged `seq` means the loads above belong to the run we saw stuck.
        fence(Acquire);
        if signal.seq.load(Relaxed) != seq || id == 0 || at.is_null() {
            return None;
        }
        // SAFETY: `spawned_at` only ever holds null or a `&'static Location` (`run_start`).
        let spawned_at: &'static Location<'static> = unsafe { &*at };
        // Named fibers are registered from their first run, so even a first run finds its name.
        let fiber_name = self.shared.slots.iter().find_map(|s| {
            s.registry
                .find(id)
                .map(|f| f.identity.name.as_deref().map(str::to_owned))
        });
        let tid = signal.tid.load(Relaxed);
        let cpu_now = cpu_time(signal.cpu_clock.load(Relaxed));
        let spawns_now = slot.stats.spawns.load(Relaxed);
        let cpu_time = cpu_at_start.zip(cpu_now).map(|(a, b)| b.saturating_sub(a));
        // On a CPU or waiting for one, since the look at half the threshold.
        let runnable_share = sched_at_half.zip(sched_stat(tid)).and_then(|((t, a), b)| {
            let wall = now.saturating_duration_since(t).as_secs_f64();
            let on = (b.0 + b.1).saturating_sub(a.0 + a.1).as_secs_f64();
            (wall > 0.0).then(|| on / wall)
        });
        // A thread that was woken a moment ago is between calls: look again a few times,
        // and measure how runnable it is meanwhile (a loop starved of cores is runnable all
        // along; the monitor may have missed the look at half the threshold).
        let mut syscall = syscall_of(tid);
        let (t0, before) = (Instant::now(), sched_stat(tid));
        let mut looked = false;
        for _ in 0..10 {
            if syscall.is_some() || runnable_share.is_some_and(|s| s >= 0.5) {
                break;
            }
            looked = true;
            thread::sleep(Duration::from_micros(100));
            syscall = syscall_of(tid);
        }
        let runnable_share = match (looked && syscall.is_none(), before, sched_stat(tid)) {
            (true, Some(a), Some(b)) => {
                let wall = t0.elapsed().as_secs_f64();
                let on = (b.0 + b.1).saturating_sub(a.0 + a.1).as_secs_f64();
                let window = on / wall.max(1e-9);
                Some(runnable_share.map_or(window, |s| s.max(window)))
            }
            _ => runnable_share,
        };
        let evidence = Evidence {
            cpu_time,
            runnable_share,
            wall: stuck_for,
            syscall,
            thread_state: thread_state(tid),
            spawned: spawns_now.wrapping_sub(spawns_at_start),
            still_spawning: self.still_spawning(
                idx,
                now,
                spawns_now,
                spawns_prev,
                spawns_looked_at,
            ),
            panicking,
        };
        let mut kind = evidence.judge();
        let call = evidence.syscall.as_ref();
        let futex = call
            .filter(|c| c.nr == libc::SYS_futex)
            .map(|c| c.args[0] as usize);
        // A wait no timeout ends, on a lock a fiber pinned here holds: a deadlock. Under the
        // migration opt-in pinned fibers may run elsewhere: not looked for (lock_holder.rs).
        let holder = match call.and_then(Syscall::untimed_futex_wait) {
            Some(word) if kind == StallKind::Futex && !self.shared.config.migrate => {
                lock_holder::find(slot, id, word, || {
                    // The seqlock read again: the same run all along, so the copies are whole.
                    fence(Acquire);
                    signal.seq.load(Relaxed) == seq
                })
            }
            _ => None,
        };
        if holder.is_some() {
            kind = StallKind::Deadlock;
        }
        let report = StallReport {
            worker: idx,
            fiber_id: FiberId::new(id),
            fiber_name: fiber_name.flatten(),
            spawned_at,
            stuck_for,
            kind,
            cpu_time: evidence.cpu_time,
            syscall: call.map(Syscall::describe),
            futex,
            holder: None,
            waiting: slot.registry.len().saturating_sub(1),
            spawned: evidence.spawned,
            thread_state: evidence.thread_state,
            stack: Vec::new(),
        };
        super::stats::bump(&self.shared.monitor_stats.stall_reports);
        let mut report = report;
        // Both stacks, for a report that is shown (unwinding and symbolising cost). Not for a
        // thread that is only waiting for a core: its stack says nothing about the cause, and
        // the first symbolisation costs ~100 ms of CPU (loading the debug info), taken from the
        // very cores the thread is waiting for (a warm fs read loop on a loaded 2-core machine
        // lost ~20% of its CPU share to it, `fibra-lab run fs`).
        let preempted = report.kind == StallKind::Preempted;
        let fill = |report: &mut StallReport| {
            if preempted {
                return;
            }
            report.stack = stack_of(signal);
            report.holder = holder.as_ref().map(|h| LockHolder {
                fiber_id: FiberId::new(h.fiber.identity.id),
                fiber_name: h.fiber.identity.name.as_deref().map(str::to_owned),
                spawned_at: h.fiber.identity.location,
                stack: h.frames(),
            });
        };
        let shown = match &self.shared.config.on_stall {
            None => {
                let shown = self.log.admit(&report, now);
                if shown == Shown::Printed {
                    fill(&mut report);
                    self.log.print_begin(&report);
                }
                shown
            }
            Some(hook) => {
                fill(&mut report);
                let delivered =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (hook.0)(&report)));
                if let Err(payload) = delivered {
                    say!("fibra: the on_stall hook panicked; the report was: {report}");
                    drop_payload(payload);
                }
                Shown::Aggregated // the hook had it; the default log prints no end line
            }
        };
        Some((report, shown))
    }
}

/// How long a stack capture waits for the thread to run its signal handler: a thread that
/// is runnable but starved of a core by other processes can take a few scheduler slices.
const CAPTURE_TIMEOUT: Duration = Duration::from_millis(250);

/// The stack of the thread driving `signal`'s slot, now, from the running fiber's frames
/// down to its entry: a signal makes the thread copy its registers and live stack
/// (`sys/linux/capture.rs`); the copy is unwound and symbolised here. Empty if the thread did
/// not answer within `CAPTURE_TIMEOUT` (it cannot be interrupted: stopped, or the signal blocked).
fn stack_of(signal: &RunSignal) -> Vec<String> {
    running_stack(signal)
        .map(super::stall::fiber_frames)
        .unwrap_or_default()
}

/// The symbolised stack, `(function, file:line:col)` innermost first, of the thread driving
/// `signal`'s slot, taken now without stopping it (see [`stack_of`]); `None` if it did not
/// answer, or its run ended meanwhile. Any thread but that one. `debug::dump` shows it for running fibers.
pub(crate) fn running_stack(signal: &RunSignal) -> Option<Vec<(String, Option<String>)>> {
    let tid = signal.tid.load(Relaxed);
    // SAFETY: `gettid` has no preconditions.
    if tid == 0 || tid == unsafe { libc::gettid() } {
        return None;
    }
    let bounds = (signal.stack_lo.load(Relaxed), signal.stack_hi.load(Relaxed));
    let bounds = (bounds.1 != 0).then_some(bounds);
    // The same run before and after the copy, or the copy may show another fiber (or none).
    let seq = signal.seq.load(Acquire);
    let snap = crate::sys::capture_thread(tid, bounds, CAPTURE_TIMEOUT)?;
    if seq % 2 == 0 || signal.seq.load(Acquire) != seq {
        return None;
    }
    let frames = crate::sys::unwind(snap.ip, snap.sp, snap.bp, &snap.stack);
    Some(crate::sys::symbolise(&frames))
}

/// The cause of a stall under way, judged again with the CPU time over all of it so far: a
/// thread first seen waiting for a core that then used a fair share of one is a loop. Every
/// other judgement stands (a starved loop was judged by its run-queue time, which this does
/// not re-read).
fn rejudge(r: &StallReport) -> StallKind {
    match r.kind {
        StallKind::Preempted | StallKind::Unknown => {
            let wall = r.stuck_for.as_secs_f64();
            let share = r.cpu_time.map_or(0.0, |c| c.as_secs_f64() / wall.max(1e-9));
            // A run that got its core back and ended at once used microseconds; a loop that
            // got a core keeps it for whole time slices, and a starved one still gets well
            // over the 5% a thread waking and sleeping in calls uses.
            let ran_on = r.cpu_time.is_some_and(|c| c >= 2 * super::stall::LOOP_CPU);
            if share >= 0.2 || ran_on && share >= 0.05 {
                StallKind::CpuLoop
            } else {
                r.kind
            }
        }
        k => k,
    }
}

/// Drops a panic payload caught from a user callback on the monitor thread. A payload whose
/// `Drop` panics is reported, and the payload of *that* panic leaked: the monitor keeps going.
fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
    if let Err(again) = dropped {
        say!("fibra: dropping the on_stall hook's panic payload panicked too; leaking it");
        std::mem::forget(again);
    }
}
