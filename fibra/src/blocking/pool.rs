//! The blocking pool: elastic OS threads, capped, each exiting after a keep-alive idle.
//!
//! # Protocol (tokio's `blocking/pool.rs`, with a stack of idle threads)
//! Everything is under one mutex. `idle` is a stack of the threads waiting for work, each
//! with its own condition variable; `wakeups` counts threads popped from it and not yet
//! running.
//! ```text
//! Submit:   push job; if idle is not empty { pop the top; mark it woken; wakeups += 1;
//!                                            notify it }
//!                     else if threads < max { threads += 1; start a thread }
//! Thread:   run queued jobs (unlocked while running); then push itself on idle and wait
//!           ≤ keep-alive: woken → wakeups -= 1, run jobs again; shutdown or timeout → take
//!           itself off idle, exit
//! Shutdown: set the flag, take the queue and every thread handle, notify every idle
//!           thread; then (unlocked) cancel the queued jobs and join every thread, so jobs
//!           already running finish.
//! ```
//! Every thread's handle stays in the list until it is joined: handles of threads that
//! exited after their keep-alive are reaped when a new thread starts, the rest at shutdown.
//!
//! # Why a stack
//! The most recently idle thread takes the next job, so under a steady load the same few
//! threads do the work and the ones a burst started wait at the bottom until their
//! keep-alive ends. Rejected: one condition variable for all (tokio's): its waiters wake in
//! turn (a futex wakes its oldest waiter), so every thread gets a job before its keep-alive
//! ends and the pool never shrinks below the largest number it ever had. The soak saw that
//! (`scripts/soak.sh`): three fibers making one excursion at a time each held 25 threads,
//! grown one by one whenever a fiber, woken by its job, submitted the next before that
//! job's thread was idle again (which still happens; the extra thread now retires).
//! `tests/blocking_pool_size.rs` checks that a burst's threads retire under a steady load.
//!
//! # A thread that cannot start
//! `std::thread::Builder::spawn` fails under `RLIMIT_NPROC`, `EAGAIN` from the kernel or a
//! memory limit. The pool then reports it once per session on stderr and keeps the job
//! queued: an existing thread takes it when it is free, and every later submit, every monitor
//! sample (≤ 10 ms apart) and every shutdown pass of a worker waiting for an excursion retries
//! the start (`retry_start`) while jobs wait and no thread is idle. Only when no thread is
//! alive *and* nothing would retry (the session has no monitor) is the job handed back:
//! `spawn_blocking`'s handle then reports `Cancelled` and `blocking` runs its closure on the
//! calling worker.
//!
//! # A thread that unwinds
//! Jobs catch their closures' panics and a job aborts on a panic it cannot report
//! (blocking/mod.rs, "Panics nobody can see"), so a pool thread never unwinds. The thread's
//! accounting is still kept by a guard (`ThreadExit`) rather than by the end of
//! `thread_main`, so even an unwinding job (a bug) leaves `threads` right and the queue
//! served: the guard starts a replacement when jobs wait and no thread is idle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{compiler_fence, AtomicBool, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sched::Shared;
use crate::sys::{spawn_thread, ThreadStart};

/// Work for a pool thread.
pub(crate) trait Job: Send {
    /// Runs the job on a pool thread. Must not unwind (jobs catch their own panics).
    fn run(self: Box<Self>);
    /// The pool shut down before the job started: release it and tell whoever waits.
    fn cancel(self: Box<Self>);
}

pub(crate) struct BlockingPool {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: String,
    /// The session has a monitor, which calls `retry_start` on every sample.
    retried: bool,
    /// A thread start failed and jobs may be waiting for one: `retry_start` has work to do.
    /// A hint read without the lock (Relaxed): the lock orders everything it guards.
    starved: AtomicBool,
}

/// An idle thread's place on the `idle` stack.
#[derive(Default)]
struct Sleeper {
    /// Notified by the submitter that popped this thread, and at shutdown.
    cvar: Condvar,
    /// Set by that submitter. Read and written only under the pool's lock, which orders it
    /// (Relaxed).
    woken: AtomicBool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Box<dyn Job>>,
    threads: usize,
    /// Threads waiting for work, the most recently idle on top.
    idle: Vec<Arc<Sleeper>>,
    /// Threads popped from `idle` by a submit and not yet running its job.
    wakeups: usize,
    shutdown: bool,
    handles: Vec<JoinHandle<()>>,
    /// A failed thread start was reported (once per session).
    start_failure_reported: bool,
}

