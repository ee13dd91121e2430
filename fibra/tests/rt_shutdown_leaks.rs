//! A session leaves nothing behind: after `block_on` returns, the process has the threads and
//! memory maps it had before, however many fibers were still parked when the root returned.
//!
//! One `#[test]` in a binary of its own: tests of one binary run in parallel threads, and
//! their threads and allocations would disturb the counts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fibra::{JoinHandle, ParkReason, Runtime};

mod common;
use common::{memory_checker, note, scaled, watchdog_for};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Virtual memory size in KiB: catches mappings that merge with a neighbour (adjacent stack
/// regions form one map, so the map count alone would miss them).
fn vm_size_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A joined thread may linger in `/proc/self/task` for a moment after `pthread_join`
/// returns (the kernel clears the join futex before it reaps the task): wait up to 2 s for
/// the count to come back down before comparing.
fn settled_threads(expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let n = threads();
        if n <= expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Counts its drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A future that never completes.
struct Never(#[allow(dead_code)] DropCount);

impl Future for Never {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

#[derive(Clone, Copy, Debug)]
enum Wait {
    /// `park` loops on a flag never set, and hour-long sleeps, half each.
    ParkOrSleep,
    Sleep,
    Join,
    Scope,
    BlockOn,
}

/// One session: `n` fibers parked in `wait` when the root returns; returns their handles
/// and how many guards they hold.
fn session(wait: Wait, n: usize, drops: &Arc<AtomicUsize>) -> (Vec<JoinHandle<()>>, usize) {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let d = drops.clone();
    rt.run(move || {
        let never = Arc::new(AtomicBool::new(false));
        let mut guards = 0;
        let mut hs = Vec::with_capacity(n);
        for i in 0..n {
            let g = DropCount(d.clone());
            guards += 1;
            let (h, reason) = match wait {
                Wait::ParkOrSleep if i % 2 == 0 => {
                    let never = never.clone();
                    let h = fibra::spawn(move || {
                        let _g = g;
                        while !never.load(Relaxed) {
                            fibra::park();
                        }
                    });
                    (h, ParkReason::User)
                }
                Wait::ParkOrSleep | Wait::Sleep => {
                    let h = fibra::spawn(move || {
                        let _g = g;
                        fibra::sleep(Duration::from_secs(3600));
                    });
                    (h, ParkReason::Sleep)
                }
                Wait::Join => {
                    let t = DropCount(d.clone());
                    guards += 1;
                    let target = fibra::spawn(move || {
                        let _t = t;
                        loop {
                            fibra::park();
                        }
                    });
                    let h = fibra::spawn(move || {
                        let _g = g;
                        let _ = target.join();
                    });
                    (h, ParkReason::Join)
                }
                Wait::Scope => {
                    let c = DropCount(d.clone());
                    guards += 1;
                    let h = fibra::spawn(move || {
                        let _g = g;
                        let borrowed = AtomicUsize::new(0);
                        fibra::scope(|s| {
                            s.spawn(|| {
                                let _c = c;
                                borrowed.fetch_add(1, Relaxed);
                                loop {
                                    fibra::park();
                                }
                            });
                        });
                    });
                    (h, ParkReason::Scope)
                }
                Wait::BlockOn => {
                    let h = fibra::spawn(move || fibra::await_future(Never(g)));
                    (h, ParkReason::BlockOn)
                }
            };
            hs.push((h, reason));
        }
        for (h, reason) in &hs {
            while h.fiber().park_reason() != *reason {
                fibra::yield_now();
            }
        }
        (hs.into_iter().map(|(h, _)| h).collect(), guards)
    })
}

/// Slack for the C library, not the session: glibc never unmaps a malloc arena and keeps the
/// stacks of exited threads cached (two maps each), and a burst can make the stall monitor start
/// a spare worker thread whose arena and cached stack stay. A leaked stack region is 64 MiB of
/// address space, which the VmSize check below catches whatever the map count says.
const MAP_SLACK: usize = 4;
const VM_SLACK_KIB: usize = 256 * 1024;

#[test]
fn sessions_leave_no_threads_or_maps_behind() {
    let _w = watchdog_for(
        "sessions_leave_no_threads_or_maps_behind",
        Duration::from_secs(120),
    );
    // Times `FIBRA_TEST_SCALE` (`common::scaled`).
    let scenarios = [
        (Wait::ParkOrSleep, scaled(100_000, 2)),
        (Wait::Sleep, scaled(1000, 1)),
        (Wait::Join, scaled(1000, 1)),
        (Wait::Scope, scaled(1000, 1)),
        (Wait::BlockOn, scaled(1000, 1)),
    ];
    // Valgrind and ASan map memory of their own into this process as it goes (shadow
    // memory, translated code, quarantine), so maps and VmSize say nothing about the session
    // there; threads still do.
    let checker = memory_checker();
    let count_memory = checker.is_none();
    if let Some(checker) = checker {
        note(&format!(
            "rt_shutdown_leaks: under {checker}: memory maps and VmSize not compared, threads are"
        ));
    }
    let drops = Arc::new(AtomicUsize::new(0));
    // Warm-up: the allocator's per-thread arenas and the process-wide one-time set-up
    // (signal handlers, guard-page probing) stay; they are not the session's.
    for &(wait, n) in &scenarios {
        drop(session(wait, n, &drops));
    }
    let base_threads = settled_threads(0);
    let base_maps = maps();
    let base_vm = vm_size_kib();
    // Every scenario is checked; failures are listed together at the end.
    let mut failures = Vec::new();
    for &(wait, n) in &scenarios {
        drops.store(0, SeqCst);
        let (handles, guards) = session(wait, n, &drops);
        assert_eq!(
            drops.load(SeqCst),
            guards,
            "{wait:?}: destructors of unwound fibers"
        );
        let threads_now = settled_threads(base_threads);
        let vm_with_handles = vm_size_kib();
        // How each handle ended is `rt_shutdown.rs`'s business; here they only have to go.
        for h in handles {
            assert!(h.is_finished(), "{wait:?}: a fiber outlived its session");
            drop(h.join());
        }
        let (maps_now, vm_now) = (maps(), vm_size_kib());
        if threads_now != base_threads {
            failures.push(format!(
                "{wait:?} x {n}: threads {base_threads} -> {threads_now}"
            ));
        }
        if count_memory && maps_now > base_maps + MAP_SLACK {
            failures.push(format!(
                "{wait:?} x {n}: memory maps {base_maps} -> {maps_now}"
            ));
        }
        if count_memory && vm_now > base_vm + VM_SLACK_KIB {
            failures.push(format!(
                "{wait:?} x {n}: VmSize {base_vm} KiB -> {vm_now} KiB"
            ));
        }
        // The handles outlived the session; they must not keep its stacks mapped.
        if count_memory && vm_with_handles > base_vm + VM_SLACK_KIB {
            failures.push(format!(
                "{wait:?} x {n}: VmSize {base_vm} KiB -> {vm_with_handles} KiB while the session's \
                 JoinHandles are held (back to {vm_now} KiB once they are dropped)"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the sessions left resources behind:\n{}",
        failures.join("\n")
    );
}
