//! Idle workers: spinning ("searching") briefly, then sleeping without lost wake-ups.
//!
//! # No lost wake-ups
//! ```text
//! Submit:  1. push fiber         2. SeqCst fence   3. if searching == 0 and sleepers > 0: wake one
//! Go idle: 1. searching -= 1     2. sleepers += 1  3. SeqCst fence   4. re-check every queue, then sleep
//! ```
//! The fences pair: either the submitter sees the sleeper (and wakes it) or the sleeper's
//! re-check sees the fiber. A wake that lands before the sleeper blocks leaves a token in its
//! `Sleeper`, so the block returns at once. Work for one specific worker (a pinned fiber woken
//! from another thread) skips the counters: it goes to that worker's inbox, then its sleeper
//! is unparked only if it sleeps: push, SeqCst fence, read its state; against the sleeper's
//! announce, SeqCst fence, re-check of its inbox.
//!
//! Rejected: handing the fiber straight to the woken worker (thread thrash, lost locality).

#[cfg(loom)]
use loom::sync::{
    atomic::{fence, AtomicU32, AtomicUsize, Ordering::*},
    Condvar, Mutex,
};
use std::sync::atomic::AtomicU64; // a statistic, not part of the modelled protocol
#[cfg(not(loom))]
use std::sync::{
    atomic::{fence, AtomicU32, AtomicUsize, Ordering::*},
    Condvar, Mutex,
};
use std::time::Duration;

/// A token parker for one worker slot (std's generic parker protocol).
///
/// # Blocking primitives
/// The state word (EMPTY / SLEEPING / NOTIFIED) and its fences are the protocol; how the thread
/// blocks is a detail behind it. A worker slot blocks in its reactor's `epoll_wait` (so I/O
/// readiness also ends the sleep) and `wake` breaks that wait through an [`Unblock`] (a
/// `mio::Waker`: an eventfd write, which is remembered by the kernel if it lands before the
/// wait starts, so it needs no lock). The condvar variant is kept for the loom models.
pub(crate) struct Sleeper {
    state: AtomicU32,
    blocker: Blocker,
    /// Times the slot's thread blocked here (`fibra::debug::metrics`); written by it only.
    pub(crate) sleeps: AtomicU64,
}

/// Breaks a thread's wait in a blocking primitive it owns (an `epoll_wait`). A call before the
/// wait starts must make the wait return at once (eventfd semantics).
pub(crate) trait Unblock: Send + Sync {
    fn unblock(&self);
}

enum Blocker {
    Condvar { lock: Mutex<()>, cvar: Condvar },
    External(Box<dyn Unblock>),
}

const EMPTY: u32 = 0;
const SLEEPING: u32 = 1;
const NOTIFIED: u32 = 2;

impl Sleeper {
    /// A sleeper that blocks on a condvar.
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models use it; slots use `external`
    pub(crate) fn new() -> Sleeper {
        Sleeper {
            state: AtomicU32::new(EMPTY),
            blocker: Blocker::Condvar {
                lock: Mutex::new(()),
                cvar: Condvar::new(),
            },
            sleeps: AtomicU64::new(0),
        }
    }

    /// A sleeper whose thread blocks in a primitive of its own (`sleep_in`), broken by `unblock`.
    pub(crate) fn external(unblock: Box<dyn Unblock>) -> Sleeper {
        Sleeper {
            state: AtomicU32::new(EMPTY),
            blocker: Blocker::External(unblock),
            sleeps: AtomicU64::new(0),
        }
    }

    /// Consumes a pending token, or announces SLEEPING and runs `recheck`. Returns true if the
    /// caller should block now.
    fn announce(&self, recheck: impl Fn() -> bool) -> bool {
        if let Err(actual) = self
            .state
            .compare_exchange(EMPTY, SLEEPING, SeqCst, Relaxed)
        {
            debug_assert_eq!(actual, NOTIFIED);
            self.state.swap(EMPTY, Acquire); // consume the token; pairs with `wake`
            return false;
        }
        fence(SeqCst); // pairs with the fence in `wake_if_sleeping`
        if recheck() {
            self.state.swap(EMPTY, Acquire); // a racing `wake` leaves a harmless token
            return false;
        }
        true
    }

