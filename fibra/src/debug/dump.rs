//! Collecting a dump: every fiber a session can see, with backtraces of the parked ones.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deadlock::{find_cycles, Deadlock};
use super::trace::{frames_of, frames_of_running, Trace};
use crate::fiber::watch::CaptureRound;
use crate::fiber::{FiberRef, Header};
use crate::park::ParkReason;
use crate::sched::{context, Shared};

/// Fibers with smaller stacks are not asked for a backtrace: unwinding the stack to capture
/// one needs a few KiB, and a leaf fiber on a 16 KiB stack may not have them.
const MIN_CAPTURE_STACK: usize = 32 * 1024;

/// What a fiber is doing at the time of the dump.
///
/// ```
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     use fibra::debug::FiberState;
///     let h = fibra::Builder::new().name("napper").spawn(fibra::park).unwrap();
///     while h.fiber().park_reason() != fibra::ParkReason::User { fibra::yield_now(); }
///     h.fiber().unpark(); // runnable again, but our one worker is busy running us
///     let d = fibra::debug::dump();
///     let state = |name: &str| {
///         d.fibers.iter().find(|f| f.name.as_deref() == Some(name)).unwrap().state
///     };
///     assert_eq!(state("main"), FiberState::Running { worker: 0 }); // the caller
///     assert_eq!(state("napper"), FiberState::Runnable);
///     h.join().unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub enum FiberState {
    /// Running on this worker right now.
    Running {
        /// The worker index.
        worker: usize,
    },
    /// Ready to run, waiting in a run queue.
    Runnable,
    /// Parked, waiting for something (see [`FiberDump::reason`]).
    Parked,
    /// Being unwound by shutdown.
    Cancelling,
}

/// A fiber waiting for a `fibra::sync::Mutex`.
///
/// ```
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let m = std::sync::Arc::new(fibra::sync::Mutex::new(0));
///     let (held, m2) = (m.lock(), m.clone());
///     let h = fibra::spawn(move || *m2.lock() += 1);
///     while h.fiber().park_reason() != fibra::ParkReason::MutexLock { fibra::yield_now(); }
///     let d = fibra::debug::dump();
///     let waiter = d.fibers.iter().find(|f| f.id == h.fiber().id().as_u64()).unwrap();
///     assert_eq!(waiter.waits_for.unwrap().holder, Some(fibra::current().id().as_u64()));
///     assert!(d.deadlocks.is_empty()); // a wait, not a cycle: we wait for nothing
///     drop(held);
///     h.join().unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MutexWait {
    /// The mutex's address (printed `Mutex@0x…`).
    pub mutex: usize,
    /// The fiber that held it when this one queued; `None` if a plain thread (or nobody
    /// known) held it.
    pub holder: Option<u64>,
}

/// One fiber in a [`Dump`].
///
/// ```
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let (tx, rx) = fibra::chan::bounded(1);
///     let h = fibra::Builder::new().name("reader").spawn(move || rx.recv().unwrap()).unwrap();
///     while h.fiber().park_reason() != fibra::ParkReason::ChanRecv { fibra::yield_now(); }
///     let d = fibra::debug::dump();
///     let f = d.fibers.iter().find(|f| f.name.as_deref() == Some("reader")).unwrap();
///     assert_eq!((f.reason, f.home), (Some(fibra::ParkReason::ChanRecv), Some(0)));
///     assert!(f.channel.is_some() && f.waits_for.is_none() && f.parked_for.is_some());
///     tx.send(7).unwrap();
///     assert_eq!(h.join().unwrap(), 7);
/// });
/// ```
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FiberDump {
    /// The fiber's id (as [`Fiber::id`](crate::Fiber::id) shows it).
    pub id: u64,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Running, runnable, parked or cancelling.
    pub state: FiberState,
    /// Why it is parked (`None` unless parked).
    #[cfg_attr(feature = "serde", serde(serialize_with = "super::ser_debug"))]
    pub reason: Option<ParkReason>,
    /// How long it has been parked, to the session clock's millisecond (`None` unless
    /// parked).
    pub parked_for: Option<Duration>,
    /// Where it was spawned (`file:line:col`).
    pub spawned_at: String,
    /// The worker it is pinned to (`None` before its first run).
    pub home: Option<usize>,
    /// The mutex it waits for, when parked on a `fibra::sync::Mutex`.
    pub waits_for: Option<MutexWait>,
    /// The channel it waits on (its address, printed `Chan@0x…`), when parked in a
    /// `fibra::chan` send or receive. Channels have no holder, so no cycle runs through them.
    pub channel: Option<usize>,
    /// Its backtrace (parked fibers, and the fiber that took the dump).
    pub backtrace: Trace,
}

