//! `blocking`: one unit blocks 1 s (a syscall, or a CPU loop) while 1,000 others sleep 1 ms in
//! a loop: the others' wake-up latency and wake-up count, split by "same worker as the blocker"
//! and "other workers".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use super::{Figure, Params, PlotShape, PlotSpec, Row, Size};
use crate::child::Figures;
use crate::peers::Contender;

pub const DESCRIPTION: &str =
    "one unit blocks 1 s while 1,000 others sleep 1 ms in a loop: the others' wake-up lateness";

pub const NOTE: &str = "Lateness = time a 1 ms sleep took beyond 1 ms, for sleeps overlapping the block \
(a unit stalled for the whole block shows one ~1,000 ms sample); wake-ups = sleeps started and ended within it. \"same\" = units whose last wake-up \
before the block ran on the blocker's OS thread, \"other\" = the rest (fibra pins started fibers to their \
thread; tokio tasks may move). Rows: unwrapped (std::thread::sleep or a spin inside the unit), \
offloaded (fibra::blocking / tokio spawn_blocking + await), fibra with its monitor off, fibra with the unsafe \
migration opt-in (these two in --full only). OS threads have one row per kind (the blocker is just one more thread); so has Go, whose \
runtime hands a P stuck in a syscall to another thread and preempts a spinning goroutine \
(the blocker calls syscall.Nanosleep or spins, GOMAXPROCS 2). \
Two workers for fibra and tokio. report ms: from the block's start to fibra's stall report.";

pub const FIGURES: &[Figure] = &[
    Figure {
        key: "other_p99_us",
        title: "other workers: p99 lateness, µs",
        cost: true,
    },
    Figure {
        key: "other_max_ms",
        title: "other workers: max lateness, ms",
        cost: true,
    },
    Figure {
        key: "other_wakes",
        title: "other workers: wake-ups per unit during the 1 s block",
        cost: false,
    },
    Figure {
        key: "same_p99_us",
        title: "same worker as the blocker: p99 lateness, µs",
        cost: true,
    },
    Figure {
        key: "same_wakes",
        title: "same worker: wake-ups per unit during the block",
        cost: false,
    },
    Figure {
        key: "same_units",
        title: "units on the blocker's thread",
        cost: false,
    },
    Figure {
        key: "report_ms",
        title: "stall report after, ms (fibra)",
        cost: false,
    },
];

pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        stem: "other-p99",
        key: "other_p99_us",
        title: "blocking: p99 wake-up lateness of units on the other workers",
        axis: "µs (log)",
        shape: PlotShape::Bars { log: true },
    },
    PlotSpec {
        stem: "same-p99",
        key: "same_p99_us",
        title: "blocking: p99 wake-up lateness of units on the blocker's worker",
        axis: "µs (log)",
        shape: PlotShape::Bars { log: true },
    },
];

pub const UNITS: usize = 1_000;
pub const BLOCK_FOR: Duration = Duration::from_secs(1);
/// Before and after the block: 150 ticks of every unit, ample to reach and leave the steady
/// state (300 ms cost the quick profile ~14 s).
pub const WARM_UP: Duration = Duration::from_millis(150);
pub const TICK: Duration = Duration::from_millis(1);

/// How the blocker blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Syscall,
    Cpu,
}

/// What the contender does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Unwrapped,
    Offloaded,
    MonitorOff,
    Migrate,
}

const MODES: [Mode; 4] = [
    Mode::Unwrapped,
    Mode::Offloaded,
    Mode::MonitorOff,
    Mode::Migrate,
];

/// The variant travels to the child as `n`.
pub fn encode(kind: Kind, mode: Mode) -> u64 {
    (kind as u64) * 10 + mode as u64
}

pub fn decode(n: u64) -> (Kind, Mode) {
    let kind = if n / 10 == 0 {
        Kind::Syscall
    } else {
        Kind::Cpu
    };
    (kind, MODES[(n % 10) as usize % MODES.len()])
}

/// Why a contender has no cell in a row, if it has none.
pub fn not_applicable(contender: Contender, params: &Params) -> Option<String> {
    let (_, mode) = decode(params.n);
    match (contender, mode) {
        (_, Mode::Unwrapped) => None,
        (Contender::Go, _) => {
            Some("Go: one row per kind (its runtime hands off blocked threads itself)".into())
        }
        (Contender::Threads, _) => Some("OS threads: one row per kind".into()),
        (Contender::Tokio, Mode::MonitorOff | Mode::Migrate) => {
            Some("tokio has no monitor and no migration switch".into())
        }
        _ => None,
    }
}

/// The modes measured: fibra's ablations (monitor off, migration) only in `--full`, which keeps
/// the quick profile near 2 minutes (each run takes ~2 s, whatever the size).
fn modes(size: Size) -> &'static [Mode] {
    match size {
        Size::Full => &MODES,
        Size::Tiny | Size::Quick => &MODES[..2],
    }
}

