//! Spawning at scale, with exact accounting: every fiber runs exactly once, every node of a
//! random spawn tree is created and finishes exactly once.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::Runtime;

mod common;
use common::{scaled, watchdog};

/// 1M spawns in release builds; debug builds are ~10x slower per spawn. Times
/// `FIBRA_TEST_SCALE` (`common::scaled`), a multiple of `SPAWNERS`.
fn spawns() -> usize {
    scaled(
        if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        },
        SPAWNERS,
    )
}
/// Fibers that spawn the leaves, each a contiguous share.
const SPAWNERS: usize = 8;

/// Each of `SPAWNS` detached fibers marks its own slot; the root waits for the last one to
/// unpark it. Every slot must be exactly 1: none lost, none run twice.
#[test]
fn every_spawned_fiber_runs_exactly_once() {
    let _w = watchdog("every_spawned_fiber_runs_exactly_once");
    let spawns = spawns();
    let ran: Arc<Vec<AtomicU8>> = Arc::new((0..spawns).map(|_| AtomicU8::new(0)).collect());
    let r = ran.clone();
    fibra::run(move || {
        let done = Arc::new(AtomicUsize::new(0));
        let root = fibra::current();
        let per = spawns / SPAWNERS;
        for s in 0..SPAWNERS {
            let (r, done, root) = (r.clone(), done.clone(), root.clone());
            drop(fibra::spawn(move || {
                for i in s * per..(s + 1) * per {
                    let (r, done, root) = (r.clone(), done.clone(), root.clone());
                    drop(fibra::spawn(move || {
                        r[i].fetch_add(1, Relaxed);
                        // AcqRel: the last increment sees every slot write (release sequence).
                        if done.fetch_add(1, AcqRel) + 1 == spawns {
                            root.unpark();
                        }
                    }));
                }
            }));
        }
        while done.load(Acquire) < spawns {
            fibra::park();
        }
    });
    let bad: Vec<_> = ran
        .iter()
        .enumerate()
        .filter(|(_, v)| v.load(Relaxed) != 1)
        .take(10)
        .collect();
    assert!(
        bad.is_empty(),
        "fibers that did not run exactly once (index, count): {bad:?}"
    );
}

/// xorshift64*: deterministic per seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MAX_DEPTH: u32 = 5;

#[derive(Clone, Copy)]
enum Pause {
    None,
    Yield,
    Sleep(Duration),
}

impl Pause {
    fn pick(rng: &mut Rng) -> Pause {
        match rng.below(4) {
            0 => Pause::Yield,
            1 => Pause::Sleep(Duration::from_micros(rng.below(1001))),
            _ => Pause::None,
        }
    }
    fn run(self) {
        match self {
            Pause::None => {}
            Pause::Yield => fibra::yield_now(),
            Pause::Sleep(d) => fibra::sleep(d),
        }
    }
}

/// What a node does, derived from its seed alone, so the tree's shape is known in advance.
struct Plan {
    /// (child seed, joined?, pause after spawning it)
    children: Vec<(u64, bool, Pause)>,
    before_join: Pause,
}

fn plan(seed: u64, depth: u32) -> Plan {
    let mut rng = Rng::new(seed);
    let n = if depth < MAX_DEPTH { rng.below(4) } else { 0 };
    let children = (0..n)
        .map(|_| (rng.next(), rng.below(2) == 0, Pause::pick(&mut rng)))
        .collect();
    Plan {
        children,
        before_join: Pause::pick(&mut rng),
    }
}

/// Nodes in the tree rooted at `seed`, computed without running it.
fn expected_nodes(seed: u64, depth: u32) -> u64 {
    1 + plan(seed, depth)
        .children
        .iter()
        .map(|&(s, _, _)| expected_nodes(s, depth + 1))
        .sum::<u64>()
}

#[derive(Default)]
struct Tally {
    created: AtomicU64,
    finished: AtomicU64,
}

/// A node: spawns its children (joining some, detaching the rest), pausing in between;
/// a joined child must return its own seed, rotated.
fn node(seed: u64, depth: u32, tally: Arc<Tally>) -> u64 {
    let plan = plan(seed, depth);
    let mut joined = Vec::new();
    for (child, join, pause) in plan.children {
        tally.created.fetch_add(1, Relaxed);
        let t = tally.clone();
        let h = fibra::spawn(move || node(child, depth + 1, t));
        if join {
            joined.push((child, h));
        }
        pause.run();
    }
    plan.before_join.run();
    for (child, h) in joined {
        assert_eq!(h.join().unwrap(), child.rotate_left(7));
    }
    tally.finished.fetch_add(1, Release);
    seed.rotate_left(7)
}

/// Runs `trees` (times `FIBRA_TEST_SCALE`) random trees from `seed` on `rt`; checks
/// created == finished == expected.
fn random_trees(rt: &Runtime, seed: u64, trees: usize) {
    let trees = scaled(trees, 1) as u64;
    let mut rng = Rng::new(seed);
    let roots: Vec<u64> = (0..trees).map(|_| rng.next()).collect();
    let expected: u64 = roots.iter().map(|&s| expected_nodes(s, 0)).sum();
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    rt.run(move || {
        let hs: Vec<_> = roots
            .iter()
            .map(|&s| {
                t.created.fetch_add(1, Relaxed);
                let t = t.clone();
                (s, fibra::spawn(move || node(s, 0, t)))
            })
            .collect();
        for (s, h) in hs {
            assert_eq!(h.join().unwrap(), s.rotate_left(7));
        }
        // Detached subtrees may still run: wait for them (polling; no ordering relies on it).
        while t.finished.load(Acquire) < expected {
            fibra::sleep(Duration::from_micros(200));
        }
    });
    assert_eq!(tally.created.load(Relaxed), expected);
    assert_eq!(tally.finished.load(Relaxed), expected);
}

#[test]
fn random_spawn_trees_on_the_default_runtime() {
    let _w = watchdog("random_spawn_trees_on_the_default_runtime");
    random_trees(&Runtime::new().unwrap(), 0xf1b2_a001, 500);
}

#[test]
fn random_spawn_trees_on_one_worker() {
    let _w = watchdog("random_spawn_trees_on_one_worker");
    random_trees(
        &Runtime::builder().workers(1).build().unwrap(),
        0xf1b2_a002,
        100,
    );
}

#[test]
fn random_spawn_trees_on_four_workers() {
    let _w = watchdog("random_spawn_trees_on_four_workers");
    random_trees(
        &Runtime::builder().workers(4).build().unwrap(),
        0xf1b2_a003,
        500,
    );
}
