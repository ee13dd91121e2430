//! `fibra::sync` under contention from fibers and OS threads at once, with exact accounting.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::sync::{Barrier, Mutex, OnceCell, RwLock, RwLockWriteGuard, Semaphore, WaitGroup};

const FIBERS: usize = 8;
const THREADS: usize = 8;

/// A tiny xorshift PRNG, seeded per party: enough to spread timeouts around.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `body(party, is_fiber)` on `FIBERS` fibers and `THREADS` plain OS threads together
/// and waits for all of them.
fn fibers_and_threads(body: impl Fn(usize, bool) + Send + Sync + 'static) {
    let body = Arc::new(body);
    let b = body.clone();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let b = body.clone();
            std::thread::spawn(move || b(FIBERS + t, false))
        })
        .collect();
    fibra::run(move || {
        let fibers: Vec<_> = (0..FIBERS)
            .map(|f| {
                let b = b.clone();
                fibra::spawn(move || b(f, true))
            })
            .collect();
        fibers.into_iter().for_each(|f| f.join().unwrap());
    });
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn mutex_counter_is_exact_with_random_timeouts() {
    const PER: u64 = 10_000;
    let m = Arc::new(Mutex::new(0u64));
    let timeouts = Arc::new(AtomicU64::new(0));
    let (m2, t2) = (m.clone(), timeouts.clone());
    fibers_and_threads(move |party, _| {
        let mut rng = Rng(party as u64 * 0x9E37_79B9 + 1);
        let mut done = 0;
        while done < PER {
            let r = rng.next();
            let guard = if r % 8 == 0 {
                match m2.lock_timeout(Duration::from_micros(r % 50)) {
                    Some(g) => g,
                    None => {
                        t2.fetch_add(1, Relaxed);
                        continue;
                    }
                }
            } else {
                m2.lock()
            };
            let mut g = guard;
            *g += 1;
            done += 1;
        }
    });
    assert_eq!(*m.lock(), PER * (FIBERS + THREADS) as u64);
    assert!(!m.is_locked());
    println!("lock_timeout expired {} times", timeouts.load(Relaxed));
}

#[test]
fn rwlock_readers_and_writers_never_overlap() {
    const PER: usize = 2_000;
    let lock = Arc::new(RwLock::new((0u64, 0u64)));
    let readers_in = Arc::new(AtomicUsize::new(0));
    let writers_in = Arc::new(AtomicUsize::new(0));
    let max_readers = Arc::new(AtomicUsize::new(0));
    let (l, r_in, w_in, max_r) = (
        lock.clone(),
        readers_in.clone(),
        writers_in.clone(),
        max_readers.clone(),
    );
    fibers_and_threads(move |party, is_fiber| {
        let mut rng = Rng(party as u64 + 7);
        for _ in 0..PER {
            let r = rng.next();
            if r % 4 == 0 {
                let g = if r % 16 == 0 {
                    l.write_timeout(Duration::from_micros(r % 100))
                } else {
                    Some(l.write())
                };
                let Some(mut g) = g else { continue };
                assert_eq!(w_in.fetch_add(1, SeqCst), 0, "two writers");
                assert_eq!(r_in.load(SeqCst), 0, "writer with readers");
                g.0 += 1;
                if is_fiber && r % 3 == 0 {
                    fibra::yield_now();
                }
                g.1 += 1;
                w_in.fetch_sub(1, SeqCst);
            } else {
                let g = if r % 16 == 1 {
                    l.read_timeout(Duration::from_micros(r % 100))
                } else {
                    Some(l.read())
                };
                let Some(g) = g else { continue };
                let n = r_in.fetch_add(1, SeqCst) + 1;
                max_r.fetch_max(n, SeqCst);
                assert_eq!(w_in.load(SeqCst), 0, "reader with a writer");
                assert_eq!(g.0, g.1, "torn write seen");
                if is_fiber && r % 5 == 0 {
                    fibra::yield_now();
                }
                r_in.fetch_sub(1, SeqCst);
            }
        }
    });
    let g = lock.read();
    assert_eq!(g.0, g.1);
    println!(
        "{} writes, at most {} readers at once",
        g.0,
        max_readers.load(SeqCst)
    );
}

