//! Unit tests of the stack layer: slot reuse, classes, guards, budgets, teardown.

use std::sync::Arc;

use corosensei::stack::Stack;

use super::region::discard_all;
use super::*;
use crate::error::SpawnError;

/// The `/proc/self/maps` line covering `addr`, if any.
fn mapping_of(addr: usize) -> Option<String> {
    mapping_in(&std::fs::read_to_string("/proc/self/maps").unwrap(), addr)
}

/// The line of `maps` (a `/proc/self/maps` snapshot) whose range contains `addr`.
fn mapping_in(maps: &str, addr: usize) -> Option<String> {
    maps.lines()
        .find(|line| {
            let range = line.split(' ').next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            (lo..hi).contains(&addr)
        })
        .map(str::to_owned)
}

/// Forks; the child reads one byte at `addr` and exits 0 if that did not fault. Returns the
/// signal that killed the child, if any. The child runs only a volatile read and `_exit`.
fn read_in_child(addr: usize) -> Option<i32> {
    // SAFETY: the child calls only async-signal-safe code (a memory read and `_exit`).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `addr` is mapped (possibly as a guard, which is the point: it may fault).
        unsafe {
            std::ptr::read_volatile(addr as *const u8);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status))
}

fn guard_faults(stack: &FiberStack) -> bool {
    // SIGSEGV from the default action, or SIGABRT if an overflow handler claimed it.
    matches!(
        read_in_child(stack.start),
        Some(libc::SIGSEGV | libc::SIGABRT)
    )
}

#[test]
fn take_give_is_lifo_and_reuses_slots() {
    let pool = StackPool::new();
    let a = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let b = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let (a_start, b_start) = (a.start, b.start);
    assert_ne!(a_start, b_start);
    assert_eq!(pool.live(), 2);
    pool.give(a);
    pool.give(b);
    assert_eq!(pool.live(), 0);
    let first = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let second = pool.take(DEFAULT_STACK_SIZE).unwrap();
    assert_eq!(first.start, b_start, "last given is first taken");
    assert_eq!(second.start, a_start);
    pool.give(first);
    pool.give(second);
}

#[test]
fn many_cycles_map_one_region() {
    let pool = Arc::new(StackPool::new());
    for _ in 0..10_000 {
        let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
        pool.give(s);
    }
    let mut cache = LocalStackCache::new(pool.clone());
    let start = cache
        .take(DEFAULT_STACK_SIZE)
        .unwrap()
        .start_then_give(&mut cache);
    for _ in 0..10_000 {
        let s = cache.take(DEFAULT_STACK_SIZE).unwrap();
        assert_eq!(s.start, start, "the cache hands back the warm slot");
        cache.give(s);
    }
    assert_eq!(pool.mapped_regions(), 1);
    drop(cache);
    assert_eq!(pool.live(), 0);
}

impl FiberStack {
    fn start_then_give(self, cache: &mut LocalStackCache) -> usize {
        let start = self.start;
        cache.give(self);
        start
    }
}

#[test]
fn cache_spills_and_refills_in_batches() {
    let pool = Arc::new(StackPool::new());
    let mut cache = LocalStackCache::new(pool.clone());
    let first = cache.take(DEFAULT_STACK_SIZE).unwrap();
    // Fresh slots are carved a batch at a time too (the rest wait in the cache, counted live).
    assert_eq!(pool.live(), 32);
    let mut stacks: Vec<_> = (1..200)
        .map(|_| cache.take(DEFAULT_STACK_SIZE).unwrap())
        .collect();
    stacks.push(first);
    assert_eq!(pool.live(), 224, "7 batches of 32 for 200 takes");
    stacks.into_iter().for_each(|s| cache.give(s));
    assert!(
        (33..=64).contains(&pool.live()),
        "the cache keeps 33..=64, spilling 32 at a time"
    );
    let mut other = LocalStackCache::new(pool.clone());
    let s = other.take(DEFAULT_STACK_SIZE).unwrap();
    other.give(s);
    drop((cache, other));
    assert_eq!(pool.live(), 0);
    assert_eq!(pool.mapped_regions(), 1);
}

