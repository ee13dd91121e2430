//! A fiber blocks its worker (a blocking syscall, or a CPU loop) while 1,000 fibers loop on
//! `fibra::sleep(1ms)`: the fibers not pinned to the blocked thread, and the fibers it had
//! spawned but not started, keep running; with `fibra::run_blocking` every fiber does; the
//! monitor reports the blocker by name; with the unsafe migration opt-in no fiber freezes.
//!
//! The bounds compare each group's wake-up rate during the block with its own rate before it
//! (debug builds on a busy 2-core machine reach nowhere near 1,000 wake-ups/s per fiber), and
//! are loose enough to fail only if the feature is broken: with the monitor off and the
//! other worker busy, the same fibers get ~0% (the lab's `blocking` experiment shows it).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use fibra::{Runtime, StallKind, StallReport};

mod common;
use common::watchdog;

/// The rate tests measure wake-up rates: one at a time, so they do not share the 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

const SLEEPERS: usize = 1_000;
const BASELINE: Duration = Duration::from_millis(500);
const BLOCK_FOR: Duration = Duration::from_secs(1);
/// Fibers the blocker spawns right before it blocks (queued on its worker, not started).
const LATE_SPAWNS: usize = 100;
const LATE_SLEEPS: usize = 10;
/// The least share of its own baseline rate a group must keep while the blocker blocks.
/// Broken (the group stalled), it gets ~0%; working, 50-100% on a quiet machine, and down to
/// ~25% seen while other builds shared the 2 cores.
const MIN_RATE: f64 = 0.15;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Block {
    Syscall,
    Cpu,
    /// `std::thread::sleep` inside `fibra::run_blocking`.
    Wrapped,
}

#[derive(Default)]
struct Sleeper {
    /// The thread it last ran on before the block (with the migration opt-in, a fiber first
    /// run on one worker may since have moved; without it, this is the first run's).
    home: Mutex<Option<ThreadId>>,
    /// Wake-ups during the baseline, during the block.
    wakes: [AtomicU64; 2],
}

#[derive(Debug)]
struct Rates {
    /// Wake-ups per second during the block / before it, for the fibers on the blocked thread.
    same: Option<f64>,
    /// The same for the fibers on other threads.
    other: f64,
    /// Late spawns that finished all their sleeps while the blocker was still blocked.
    late_done_in_block: usize,
    /// Sleepers that never woke up during the block.
    frozen: usize,
    reports: Vec<StallReport>,
}