/// Exact accounting while writers barge: parties (fibers and threads) write with and without
/// timeouts, downgrade, and read with and without timeouts; the final count is the sum of the
/// writes each party made, no reader sees a torn pair, a downgraded hold still sees its own
/// write, and the lock ends free.
#[test]
fn rwlock_write_count_is_exact_with_barging_timeouts_and_downgrades() {
    const PER: u64 = 5_000;
    let lock = Arc::new(RwLock::new((0u64, 0u64)));
    let written = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::new(AtomicU64::new(0));
    let (l, w, t) = (lock.clone(), written.clone(), timeouts.clone());
    fibers_and_threads(move |party, is_fiber| {
        let mut rng = Rng(party as u64 * 0x9E37_79B9 + 3);
        let mut mine = 0;
        for _ in 0..PER {
            let r = rng.next();
            let yield_now = |every| {
                if is_fiber && r % every == 0 {
                    fibra::yield_now(); // held across a yield: the others queue meanwhile
                }
            };
            match r % 8 {
                0 => match l.read_timeout(Duration::from_micros(r % 50)) {
                    Some(g) => assert_eq!(g.0, g.1, "torn write seen"),
                    None => _ = t.fetch_add(1, Relaxed),
                },
                1 | 2 => {
                    let g = l.read();
                    yield_now(5);
                    assert_eq!(g.0, g.1, "torn write seen");
                }
                3 => {
                    let Some(mut g) = l.write_timeout(Duration::from_micros(r % 50)) else {
                        t.fetch_add(1, Relaxed);
                        continue;
                    };
                    g.0 += 1;
                    g.1 += 1;
                    mine += 1;
                }
                4 => {
                    let mut g = l.write();
                    g.0 += 1;
                    g.1 += 1;
                    mine += 1;
                    let ours = *g;
                    let g = RwLockWriteGuard::downgrade(g);
                    yield_now(3);
                    assert_eq!(*g, ours, "a writer got in during a downgrade");
                }
                _ => {
                    let mut g = l.write();
                    g.0 += 1;
                    yield_now(7);
                    g.1 += 1;
                    mine += 1;
                }
            }
        }
        w.fetch_add(mine, SeqCst);
    });
    let g = lock.read();
    assert_eq!(g.0, written.load(SeqCst), "lost or doubled writes");
    assert_eq!(g.1, g.0);
    drop(g);
    assert!(lock.try_write().is_some(), "the lock was left held");
    println!(
        "{} writes, {} timeouts",
        written.load(SeqCst),
        timeouts.load(Relaxed)
    );
}

#[test]
fn semaphore_never_exceeds_its_permits() {
    const PERMITS: usize = 3;
    const PER: usize = 3_000;
    let sem = Arc::new(Semaphore::new(PERMITS));
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let (s, i, mx, e) = (sem.clone(), inside.clone(), max.clone(), entered.clone());
    fibers_and_threads(move |party, is_fiber| {
        let mut rng = Rng(party as u64 + 99);
        for _ in 0..PER {
            let r = rng.next();
            let permit = if r % 8 == 0 {
                s.acquire_timeout(Duration::from_micros(r % 80))
            } else {
                Some(s.acquire())
            };
            let Some(permit) = permit else { continue };
            let now = i.fetch_add(1, SeqCst) + 1;
            mx.fetch_max(now, SeqCst);
            e.fetch_add(1, Relaxed);
            if is_fiber && r % 4 == 0 {
                fibra::yield_now();
            }
            i.fetch_sub(1, SeqCst);
            drop(permit);
        }
    });
    assert!(max.load(SeqCst) <= PERMITS, "max {}", max.load(SeqCst));
    assert_eq!(sem.available_permits(), PERMITS);
    assert!(entered.load(Relaxed) > 0);
}