#[test]
fn sizes_get_their_own_classes() {
    let pool = Arc::new(StackPool::new());
    let mut cache = LocalStackCache::new(pool.clone());
    let small = cache.take(DEFAULT_STACK_SIZE).unwrap();
    let big = cache.take(256 * 1024 + 1).unwrap();
    assert!(small.size() >= DEFAULT_STACK_SIZE);
    assert!(big.size() > 256 * 1024);
    assert_eq!(pool.mapped_regions(), 2);
    let (small_start, big_start) = (small.start, big.start);
    cache.give(big);
    cache.give(small);
    assert_eq!(
        pool.take(256 * 1024 + 1)
            .unwrap()
            .start_then_give_pool(&pool),
        big_start
    );
    assert_eq!(
        cache
            .take(DEFAULT_STACK_SIZE)
            .unwrap()
            .start_then_give(&mut cache),
        small_start
    );
    drop(cache);
    assert_eq!(pool.live(), 0);
}

impl FiberStack {
    fn start_then_give_pool(self, pool: &StackPool) -> usize {
        let start = self.start;
        pool.give(self);
        start
    }
}

#[test]
fn layout_matches_corosensei_contract() {
    let pool = StackPool::new();
    for size in [MIN_STACK_SIZE, DEFAULT_STACK_SIZE, 100_000, 1 << 20] {
        let s = pool.take(size).unwrap();
        assert_eq!(s.base().get() % 16, 0);
        assert_eq!(s.limit().get(), s.start, "limit includes the guard page");
        assert_eq!(
            s.base().get() - s.limit().get(),
            s.size() + sys::page_size()
        );
        assert!(s.size() >= size);
        pool.give(s);
    }
}

#[test]
fn whole_usable_range_is_writable() {
    let pool = StackPool::new();
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let lo = s.base().get() - s.size();
    // SAFETY: `[lo, base)` is the usable range of a stack we own and nothing runs on it.
    let usable = unsafe { std::slice::from_raw_parts_mut(lo as *mut u8, s.size()) };
    usable.fill(0xA5);
    assert!(usable.iter().all(|b| *b == 0xA5));
    assert!(
        guard_faults(&s),
        "the page below the usable range is a guard"
    );
    pool.give(s);
}

#[test]
fn guard_survives_dontneed_and_memory_is_returned() {
    let pool = StackPool::with_high_water(0); // trim discards every free slot
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let (start, top) = (s.start, s.base().get() - 8);
    // SAFETY: `top` is in the usable range of our stack.
    unsafe { (top as *mut u64).write(0xDEAD_BEEF) };
    pool.give(s);
    assert_eq!(pool.trim(usize::MAX), 1);
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    assert_eq!(s.start, start);
    // SAFETY: as above.
    let word = unsafe { (top as *const u64).read() };
    assert_eq!(word, 0, "MADV_DONTNEED zeroed the slot");
    assert!(guard_faults(&s), "the guard marker survived MADV_DONTNEED");
    // Direct discard of a slot (as the pool does for cold slots), then the guard again.
    // SAFETY: nothing runs on `s`.
    unsafe { discard_all(std::slice::from_ref(&s)) };
    assert!(guard_faults(&s));
    pool.give(s);
}

#[test]
fn trimming_adjacent_slots_at_once_zeroes_each_and_keeps_every_guard() {
    let pool = StackPool::with_high_water(0); // trim discards every free slot
    let stacks: Vec<_> = (0..8)
        .map(|_| pool.take(DEFAULT_STACK_SIZE).unwrap())
        .collect();
    let tops: Vec<usize> = stacks.iter().map(|s| s.base().get() - 8).collect();
    for &top in &tops {
        // SAFETY: `top` is in the usable range of one of our stacks.
        unsafe { (top as *mut u64).write(0xDEAD_BEEF) };
    }
    // Given back out of address order, with a gap: runs are found by address, not by order.
    let mut held = None; // slot 5 stays live: its memory must survive the trim
    for (i, s) in stacks.into_iter().enumerate().rev() {
        if i == 5 {
            held = Some(s);
        } else {
            pool.give(s);
        }
    }
    assert_eq!(pool.trim(usize::MAX), 7);
    for (i, &top) in tops.iter().enumerate() {
        // SAFETY: the region stays mapped while a stack of it (slot 5) is live.
        let word = unsafe { (top as *const u64).read() };
        let want = if i == 5 { 0xDEAD_BEEF } else { 0 };
        assert_eq!(word, want, "slot {i}");
    }
    let again: Vec<_> = (0..7)
        .map(|_| pool.take(DEFAULT_STACK_SIZE).unwrap())
        .collect();
    assert!(again.iter().all(guard_faults), "every guard survived");
    again.into_iter().chain(held).for_each(|s| pool.give(s));
}