/// Phase: 0 baseline, 1 blocking, 2 after. `migrate`: with the unsafe migration opt-in.
fn run_scenario(block: Block, migrate: bool) -> Rates {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r2 = reports.clone();
    let mut builder = Runtime::builder()
        .workers(2)
        .on_stall(move |r: &StallReport| r2.lock().unwrap().push(r.clone()));
    if migrate {
        // SAFETY: the fibers of this scenario hold no `!Send` value and no reference to a
        // `thread_local!` across a park: only `Arc`s of atomics and mutexes, `JoinHandle`s and
        // `ThreadId`s (plain values). The thread is asked for after a park only through
        // `this_thread`, out of line, so no thread-local address from before the park is
        // reused (llvm-project#98479; docs/SOUNDNESS.md §4).
        builder = unsafe { builder.migrate_started_fibers() };
    }
    let rt = builder.build().unwrap();
    let (sleepers, blocker_thread, late_done_in_block) = rt.run(|| {
        let phase = Arc::new(AtomicU8::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sleepers: Arc<Vec<Sleeper>> =
            Arc::new((0..SLEEPERS).map(|_| Sleeper::default()).collect());
        let handles: Vec<_> = (0..SLEEPERS)
            .map(|i| {
                let (phase, stop, sleepers) = (phase.clone(), stop.clone(), sleepers.clone());
                fibra::spawn(move || {
                    let me = &sleepers[i];
                    *me.home.lock().unwrap() = Some(this_thread());
                    while !stop.load(Relaxed) {
                        fibra::sleep(Duration::from_millis(1));
                        if let p @ 0..=1 = phase.load(Relaxed) {
                            me.wakes[p as usize].fetch_add(1, Relaxed);
                            if p == 0 {
                                // Where it ran last before the block: its group.
                                *me.home.lock().unwrap() = Some(this_thread());
                            }
                        }
                    }
                })
            })
            .collect();
        fibra::sleep(BASELINE);
        let late_done = Arc::new(AtomicUsize::new(0));
        let (p2, ld) = (phase.clone(), late_done.clone());
        let blocker = fibra::Builder::new()
            .name("the-blocker")
            .spawn(move || {
                let late: Vec<_> = (0..LATE_SPAWNS)
                    .map(|_| {
                        let ld = ld.clone();
                        fibra::spawn(move || {
                            for _ in 0..LATE_SLEEPS {
                                fibra::sleep(Duration::from_millis(1));
                            }
                            ld.fetch_add(1, SeqCst);
                        })
                    })
                    .collect();
                p2.store(1, Relaxed);
                match block {
                    Block::Syscall => thread::sleep(BLOCK_FOR),
                    Block::Cpu => {
                        let t = Instant::now();
                        while t.elapsed() < BLOCK_FOR {
                            std::hint::spin_loop();
                        }
                    }
                    Block::Wrapped => fibra::run_blocking(|| thread::sleep(BLOCK_FOR)),
                }
                let in_block = ld.load(SeqCst);
                p2.store(2, Relaxed);
                (this_thread(), in_block, late)
            })
            .unwrap();
        let (blocker_thread, in_block, late) = blocker.join().unwrap();
        late.into_iter().for_each(|h| h.join().unwrap());
        stop.store(true, Relaxed);
        handles.into_iter().for_each(|h| h.join().unwrap());
        (sleepers, blocker_thread, in_block)
    });
    let mut same = (0u64, 0u64, 0usize);
    let mut other = (0u64, 0u64, 0usize);
    let frozen = sleepers
        .iter()
        .filter(|s| s.wakes[1].load(Relaxed) == 0)
        .count();
    for s in sleepers.iter() {
        let group = if *s.home.lock().unwrap() == Some(blocker_thread) {
            &mut same
        } else {
            &mut other
        };
        group.0 += s.wakes[0].load(Relaxed);
        group.1 += s.wakes[1].load(Relaxed);
        group.2 += 1;
    }
    let ratio = |(before, during, n): (u64, u64, usize)| {
        (n > 0 && before > 0).then(|| {
            (during as f64 / BLOCK_FOR.as_secs_f64()) / (before as f64 / BASELINE.as_secs_f64())
        })
    };
    let reports = reports.lock().unwrap().clone();
    Rates {
        same: ratio(same),
        other: ratio(other).unwrap_or_else(|| {
            panic!("no sleeper ran on the other worker before the block: {same:?} {other:?}")
        }),
        late_done_in_block,
        frozen,
        reports,
    }
}

fn check_others_keep_moving(rates: &Rates) {
    assert!(
        rates.other >= MIN_RATE,
        "fibers on the other worker slowed to {:.0}% of their rate: {rates:?}",
        rates.other * 100.0
    );
    assert_eq!(
        rates.late_done_in_block, LATE_SPAWNS,
        "fibers spawned (not started) on the blocked worker did not run elsewhere: {rates:?}"
    );
}

fn check_report(rates: &Rates, kind: StallKind) {
    let r = rates
        .reports
        .iter()
        .find(|r| r.fiber_name.as_deref() == Some("the-blocker"))
        .unwrap_or_else(|| panic!("no stall report names the blocker: {:?}", rates.reports));
    // A loop whose thread got (almost) no CPU before the report cannot be told from a thread
    // that lost its core mid-run (another process holds the CPUs): the monitor then says
    // "preempted", and the CPU time it prints shows why. Only then is that accepted.
    let starved = |r: &StallReport| {
        r.cpu_time
            .is_some_and(|c| c.as_secs_f64() < 0.2 * r.stuck_for.as_secs_f64())
    };
    if !(kind == StallKind::CpuLoop && r.kind == StallKind::Preempted && starved(r)) {
        assert_eq!(r.kind, kind, "{r}");
    }
    assert!(r.spawned_at.file().ends_with("blocking_monitor.rs"), "{r}");
    // Threshold 10 ms; the report comes one sample (≤ 10 ms) later. 500 ms is generous.
    assert!(
        r.stuck_for < Duration::from_millis(500),
        "reported late: {r}"
    );
    assert!(r.to_string().contains("\"the-blocker\""), "{r}");
}

#[test]
fn blocking_syscall_others_keep_moving_and_it_is_reported() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("blocking_syscall_others_keep_moving_and_it_is_reported");
    let rates = run_scenario(Block::Syscall, false);
    check_others_keep_moving(&rates);
    check_report(&rates, StallKind::Sleep);
}