#[test]
fn barrier_generations_are_whole() {
    const ROUNDS: usize = 300;
    let parties = FIBERS + THREADS;
    let barrier = Arc::new(Barrier::new(parties));
    let arrived: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let leaders: Arc<Vec<AtomicUsize>> =
        Arc::new((0..ROUNDS).map(|_| AtomicUsize::new(0)).collect());
    let (b, a, l) = (barrier.clone(), arrived.clone(), leaders.clone());
    fibers_and_threads(move |_, _| {
        for round in 0..ROUNDS {
            a[round].fetch_add(1, Relaxed);
            let res = b.wait();
            // Everyone's arrival happens-before anyone leaves.
            assert_eq!(a[round].load(Relaxed), parties, "round {round} left early");
            if res.is_leader() {
                l[round].fetch_add(1, Relaxed);
            }
        }
    });
    assert!(leaders.iter().all(|l| l.load(Relaxed) == 1));
}

#[test]
fn wait_group_waits_for_every_done() {
    const ROUNDS: usize = 200;
    fibra::run(|| {
        for round in 0..ROUNDS {
            let wg = Arc::new(WaitGroup::new());
            let work = Arc::new(AtomicUsize::new(0));
            let n = 4 + round % 8;
            wg.add(n);
            for i in 0..n {
                let (wg, work) = (wg.clone(), work.clone());
                let task = move || {
                    work.fetch_add(1, Relaxed);
                    wg.done();
                };
                if i % 4 == 0 {
                    drop(std::thread::spawn(task)); // a plain thread calls `done`
                } else {
                    drop(fibra::spawn(task));
                }
            }
            if round % 2 == 0 {
                wg.wait();
            } else {
                while !wg.wait_timeout(Duration::from_micros(50)) {}
            }
            assert_eq!(work.load(Relaxed), n);
            assert_eq!(wg.count(), 0);
        }
    });
}

#[test]
fn once_cell_initialiser_runs_exactly_once() {
    const ROUNDS: usize = 10;
    const PARTIES: usize = 64;
    for round in 0..ROUNDS {
        let cell = Arc::new(OnceCell::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(AtomicBool::new(false));
        // Half the contenders are OS threads, half fibers; the first initialiser of odd rounds
        // panics, so a waiter must take over.
        let contend = {
            let (cell, runs, go) = (cell.clone(), runs.clone(), go.clone());
            move |me: usize| {
                while !go.load(Acquire) {
                    std::hint::spin_loop();
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    *cell.get_or_init(|| {
                        let n = runs.fetch_add(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(2)); // others arrive meanwhile
                        if round % 2 == 1 && n == 0 {
                            panic!("first initialiser fails");
                        }
                        me
                    })
                }));
                r.ok()
            }
        };
        let c = contend.clone();
        let threads: Vec<_> = (0..PARTIES / 2)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || c(t))
            })
            .collect();
        let g = go.clone();
        let fiber_values: Vec<Option<usize>> = fibra::run(move || {
            let fibers: Vec<_> = (PARTIES / 2..PARTIES)
                .map(|f| {
                    let c = contend.clone();
                    fibra::spawn(move || c(f))
                })
                .collect();
            g.store(true, Release);
            fibers.into_iter().map(|f| f.join().unwrap()).collect()
        });
        let mut values: Vec<Option<usize>> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        values.extend(fiber_values);
        let winner = *cell.get().expect("initialised");
        let expected_runs = if round % 2 == 1 { 2 } else { 1 };
        assert_eq!(runs.load(SeqCst), expected_runs, "round {round}");
        let failed = values.iter().filter(|v| v.is_none()).count();
        assert_eq!(failed, expected_runs - 1);
        assert!(values.iter().flatten().all(|&v| v == winner));
    }
}
