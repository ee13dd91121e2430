//! Run queues: one bounded ring per worker, plus the global inject queue.
//!
//! ```text
//!   owner worker ──push_back/pop──▶ Local ring (256 slots, lock-free)
//!                                     │  ▲
//!        ring full: oldest half ──────┘  └──── other workers: steal_into (oldest half)
//!        + the new item, one lock  ▼
//!                                Inject (Mutex<VecDeque> + atomic length)
//!                                     ▲
//!   outside threads, overflow ────────┘   workers pop it every 61 ticks, and when idle
//! ```
//! `local.rs` holds the ring protocol and its field-access rules; `inject.rs` the global queue.
//! Both are generic over `T` and checked by loom (`mod loom_tests` below).
//!
//! Go's `runqput` / `runqgrab` / `runqputslow` and tokio's `multi_thread/queue.rs` are the models.
//! `benches/queue.rs` measures both against crossbeam-deque, the queue they replaced.

mod inject;
mod local;

pub(crate) use inject::Inject;
#[allow(unused_imports)] // CAPACITY: for the scheduler's tuning and tests
pub(crate) use local::{local, Local, Stealer, CAPACITY};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*};
    use std::sync::{Arc, Barrier};
    use std::thread;

    const N: u64 = if cfg!(miri) { 200 } else { 1_000_000 };

    fn drain_all(local: &mut Local<u64>, inject: &Inject<u64>) -> Vec<u64> {
        let mut out: Vec<u64> = std::iter::from_fn(|| local.pop()).collect();
        out.extend(std::iter::from_fn(|| inject.pop()));
        out
    }

    #[test]
    fn fifo_and_len() {
        let inject = Inject::new();
        let (mut local, stealer) = local();
        assert!(local.is_empty() && stealer.is_empty());
        for i in 0..200 {
            local.push_back(i, &inject);
        }
        assert_eq!((local.len(), stealer.len()), (200, 200));
        assert_eq!(drain_all(&mut local, &inject), (0..200).collect::<Vec<_>>());
        assert!(local.is_empty() && stealer.is_empty() && inject.is_empty());
    }

    #[test]
    fn overflow_moves_oldest_half_and_value() {
        let inject = Inject::new();
        let (mut local, _stealer) = local();
        let cap = CAPACITY as u64;
        for i in 0..cap + 44 {
            local.push_back(i, &inject);
        }
        // Push `cap` found the ring full: items 0..cap/2 and `cap` itself went to inject.
        assert_eq!(inject.len() as u64, cap / 2 + 1);
        assert_eq!(local.len() as u64, cap / 2 + 43);
        let ring: Vec<u64> = std::iter::from_fn(|| local.pop()).collect();
        let global: Vec<u64> = std::iter::from_fn(|| inject.pop()).collect();
        assert_eq!(
            ring,
            (cap / 2..cap).chain(cap + 1..cap + 44).collect::<Vec<_>>()
        );
        assert_eq!(global, (0..cap / 2).chain([cap]).collect::<Vec<_>>());
    }

    #[test]
    fn pop_batch_moves_a_batch_in_order_and_stops_at_a_full_ring() {
        let inject = Inject::new();
        inject.push_batch(0..10u64);
        let (mut local, _stealer) = local();
        // The first comes back; the next 4 go to the ring, oldest first.
        assert_eq!(inject.pop_batch(4, |v| local.push_if_room(v)), Some(0));
        assert_eq!(inject.len(), 5);
        assert_eq!(
            std::iter::from_fn(|| local.pop()).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        // A ring with room for only 2: the third item goes back to the front of the queue.
        for i in 100..100 + CAPACITY as u64 - 2 {
            local.push_back(i, &inject);
        }
        assert_eq!(inject.pop_batch(4, |v| local.push_if_room(v)), Some(5));
        assert_eq!(local.push_if_room(999), Err(999));
        assert_eq!(
            std::iter::from_fn(|| inject.pop()).collect::<Vec<_>>(),
            [8, 9]
        );
        let ring: Vec<u64> = std::iter::from_fn(|| local.pop()).collect();
        assert_eq!(&ring[ring.len() - 2..], [6, 7]);
        // Empty: nothing, and `keep` is not called.
        assert_eq!(
            inject.pop_batch(4, |_| panic!("called on an empty queue")),
            None
        );
    }

    #[test]
    fn steal_takes_oldest_half() {
        let inject = Inject::new();
        let (mut victim, stealer) = local();
        let (mut thief, _) = local();
        for i in 0..11 {
            victim.push_back(i, &inject);
        }
        assert_eq!(stealer.steal_into(&mut thief), Some(0));
        assert_eq!(drain_all(&mut thief, &inject), vec![1, 2, 3, 4, 5]);
        assert_eq!(drain_all(&mut victim, &inject), vec![6, 7, 8, 9, 10]);
        assert_eq!(stealer.steal_into(&mut thief), None);
        victim.push_back(42, &inject);
        assert_eq!(stealer.steal_into(&mut thief), Some(42));
        assert!(thief.is_empty());
    }

    #[test]
    fn steal_refuses_when_thief_more_than_half_full() {
        let inject = Inject::new();
        let (mut victim, stealer) = local();
        let (mut thief, _) = local();
        for i in 0..=CAPACITY as u64 / 2 {
            thief.push_back(i, &inject);
            victim.push_back(i, &inject);
        }
        assert_eq!(stealer.steal_into(&mut thief), None);
        thief.pop();
        assert_eq!(stealer.steal_into(&mut thief), Some(0));
    }

    #[test]
    fn positions_wrap_around_u32() {
        // Drive the counters across 2^32 quickly by starting them near the top.
        let inject = Inject::new();
        let (mut victim, stealer) = local::local_at(u32::MAX - 5);
        let (mut thief, _) = local::local_at(u32::MAX - 1);
        for i in 0..20 {
            victim.push_back(i, &inject);
        }
        assert_eq!(stealer.steal_into(&mut thief), Some(0));
        let mut got = drain_all(&mut thief, &inject);
        got.extend(drain_all(&mut victim, &inject));
        assert_eq!(got, (1..20).collect::<Vec<_>>());
    }

    /// Each id is obtained exactly once: the owner pushes (and pops a quarter itself), 3 thieves
    /// steal and also drain the inject queue that overflow feeds.
    #[test]
    fn stress_each_item_exactly_once() {
        let seen: Arc<Vec<AtomicU8>> = Arc::new((0..N).map(|_| AtomicU8::new(0)).collect());
        let inject = Arc::new(Inject::new());
        let (mut owner, stealer) = local();
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(4));
        let record = |seen: &[AtomicU8], id: u64| seen[id as usize].fetch_add(1, Relaxed);

        let thieves: Vec<_> = (0..3)
            .map(|_| {
                let (seen, inject, stealer, done, start) = (
                    seen.clone(),
                    inject.clone(),
                    stealer.clone(),
                    done.clone(),
                    start.clone(),
                );
                thread::spawn(move || {
                    let (mut mine, _) = local();
                    let (mut stolen, mut got) = (0usize, 0usize);
                    start.wait();
                    loop {
                        let finished = done.load(Acquire); // pairs with the owner's Release store
                        if let Some(id) = stealer.steal_into(&mut mine) {
                            stolen += 1;
                            record(&seen, id);
                            got += 1;
                            while let Some(id) = mine.pop() {
                                record(&seen, id);
                                got += 1;
                            }
                        } else if let Some(id) = inject.pop() {
                            record(&seen, id);
                            got += 1;
                        } else if finished {
                            return (stolen, got);
                        } else {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();

        start.wait();
        let mut own = 0usize;
        for id in 0..N {
            owner.push_back(id, &inject);
            if id % 4 == 0 {
                if let Some(id) = owner.pop() {
                    record(&seen, id);
                    own += 1;
                }
            }
        }
        while let Some(id) = owner.pop() {
            record(&seen, id);
            own += 1;
        }
        done.store(true, Release); // pairs with the thieves' Acquire load
        let mut total = own;
        let mut stolen_total = 0;
        for t in thieves {
            let (stolen, got) = t.join().unwrap();
            stolen_total += stolen;
            total += got;
        }
        // Across all thieves: one thief may be scheduled only after the ring has drained and
        // find its work in the inject queue instead.
        assert!(cfg!(miri) || stolen_total > 0, "no steal succeeded");
        while let Some(id) = inject.pop() {
            record(&seen, id);
            total += 1;
        }
        assert_eq!(total as u64, N);
        let bad: Vec<_> = seen
            .iter()
            .enumerate()
            .filter(|(_, c)| c.load(Relaxed) != 1)
            .take(5)
            .collect();
        assert!(bad.is_empty(), "ids not seen exactly once: {bad:?}");
    }

    /// Counts drops per id.
    struct Tracked {
        id: usize,
        drops: Arc<Vec<AtomicU8>>,
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops[self.id].fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn items_left_at_drop_are_dropped_once() {
        let n = CAPACITY * 3;
        let drops: Arc<Vec<AtomicU8>> = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
        let inject = Inject::new();
        let (mut victim, stealer) = local();
        let (mut thief, thief_stealer) = local();
        for id in 0..n {
            victim.push_back(
                Tracked {
                    id,
                    drops: drops.clone(),
                },
                &inject,
            );
        }
        drop(victim.pop()); // one popped and dropped
        drop(stealer.steal_into(&mut thief)); // one stolen and dropped, more moved to `thief`
        assert!(!thief.is_empty() && !victim.is_empty() && !inject.is_empty());
        drop(victim); // the stealer outlives its ring: it must find it empty, not double-drop
        assert!(stealer.is_empty() && stealer.steal_into(&mut thief).is_none());
        drop(thief);
        drop(inject);
        drop((stealer, thief_stealer));
        let counts: Vec<u8> = drops.iter().map(|c| c.load(Relaxed)).collect();
        assert!(counts.iter().all(|&c| c == 1), "drop counts: {counts:?}");
    }

    #[test]
    fn concurrent_drop_accounting() {
        // Same as above, under contention: drops happen in several threads.
        let n = if cfg!(miri) { 100 } else { 100_000 };
        let drops: Arc<Vec<AtomicU8>> = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
        let inject = Arc::new(Inject::new());
        let (mut owner, stealer) = local();
        let taken = Arc::new(AtomicUsize::new(0));
        let thief = {
            let (inject, taken) = (inject.clone(), taken.clone());
            thread::spawn(move || {
                let (mut mine, _) = local();
                while taken.load(Relaxed) < n / 2 {
                    if let Some(item) = stealer.steal_into(&mut mine).or_else(|| inject.pop()) {
                        drop(item);
                        taken.fetch_add(1, Relaxed);
                    } else {
                        thread::yield_now();
                    }
                }
                mine // dropped by the joiner, with what it still holds
            })
        };
        for id in 0..n {
            owner.push_back(
                Tracked {
                    id,
                    drops: drops.clone(),
                },
                &inject,
            );
        }
        // The thief stops after n/2 items (it may never get them all if we are fast; then we
        // hand out the rest via inject to let it finish).
        while taken.load(Relaxed) < n / 2 {
            match owner.pop() {
                Some(item) => inject.push(item),
                None => thread::yield_now(),
            }
        }
        let mine = thief.join().unwrap();
        drop((owner, mine, inject));
        let bad = drops.iter().filter(|c| c.load(Relaxed) != 1).count();
        assert_eq!(bad, 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::loom::thread;

    /// Sorts and checks that `got` is exactly `0..n`.
    fn assert_exactly_once(mut got: Vec<u32>, n: u32) {
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }

    fn thief(stealer: Stealer<u32>) -> thread::JoinHandle<Vec<u32>> {
        thread::spawn(move || {
            let (mut mine, _) = local();
            let mut got = Vec::new();
            if let Some(v) = stealer.steal_into(&mut mine) {
                got.push(v);
                got.extend(std::iter::from_fn(|| mine.pop()));
            }
            got
        })
    }

    #[test]
    fn loom_owner_vs_one_stealer() {
        loom::model(|| {
            let inject = Inject::new();
            // Positions start just below the 2^32 wrap, so this model crosses it.
            let (mut owner, stealer) = local::local_at(u32::MAX - 1);
            let th = thief(stealer);
            let mut got = Vec::new();
            for i in 0..3 {
                owner.push_back(i, &inject);
            }
            got.extend(owner.pop());
            owner.push_back(3, &inject);
            got.extend(std::iter::from_fn(|| owner.pop()));
            got.extend(th.join().unwrap());
            assert!(inject.is_empty());
            assert_exactly_once(got, 4);
        });
    }

    #[test]
    fn loom_pop_batch_into_a_ring_being_stolen_from() {
        loom::model(|| {
            let inject = Inject::new();
            let (mut owner, stealer) = local();
            // One free slot (CAPACITY is 4 under loom) until the thief frees more.
            for i in 0..3 {
                owner.push_back(i, &inject);
            }
            inject.push_batch(3..6);
            let th = thief(stealer);
            let first = inject.pop_batch(3, |v| owner.push_if_room(v));
            let mut got: Vec<u32> = first.into_iter().collect();
            got.extend(std::iter::from_fn(|| owner.pop()));
            got.extend(std::iter::from_fn(|| inject.pop()));
            got.extend(th.join().unwrap());
            assert_exactly_once(got, 6);
        });
    }

    #[test]
    fn loom_two_stealers_race_owner() {
        loom::model(|| {
            let inject = Inject::new();
            let (mut owner, stealer) = local();
            for i in 0..2 {
                owner.push_back(i, &inject);
            }
            let (a, b) = (thief(stealer.clone()), thief(stealer));
            owner.push_back(2, &inject);
            let mut got: Vec<u32> = owner.pop().into_iter().collect();
            got.extend(a.join().unwrap());
            got.extend(b.join().unwrap());
            got.extend(std::iter::from_fn(|| owner.pop()));
            assert!(inject.is_empty());
            assert_exactly_once(got, 3);
        });
    }

    #[test]
    fn loom_overflow_while_stealing() {
        loom::model(|| {
            let inject = Arc::new(Inject::new());
            let (mut owner, stealer) = local();
            let cap = CAPACITY as u32;
            owner.push_back(0, &inject);
            // The thief starts before most pushes, so it can see `real` moved by the overflow
            // with a stale `tail`.
            let th = thief(stealer);
            for i in 1..cap + 2 {
                // Push `cap` finds the ring full: it moves half + itself to inject, or (a thief
                // is copying) goes to inject alone, or (a thief took items) lands in the ring.
                owner.push_back(i, &inject);
            }
            let mut got = th.join().unwrap();
            got.extend(std::iter::from_fn(|| owner.pop()));
            got.extend(std::iter::from_fn(|| inject.pop()));
            assert_exactly_once(got, cap + 2);
        });
    }

    #[test]
    fn loom_thief_ring_is_stolen_from() {
        // Main steals from `victim` into `mine` while another thief steals from `mine` twice:
        // main's copies may land in slots that thief has just read (the dst check's Acquire),
        // and its second steal may take them (dst.tail's Release).
        loom::model(|| {
            let inject = Inject::new();
            let (mut victim, from_victim) = local();
            let (mut mine, from_mine) = local();
            // `mine` starts full. The thief's first steal takes positions 0-1; main then copies
            // one item into position 4 (slot 0, just read by the thief); the thief's later
            // steals take positions 2, 3 and then the copy.
            for i in 0..4 {
                victim.push_back(i, &inject);
            }
            for i in 4..8 {
                mine.push_back(i, &inject);
            }
            let th = thread::spawn(move || {
                let (mut other, _) = local();
                let mut got = Vec::new();
                for _ in 0..4 {
                    got.extend(from_mine.steal_into(&mut other));
                    got.extend(std::iter::from_fn(|| other.pop()));
                }
                got
            });
            // `mine` is more than half full until the thief's first steal: retry a little.
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Some(v) = from_victim.steal_into(&mut mine) {
                    got.push(v);
                    break;
                }
                thread::yield_now();
            }
            got.extend(th.join().unwrap());
            got.extend(std::iter::from_fn(|| mine.pop()));
            got.extend(std::iter::from_fn(|| victim.pop()));
            assert_exactly_once(got, 8);
        });
    }

    #[test]
    fn loom_inject_two_threads() {
        loom::model(|| {
            let inject = Arc::new(Inject::new());
            let other = {
                let inject = inject.clone();
                thread::spawn(move || {
                    inject.push(0);
                    inject.push_batch([1, 2].into_iter());
                    inject.pop()
                })
            };
            inject.push(3);
            let mut got: Vec<u32> = inject.pop().into_iter().collect();
            got.extend(other.join().unwrap());
            assert_eq!(inject.len() + got.len(), 4);
            got.extend(std::iter::from_fn(|| inject.pop()));
            assert!(inject.is_empty());
            assert_exactly_once(got, 4);
        });
    }
}