/// Every fiber of the runtime(s) at one moment: see [`dump`](super::dump).
///
/// ```
/// fibra::Runtime::builder().workers(2).build().unwrap().run(|| {
///     let (tx, rx) = fibra::chan::bounded::<()>(0);
///     let h = fibra::spawn(move || rx.recv().is_err());
///     let d = fibra::debug::dump();
///     assert_eq!((d.sessions, d.workers, d.live), (1, 2, 2)); // "main" and the receiver
///     assert!(d.deadlocks.is_empty());
///     assert!(d.to_string().starts_with("fibra dump: 2 live fibers in 1 session(s)"));
///     drop(tx);
///     assert!(h.join().unwrap()); // disconnected
/// });
/// ```
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Dump {
    /// Runtime sessions dumped (0 when none was running).
    pub sessions: usize,
    /// Worker threads of those sessions.
    pub workers: usize,
    /// Fibers alive (spawned and not finished), listed or not.
    pub live: usize,
    /// The listed fibers, by id.
    pub fibers: Vec<FiberDump>,
    /// Live fibers not listed: unnamed fibers that have never parked are not registered
    /// anywhere (registering every spawn would cost the spawn path), so a dump only counts
    /// them, unless they are running right now.
    pub unlisted: usize,
    /// Cycles of fibers waiting for each other's mutexes.
    pub deadlocks: Vec<Deadlock>,
}

/// A fiber seen in a registry, with what the dump read of it.
struct Seen {
    fiber: FiberRef,
    state: FiberState,
}

/// Dumps one session. `timeout` bounds the wait for backtraces.
pub(crate) fn dump_session(shared: &Arc<Shared>, timeout: Duration, into: &mut Dump) {
    let now_ms = shared.clock.refresh(Instant::now());
    let me = context::with_current_fiber(|f| {
        f.filter(|h| Arc::ptr_eq(&h.shared, shared))
            .map(|h| h.identity.id)
    });
    let running: HashMap<u64, (usize, &'static Location<'static>)> = shared
        .slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.signal.running().map(|(id, at)| (id, (i, at))))
        .collect();
    let mut seen: Vec<Seen> = Vec::new();
    for slot in shared.slots.iter() {
        for fiber in slot.registry.snapshot() {
            let state = match fiber.state.describe() {
                "parked" => FiberState::Parked,
                "cancelling" => FiberState::Cancelling,
                // Between the halves of its park, answering an earlier dump's capture: it
                // still waits (its park reason and time are unchanged), as the caller sees.
                "scheduled" if fiber.watch.is_serving() => FiberState::Parked,
                "scheduled" => match running.get(&fiber.identity.id) {
                    Some(&(worker, _)) => FiberState::Running { worker },
                    None if me == Some(fiber.identity.id) => FiberState::Running {
                        worker: fiber.home().unwrap_or(0),
                    },
                    None => FiberState::Runnable,
                },
                _ => continue, // complete
            };
            seen.push(Seen { fiber, state });
        }
    }
    let traces = capture_parked(&seen, me, timeout);
    let live = shared.live.load(Acquire);
    let mut listed = 0;
    for s in &seen {
        let h: &Header = &s.fiber;
        let id = h.identity.id;
        let parked = s.state == FiberState::Parked;
        let reason = parked.then(|| h.park_reason());
        let waits = h.watch.waits_for.load(Relaxed);
        // A running fiber's stack: its worker thread copies it in a signal handler, without
        // stopping (`sys/linux/capture.rs`); the dumper itself has its own trace already.
        let running_stack = match s.state {
            FiberState::Running { worker } if me != Some(id) && !traces.contains_key(&id) => {
                crate::sched::monitor::running_stack(&shared.slots[worker].signal)
                    .map(|f| Trace::Frames(frames_of_running(f)))
            }
            _ => None,
        };
        let backtrace = {
            match traces.get(&id).cloned().or(running_stack) {
                Some(t) => t,
                None => Trace::Unavailable(
                    match s.state {
                        FiberState::Running { .. } => "running",
                        FiberState::Runnable => "runnable",
                        FiberState::Cancelling => "cancelling",
                        FiberState::Parked if h.identity.stack_size < MIN_CAPTURE_STACK => {
                            "stack too small to capture"
                        }
                        FiberState::Parked => "worker busy (no answer in time)",
                    }
                    .to_owned(),
                ),
            }
        };
        into.fibers.push(FiberDump {
            id,
            name: h.identity.name.as_deref().map(str::to_owned),
            state: s.state,
            reason,
            parked_for: parked.then(|| {
                let at = h.watch.parked_since();
                Duration::from_millis(now_ms.saturating_sub(at))
            }),
            spawned_at: h.identity.location.to_string(),
            home: h.home(),
            channel: (parked
                && matches!(reason, Some(ParkReason::ChanSend | ParkReason::ChanRecv))
                && waits != 0)
                .then_some(waits),
            waits_for: (parked && reason == Some(ParkReason::MutexLock) && waits != 0).then(|| {
                MutexWait {
                    mutex: waits,
                    holder: match h.watch.waits_for_holder.load(Relaxed) {
                        0 => None,
                        id => Some(id),
                    },
                }
            }),
            backtrace,
        });
        listed += 1;
    }
    // Running fibers that are not registered (unnamed, never parked) still show.
    for (&id, &(worker, at)) in &running {
        if seen.iter().any(|s| s.fiber.identity.id == id) {
            continue;
        }
        into.fibers.push(FiberDump {
            id,
            name: None,
            state: FiberState::Running { worker },
            reason: None,
            parked_for: None,
            spawned_at: at.to_string(),
            home: Some(worker),
            waits_for: None,
            channel: None,
            backtrace: crate::sched::monitor::running_stack(&shared.slots[worker].signal)
                .map_or_else(
                    || Trace::Unavailable("running".into()),
                    |f| Trace::Frames(frames_of_running(f)),
                ),
        });
        listed += 1;
    }
    into.sessions += 1;
    into.workers += shared.config.workers;
    into.live += live;
    into.unlisted += live.saturating_sub(listed);
}