    /// The slot's own thread: blocks until `wake` or `timeout` (None = forever). `recheck`
    /// runs after the sleeper announced itself (SeqCst) and cancels the sleep if it finds
    /// work: the other half of `wake_if_sleeping`'s check (see the header).
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models use it; slots use `sleep_in`
    pub(crate) fn sleep(&self, timeout: Option<Duration>, recheck: impl Fn() -> bool) {
        let Blocker::Condvar { lock, cvar } = &self.blocker else {
            fatal!("sched::idle::Sleeper::sleep on an external sleeper")
        };
        // Acquire pairs with `wake`'s Release swap: the waker's pushes are visible.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
            .is_ok()
        {
            return;
        }
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.announce(recheck) {
            return;
        }
        super::stats::bump(&self.sleeps);
        loop {
            guard = match timeout {
                None => cvar.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let (g, res) = cvar
                        .wait_timeout(guard, t)
                        .unwrap_or_else(|e| e.into_inner());
                    if res.timed_out() {
                        self.state.swap(EMPTY, Acquire); // a racing wake becomes a no-op token
                        return;
                    }
                    g
                }
            };
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
                .is_ok()
            {
                return;
            }
            // Spurious condvar wake-up: keep sleeping.
        }
    }

    /// The slot's own thread, external sleeper: the same protocol as `sleep`, with `block`
    /// (which waits up to its argument, or forever for None) as the blocking primitive. May
    /// return early (an I/O event ended `block`): the caller's loop re-checks its queues.
    pub(crate) fn sleep_in(
        &self,
        timeout: Option<Duration>,
        recheck: impl Fn() -> bool,
        block: impl FnOnce(Option<Duration>),
    ) {
        // Acquire pairs with `wake`'s Release swap: the waker's pushes are visible.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
            .is_ok()
        {
            return;
        }
        if !self.announce(recheck) {
            return;
        }
        super::stats::bump(&self.sleeps);
        block(timeout);
        // Whatever ended the block (a wake, an event, the timeout), leave SLEEPING with a
        // read-modify-write: Acquire pairs with a racing `wake`'s Release swap, whose
        // `unblock` then only makes the next block return at once (a spurious loop turn).
        self.state.swap(EMPTY, Acquire);
    }

    /// Any thread, after publishing work with a SeqCst write that the sleeper's `recheck`
    /// reads: wakes the slot's thread only if it sleeps. Saves the read-modify-write of `wake`
    /// on every cross-worker hand-off while the target is awake.
    pub(crate) fn wake_if_sleeping(&self) {
        // The fences pair (Dekker): either the sleeper's re-check sees the caller's work, or
        // this load sees SLEEPING. (loom models SeqCst fences, not SeqCst loads and stores.)
        fence(SeqCst);
        if self.state.load(Relaxed) == SLEEPING {
            self.wake();
        }
    }

    /// Any thread: wakes the slot's thread, or leaves a token if it is not sleeping.
    pub(crate) fn wake(&self) {
        // Release publishes the caller's push (pairs with the Acquire in `sleep`).
        if self.state.swap(NOTIFIED, Release) == SLEEPING {
            match &self.blocker {
                Blocker::Condvar { lock, cvar } => {
                    // Taking the lock orders us after the sleeper's check-then-wait.
                    drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
                    cvar.notify_one();
                }
                // An eventfd write before the wait starts still ends it (see `Unblock`).
                Blocker::External(u) => u.unblock(),
            }
        }
    }
}