impl BlockingPool {
    /// `retried`: the session has a monitor (see the module docs, "A thread that cannot start").
    pub(crate) fn new(
        max_threads: usize,
        keep_alive: Duration,
        thread_name: String,
        retried: bool,
    ) -> Self {
        BlockingPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                max_threads: max_threads.max(1),
                keep_alive,
                thread_name,
                retried,
                starved: AtomicBool::new(false),
            }),
        }
    }

    /// Any thread: threads alive in the pool now (`fibra::debug::metrics`).
    pub(crate) fn threads(&self) -> usize {
        self.inner.lock().threads
    }

    /// Any thread: queues `job`. Hands it back if the pool has shut down, or if no thread is
    /// alive, none could be started and nothing will retry (see the module docs).
    pub(crate) fn submit(&self, job: Box<dyn Job>) -> Result<(), Box<dyn Job>> {
        let inner = &self.inner;
        let mut st = inner.lock();
        if st.shutdown {
            return Err(job);
        }
        st.queue.push_back(job);
        if let Some(sleeper) = st.idle.pop() {
            sleeper.woken.store(true, Relaxed);
            st.wakeups += 1;
            sleeper.cvar.notify_one();
        } else if st.threads < inner.max_threads
            && !inner.start_thread(&mut st)
            && st.threads == 0
            && !inner.retried
        {
            return Err(st.queue.pop_back().expect("pushed above"));
        }
        Ok(())
    }

    /// Any thread, often: after a failed thread start, tries again while jobs wait and no
    /// thread is idle. One relaxed load when nothing failed.
    pub(crate) fn retry_start(&self) {
        if self.inner.starved.load(Relaxed) {
            let mut st = self.inner.lock();
            self.inner.top_up(&mut st);
        }
    }

    /// Session end, after the workers exited: cancels queued jobs, waits for running ones,
    /// joins every thread.
    pub(crate) fn shutdown(&self) {
        let (queued, handles) = {
            let mut st = self.inner.lock();
            st.shutdown = true;
            // Under the lock: a thread pushes itself and starts waiting in one critical
            // section, so each one on the stack is waiting and gets this notification.
            st.idle.iter().for_each(|s| s.cvar.notify_one());
            (
                std::mem::take(&mut st.queue),
                std::mem::take(&mut st.handles),
            )
        };
        queued.into_iter().for_each(|job| job.cancel());
        for h in handles {
            // A thread only fails to join if a job unwound, which its panic message reported.
            let _ = h.join();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Under the lock, with `threads < max_threads`: starts one more thread. False (and
    /// reported once) if it could not; `starved` then asks `retry_start` to try again.
    fn start_thread(self: &Arc<Self>, st: &mut State) -> bool {
        st.handles.retain(|h| !h.is_finished()); // exited after their keep-alive: reap
        let pool = self.clone();
        let started = spawn_thread(
            ThreadStart::BlockingPool,
            self.thread_name.clone(),
            move || pool.thread_main(),
        );
        match started {
            Ok(h) => {
                st.threads += 1;
                st.handles.push(h);
                true
            }
            Err(e) => {
                self.starved.store(true, Relaxed);
                if !std::mem::replace(&mut st.start_failure_reported, true) {
                    eprintln!(
                        "fibra: could not start a blocking-pool thread: {e}; {} running, \
                         queued blocking work waits for one of them or for a later start",
                        st.threads
                    );
                }
                false
            }
        }
    }

    /// Under the lock: starts threads while jobs wait that no idle or woken thread will take.
    fn top_up(self: &Arc<Self>, st: &mut State) {
        while !st.shutdown
            && st.idle.is_empty()
            && st.queue.len() > st.wakeups
            && st.threads < self.max_threads
        {
            if !self.start_thread(st) {
                return; // still failing: `starved` stays set
            }
        }
        self.starved.store(false, Relaxed);
    }

    /// Body of a pool thread (see the protocol above).
    fn thread_main(self: Arc<Self>) {
        let exit = ThreadExit(&self);
        let me = Arc::new(Sleeper::default());
        let mut st = self.lock();
        'work: loop {
            while let Some(job) = st.queue.pop_front() {
                drop(st);
                job.run();
                st = self.lock();
            }
            if st.shutdown {
                break;
            }
            st.idle.push(me.clone());
            loop {
                let (guard, timeout) = me
                    .cvar
                    .wait_timeout(st, self.keep_alive)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if me.woken.swap(false, Relaxed) {
                    st.wakeups -= 1; // the submitter took us off `idle`
                    continue 'work;
                }
                if st.shutdown || timeout.timed_out() {
                    // Not woken, so still on the stack (near its bottom, if others work).
                    st.idle.retain(|s| !Arc::ptr_eq(s, &me));
                    break 'work;
                }
                // Spurious wake-up: wait again.
            }
        }
        drop(st);
        drop(exit);
    }
}

/// A pool thread's place in `threads`, given back however `thread_main` ends: by returning,
/// or by a job unwinding out of it (a broken `Job` contract), when the thread is not idle.
struct ThreadExit<'a>(&'a Arc<Inner>);