pub fn plan(size: Size, cores: usize, contenders: &[Contender]) -> Vec<Row> {
    let mut rows = Vec::new();
    for kind in [Kind::Syscall, Kind::Cpu] {
        for &mode in modes(size) {
            let what = match kind {
                Kind::Syscall => "sleep 1 s",
                Kind::Cpu => "spin 1 s",
            };
            let how = match mode {
                Mode::Unwrapped => "unwrapped",
                Mode::Offloaded => "offloaded",
                Mode::MonitorOff => "fibra monitor off",
                Mode::Migrate => "fibra migration",
            };
            let params = Params {
                n: encode(kind, mode),
                workers: cores.clamp(2, 2),
                pin_one_cpu: false,
                case: None,
            };
            rows.push(Row {
                label: format!("{what}, {how}"),
                cells: contenders.iter().map(|&c| (c, params.clone())).collect(),
            });
        }
    }
    rows
}

/// The blocker's body (inside the unit).
pub fn block(kind: Kind) {
    match kind {
        Kind::Syscall => thread::sleep(BLOCK_FOR),
        Kind::Cpu => spin(BLOCK_FOR),
    }
}

pub fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Shared by the units and the blocker of one run.
#[derive(Default)]
pub struct Board {
    /// 0 warm-up, 1 blocking, 2 after.
    pub phase: AtomicU8,
    pub stop: AtomicBool,
    window: Mutex<Option<(Instant, ThreadId)>>,
    pub reported_at: Mutex<Option<Instant>>,
}

/// One unit's record.
#[derive(Default)]
pub struct UnitLog {
    /// Thread of the last wake-up before the block.
    home: Option<ThreadId>,
    /// Lateness (µs) of sleeps overlapping the block.
    late_us: Vec<u32>,
    /// Wake-ups completed during the block.
    wakes: u32,
}

impl Board {
    /// The blocker, as it starts blocking.
    pub fn block_starts(&self) {
        *self.window.lock().unwrap() = Some((Instant::now(), thread::current().id()));
        self.phase.store(1, Ordering::SeqCst);
    }

    pub fn block_ends(&self) {
        self.phase.store(2, Ordering::SeqCst);
    }

    /// One iteration of a unit: `sleep` is the contender's 1 ms sleep, already done; `t0` is
    /// when it started and `phase0` the phase then.
    pub fn record(&self, log: &mut UnitLog, t0: Instant, phase0: u8) {
        let now = Instant::now();
        let phase = self.phase.load(Ordering::Relaxed);
        if phase0 == 0 && phase == 0 {
            log.home = Some(thread::current().id());
        }
        // Sleeps that overlap the block: started during it, or before it and woken after
        // its start (a unit stalled for the whole block gives one ~1 s sample).
        if phase0 == 1 || (phase0 == 0 && phase >= 1) {
            let late = now.saturating_duration_since(t0 + TICK);
            log.late_us
                .push(late.as_micros().min(u32::MAX as u128) as u32);
        }
        if phase == 1 && phase0 >= 1 {
            log.wakes += 1;
        }
    }

    pub fn figures(&self, logs: Vec<UnitLog>) -> Figures {
        let (start, blocker) = self.window.lock().unwrap().expect("the blocker ran");
        let mut groups: HashMap<bool, (Vec<u32>, u64, usize)> = HashMap::new();
        for log in logs {
            let g = groups.entry(log.home == Some(blocker)).or_default();
            g.0.extend(log.late_us);
            g.1 += u64::from(log.wakes);
            g.2 += 1;
        }
        let mut f = Figures::new();
        for (same, name) in [(true, "same"), (false, "other")] {
            let (mut late, wakes, units) = groups.remove(&same).unwrap_or_default();
            f.insert(format!("{name}_units"), units as f64);
            if units == 0 || late.is_empty() {
                continue;
            }
            late.sort_unstable();
            let pct = |p: f64| late[((late.len() - 1) as f64 * p).round() as usize] as f64;
            f.insert(format!("{name}_p50_us"), pct(0.5));
            f.insert(format!("{name}_p99_us"), pct(0.99));
            f.insert(format!("{name}_max_ms"), pct(1.0) / 1e3);
            f.insert(format!("{name}_wakes"), wakes as f64 / units as f64);
        }
        if let Some(at) = *self.reported_at.lock().unwrap() {
            f.insert("report_ms".into(), (at - start).as_secs_f64() * 1e3);
        }
        f
    }
}

/// A unit's loop around the contender's sleep (`sleep_1ms` must sleep `TICK`).
pub fn unit_loop(board: &Board, mut sleep_1ms: impl FnMut()) -> UnitLog {
    let mut log = UnitLog::default();
    while !board.stop.load(Ordering::Relaxed) {
        let phase0 = board.phase.load(Ordering::Relaxed);
        let t0 = Instant::now();
        sleep_1ms();
        board.record(&mut log, t0, phase0);
    }
    log
}

/// Shared `Arc<Board>` for the peers.
pub fn board() -> Arc<Board> {
    Arc::new(Board::default())
}