/// Counters and the list of sleeping workers, shared by all workers of a runtime.
pub(crate) struct Idle {
    searching: AtomicUsize,
    num_sleeping: AtomicUsize,
    sleeping: Mutex<Vec<usize>>,
    workers: usize,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            searching: AtomicUsize::new(0),
            num_sleeping: AtomicUsize::new(0),
            sleeping: Mutex::new(Vec::with_capacity(workers)),
            workers,
        }
    }

    /// After pushing stealable work: returns the worker to wake, if any (submit steps 2–3).
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        fence(SeqCst); // pairs with the fence in `register_sleeping`
        if self.searching.load(SeqCst) != 0 || self.num_sleeping.load(SeqCst) == 0 {
            return None;
        }
        let mut sleeping = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
        let idx = sleeping.pop()?;
        self.num_sleeping.fetch_sub(1, SeqCst);
        Some(idx)
    }

    /// Go's rule: at most half the busy workers search, so an idle runtime does not burn every
    /// core spinning.
    pub(crate) fn try_start_searching(&self) -> bool {
        // Saturating: sleeping spare workers (sched/monitor.rs) are not in `workers`.
        let busy = self.workers.saturating_sub(self.num_sleeping.load(SeqCst));
        let searching = self.searching.load(SeqCst);
        if 2 * searching >= busy.max(1) {
            return false;
        }
        self.searching.fetch_add(1, SeqCst);
        true
    }

    /// Workers sleeping now (a hint: the monitor wakes one rather than add a spare).
    pub(crate) fn sleepers(&self) -> usize {
        self.num_sleeping.load(Relaxed)
    }

    /// Stops searching. Returns true if this was the last searcher (then, having found work,
    /// the caller wakes another worker so parallelism ramps up).
    pub(crate) fn stop_searching(&self) -> bool {
        self.searching.fetch_sub(1, SeqCst) == 1
    }

    /// Go idle steps 2–3; the caller re-checks every queue afterwards.
    pub(crate) fn register_sleeping(&self, idx: usize) {
        let mut sleeping = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
        sleeping.push(idx);
        self.num_sleeping.fetch_add(1, SeqCst);
        drop(sleeping);
        fence(SeqCst); // pairs with the fence in `worker_to_notify`
    }

    /// After waking (or finding work on the re-check): removes `idx` if a notifier did not.
    pub(crate) fn unregister_sleeping(&self, idx: usize) {
        let mut sleeping = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = sleeping.iter().position(|&i| i == idx) {
            sleeping.swap_remove(pos);
            self.num_sleeping.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// One worker going idle (optionally after searching) and one submitter: the worker never
    /// sleeps through the submitted work. A lost wake-up shows up as a loom deadlock.
    fn idle_vs_submit(search_first: bool) {
        loom::model(move || {
            let idle = Arc::new(Idle::new(1));
            let sleeper = Arc::new(Sleeper::new());
            let work = Arc::new(AtomicBool::new(false));
            let submitter = {
                let (idle, sleeper, work) = (idle.clone(), sleeper.clone(), work.clone());
                thread::spawn(move || {
                    work.store(true, Release); // "push fiber"
                    if idle.worker_to_notify() == Some(0) {
                        sleeper.wake();
                    }
                })
            };
            // The worker's idle path (Worker::search + Worker::sleep, one round).
            if search_first && idle.try_start_searching() {
                let _found = work.load(Acquire);
                idle.stop_searching();
            }
            if !work.load(Acquire) {
                idle.register_sleeping(0);
                if !work.load(Acquire) {
                    sleeper.sleep(None, || false);
                }
                idle.unregister_sleeping(0);
            }
            assert!(work.load(Acquire), "woke without seeing the work");
            submitter.join().unwrap();
        });
    }

    #[test]
    fn idle_worker_sees_submitted_work() {
        idle_vs_submit(false);
    }

    #[test]
    fn searching_worker_sees_submitted_work() {
        idle_vs_submit(true);
    }

    /// A loom stand-in for an eventfd: `unblock` sets a flag that a later `block` consumes.
    struct EventFd {
        set: loom::sync::Mutex<bool>,
        cvar: loom::sync::Condvar,
    }

    impl EventFd {
        fn block(&self) {
            let mut set = self.set.lock().unwrap();
            while !*set {
                set = self.cvar.wait(set).unwrap();
            }
            *set = false;
        }
    }

    impl Unblock for Arc<EventFd> {
        fn unblock(&self) {
            *self.set.lock().unwrap() = true;
            self.cvar.notify_one();
        }
    }

    /// The reactor variant: a worker blocking in its poller is woken for inbox work.
    #[test]
    fn external_sleeper_wake_is_not_lost() {
        loom::model(|| {
            let fd = Arc::new(EventFd {
                set: loom::sync::Mutex::new(false),
                cvar: loom::sync::Condvar::new(),
            });
            let sleeper = Arc::new(Sleeper::external(Box::new(fd.clone())));
            let pending = Arc::new(AtomicBool::new(false));
            let waker = {
                let (sleeper, pending) = (sleeper.clone(), pending.clone());
                thread::spawn(move || {
                    pending.store(true, SeqCst);
                    sleeper.wake_if_sleeping();
                })
            };
            while !pending.load(SeqCst) {
                sleeper.sleep_in(None, || pending.load(SeqCst), |_| fd.block());
            }
            waker.join().unwrap();
        });
    }

    /// A targeted wake (a pinned fiber sent to its home's inbox) is never lost.
    #[test]
    fn inbox_wake_is_not_lost() {
        loom::model(|| {
            let sleeper = Arc::new(Sleeper::new());
            let pending = Arc::new(AtomicBool::new(false));
            let waker = {
                let (sleeper, pending) = (sleeper.clone(), pending.clone());
                thread::spawn(move || {
                    pending.store(true, SeqCst);
                    sleeper.wake_if_sleeping();
                })
            };
            while !pending.load(SeqCst) {
                sleeper.sleep(None, || pending.load(SeqCst));
            }
            waker.join().unwrap();
        });
    }
}