#[test]
fn madvise_guards_cost_no_maps() {
    if sys::force_mprotect_guards() {
        return; // FIBRA_FORCE_MPROTECT_GUARDS=1 run: covered by the mprotect tests
    }
    let pool = StackPool::new();
    let stacks: Vec<_> = (0..100)
        .map(|_| pool.take(DEFAULT_STACK_SIZE).unwrap())
        .collect();
    assert_eq!(pool.mprotect_guards(), 0);
    // One snapshot for both look-ups: other tests map and unmap concurrently, and an adjacent
    // mapping with the same flags merges with ours between two reads.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let whole = mapping_in(&maps, stacks[0].start).unwrap();
    assert_eq!(
        mapping_in(&maps, stacks[99].start).unwrap(),
        whole,
        "one mapping holds all slots"
    );
    assert!(whole.contains("rw-p"));
    stacks.into_iter().for_each(|s| pool.give(s));
}

#[test]
fn mprotect_fallback_respects_the_map_budget() {
    let pool = StackPool::with_map_budget(3);
    assert!(pool.check_guard_budget().is_ok());
    let stacks: Vec<_> = (0..3)
        .map(|_| pool.take(DEFAULT_STACK_SIZE).unwrap())
        .collect();
    assert_eq!(pool.mprotect_guards(), 3);
    assert!(
        mapping_of(stacks[0].start).unwrap().contains("---p"),
        "PROT_NONE guard"
    );
    assert!(guard_faults(&stacks[1]));
    assert!(matches!(
        pool.check_guard_budget(),
        Err(SpawnError::MapCountBudget { .. })
    ));
    match pool.take(DEFAULT_STACK_SIZE) {
        Err(SpawnError::MapCountBudget {
            guarded_stacks: 3,
            max_map_count,
        }) => {
            assert_eq!(max_map_count, sys::max_map_count())
        }
        other => panic!("expected MapCountBudget, got {:?}", other.map(|s| s.start)),
    }
    // A pooled slot keeps its guard: reuse costs no new map.
    pool.give(stacks.into_iter().next().unwrap());
    assert!(
        pool.check_guard_budget().is_ok(),
        "a pooled slot is available"
    );
    let again = pool.take(DEFAULT_STACK_SIZE).unwrap();
    assert_eq!(pool.mprotect_guards(), 3);
    assert!(guard_faults(&again));
    // SAFETY: nothing runs on `again`.
    unsafe { discard_all(std::slice::from_ref(&again)) };
    assert!(guard_faults(&again), "PROT_NONE survives MADV_DONTNEED");
    pool.give(again);
}

#[test]
fn dropping_the_pool_unmaps_its_regions() {
    let pool = StackPool::with_map_budget(usize::MAX);
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let addr = s.base().get() - 1;
    assert!(mapping_of(addr).is_some());
    pool.give(s);
    assert_eq!(pool.mprotect_guards(), 1);
    drop(pool);
    // Another test may map at the same address meanwhile; then it is not ours to check.
    if let Some(line) = mapping_of(addr) {
        panic!("region still mapped after drop: {line}");
    }
}

#[test]
fn dropping_the_pool_with_live_stacks_leaks_instead() {
    let pool = StackPool::new();
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    drop(pool); // prints a warning
    let top = s.base().get() - 8;
    // SAFETY: the pool leaked the region, so the stack is still mapped.
    unsafe { (top as *mut u64).write(1) };
    let _ = s; // dropping a `FiberStack` leaves its slot mapped
}

#[test]
fn registry_finds_guard_pages_only() {
    let pool = StackPool::new();
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let page = sys::page_size();
    let hit = registry::find_guard(s.start + 100, page).expect("guard page is ours");
    assert_eq!((hit.slot_start, hit.slot_size), (s.start, s.slot_size));
    assert!(
        registry::find_guard(s.start + page, page).is_none(),
        "usable byte"
    );
    assert!(registry::find_guard(8, page).is_none());
    pool.give(s);
}

#[test]
fn identity_is_cleared_on_give() {
    let pool = StackPool::new();
    let id = crate::fiber::identity::FiberIdentity {
        id: 7,
        name: None,
        location: std::panic::Location::caller(),
        stack_size: DEFAULT_STACK_SIZE,
    };
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    s.set_identity(&id);
    assert_eq!(
        s.header()
            .identity
            .load(std::sync::atomic::Ordering::Relaxed)
            .cast_const(),
        &id as *const _
    );
    pool.give(s);
    let s = pool.take(DEFAULT_STACK_SIZE).unwrap();
    assert!(s
        .header()
        .identity
        .load(std::sync::atomic::Ordering::Relaxed)
        .is_null());
    pool.give(s);
}