/// Asks every parked fiber (but the caller) for its backtrace and waits up to `timeout` for
/// the answers; symbolises them here, outside the fibers.
fn capture_parked(seen: &[Seen], me: Option<u64>, timeout: Duration) -> HashMap<u64, Trace> {
    let round = CaptureRound::new(crate::park::current_waker());
    let mut asked: Vec<&FiberRef> = Vec::new();
    for s in seen {
        let h = &s.fiber;
        if s.state != FiberState::Parked
            || me == Some(h.identity.id)
            || h.identity.stack_size < MIN_CAPTURE_STACK
        {
            continue;
        }
        round.pending.fetch_add(1, Relaxed); // before the request can be answered
        if h.watch.request_capture(&round) {
            crate::park::unpark(h); // a spurious wake-up for the fiber's wait loop
            asked.push(h);
        } else {
            round.done_one(); // another dump's request is pending: no backtrace this time
        }
    }
    round.done_one(); // the dumper's own hold
                      // None: `timeout` is too large for the clock (`Duration::MAX`), so no deadline.
    let deadline = Instant::now().checked_add(timeout);
    // Acquire pairs with `done_one`'s AcqRel: the answers pushed are visible.
    while round.pending.load(Acquire) != 0 {
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        if left.is_zero() {
            break;
        }
        crate::time::park_timeout(left); // parks a fiber, blocks a thread
    }
    for h in asked {
        h.watch.withdraw_capture(&round); // unanswered requests: fibers on stuck workers
    }
    let answers = std::mem::take(&mut round.results.lock().unwrap_or_else(|e| e.into_inner()).list);
    // Symbolising needs ~20 KiB of stack and time: a fiber hands it to a blocking-pool
    // thread. Each distinct stack is symbolised once.
    let symbolise = move || -> HashMap<u64, Trace> {
        let mut by_stack: HashMap<Vec<usize>, Trace> = HashMap::new();
        for (_, ips, bt) in &answers {
            if let Some(bt) = bt {
                by_stack.insert(ips.clone(), Trace::Frames(frames_of(bt)));
            }
        }
        answers
            .into_iter()
            .filter_map(|(id, ips, _)| Some((id, by_stack.get(&ips)?.clone())))
            .collect()
    };
    // The dumping fiber's own stack, captured here (it is running: nobody need wake it).
    let own = me.map(|id| (id, std::backtrace::Backtrace::force_capture()));
    let symbolise_all = move || {
        let mut traces = symbolise();
        if let Some((id, bt)) = own {
            traces.insert(id, Trace::Frames(frames_of(&bt)));
        }
        traces
    };
    if me.is_some() {
        crate::run_blocking(symbolise_all)
    } else {
        symbolise_all()
    }
}

/// Builds the deadlock list once every session's fibers are in.
pub(crate) fn finish(dump: &mut Dump) {
    dump.fibers.sort_by_key(|f| f.id);
    dump.deadlocks = find_cycles(&dump.fibers);
}