impl Drop for ThreadExit<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock(); // never poisoned in a way that matters: see `lock`
        st.threads -= 1;
        // A thread exiting normally leaves no job behind that is not already some idle
        // thread's (it only times out when no submit popped it); one unwinding out of a job
        // may: replace it.
        self.0.top_up(&mut st);
    }
}

thread_local! {
    /// The session whose job this pool thread is running (for nested `spawn_blocking`).
    static SESSION: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Marks this pool thread as running a job of `shared`'s session until dropped.
pub(crate) struct EnterSession(());

/// Pool thread, around a job: `spawn_blocking` inside it finds the session.
#[inline(never)]
pub(crate) fn enter_session(shared: &Arc<Shared>) -> EnterSession {
    compiler_fence(SeqCst);
    SESSION.with(|s| *s.borrow_mut() = Some(shared.clone()));
    compiler_fence(SeqCst);
    EnterSession(())
}

impl Drop for EnterSession {
    #[inline(never)]
    fn drop(&mut self) {
        compiler_fence(SeqCst);
        let _ = SESSION.try_with(|s| s.borrow_mut().take());
        compiler_fence(SeqCst);
    }
}

/// The session of the job running on this pool thread, if any. `#[inline(never)]` with
/// compiler fences, like every runtime thread-local (sched/context.rs).
#[inline(never)]
pub(crate) fn pool_session() -> Option<Arc<Shared>> {
    compiler_fence(SeqCst);
    let s = SESSION.try_with(|s| s.borrow().clone()).ok().flatten();
    compiler_fence(SeqCst);
    s
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Breaks the `Job` contract: unwinds out of `run`.
    struct Unwinds;

    impl Job for Unwinds {
        fn run(self: Box<Self>) {
            panic!("a job unwinding out of the pool (expected by this test)");
        }
        fn cancel(self: Box<Self>) {}
    }

    struct Reports(mpsc::Sender<u32>, u32);

    impl Job for Reports {
        fn run(self: Box<Self>) {
            self.0.send(self.1).unwrap();
        }
        fn cancel(self: Box<Self>) {}
    }

    /// A pool thread that dies unwinding gives its place back and is replaced, so a job
    /// queued behind it still runs (on the old pool, `threads` stayed at the cap: a hang,
    /// which the receive's limit turns into a failure).
    #[test]
    fn a_thread_unwinding_out_of_a_job_is_replaced() {
        let pool = BlockingPool::new(1, Duration::from_secs(10), "t-blocking".into(), false);
        let (tx, rx) = mpsc::channel();
        assert!(pool.submit(Box::new(Unwinds)).is_ok());
        assert!(pool.submit(Box::new(Reports(tx.clone(), 1))).is_ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(1));
        assert!(pool.threads() <= 1, "{} threads, cap 1", pool.threads());
        assert!(pool.submit(Box::new(Reports(tx, 2))).is_ok());
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(2));
        pool.shutdown();
        assert_eq!(pool.threads(), 0);
    }
}