#[test]
fn cpu_loop_others_keep_moving_and_it_is_reported() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("cpu_loop_others_keep_moving_and_it_is_reported");
    let rates = run_scenario(Block::Cpu, false);
    check_others_keep_moving(&rates);
    check_report(&rates, StallKind::CpuLoop);
}

#[test]
fn wrapped_in_blocking_every_fiber_keeps_its_rate() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("wrapped_in_blocking_every_fiber_keeps_its_rate");
    let rates = run_scenario(Block::Wrapped, false);
    check_others_keep_moving(&rates);
    if let Some(same) = rates.same {
        assert!(
            same >= MIN_RATE,
            "fibers on the blocker's worker slowed to {:.0}%: {rates:?}",
            same * 100.0
        );
    }
    assert!(
        !rates
            .reports
            .iter()
            .any(|r| r.fiber_name.as_deref() == Some("the-blocker")),
        "a fiber parked in fibra::run_blocking was reported stuck: {:?}",
        rates.reports
    );
}

/// With the migration opt-in every sleeper moves: those whose timer sat in the blocked
/// worker's heap when it blocked are woken by the monitor and run elsewhere (without that,
/// ~15% of them froze for the whole block). Every fiber's rate is then bounded by the cores
/// left: a CPU loop takes one of the two (and no spare is started for it), so all 1,000
/// sleepers share one core, which halves a CPU-bound rate before any other load on the
/// machine; `min_rate` says what to expect.
fn check_with_migration(block: Block, kind: StallKind, min_rate: f64) {
    let rates = run_scenario(block, true);
    assert_eq!(
        rates.frozen, 0,
        "sleepers froze during the block: {rates:?}"
    );
    assert_eq!(rates.late_done_in_block, LATE_SPAWNS, "{rates:?}");
    let same = rates
        .same
        .expect("some sleepers first ran on the blocked thread");
    for (group, rate) in [("the blocker's", same), ("the other", rates.other)] {
        assert!(
            rate >= min_rate,
            "fibers first run on {group} worker slowed to {:.0}%: {rates:?}",
            rate * 100.0
        );
    }
    check_report(&rates, kind);
}

#[test]
fn with_migration_every_fiber_keeps_its_rate_past_a_syscall() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("with_migration_every_fiber_keeps_its_rate_past_a_syscall");
    check_with_migration(Block::Syscall, StallKind::Sleep, MIN_RATE);
}

#[test]
fn with_migration_every_fiber_keeps_its_rate_past_a_cpu_loop() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("with_migration_every_fiber_keeps_its_rate_past_a_cpu_loop");
    check_with_migration(Block::Cpu, StallKind::CpuLoop, 0.05);
}

/// The calling thread's id, read in a frame of its own (never inlined into a frame that spans
/// a park, which under the migration opt-in may resume on another thread).
#[inline(never)]
fn this_thread() -> thread::ThreadId {
    thread::current().id()
}
