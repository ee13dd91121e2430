//! The blocking pool: elastic OS threads, capped, each exiting after a keep-alive idle.
//!
//! # Protocol (tokio's `blocking/pool.rs`)
//! Everything is under one mutex; the counters obey `idle = waiting threads − wakeups`.
//! ```text
//! Submit:   push job; if idle > 0 { idle -= 1; wakeups += 1; notify one }
//!                     else if threads < max { threads += 1; start a thread }
//! Thread:   run queued jobs (unlocked while running); then idle += 1 and wait ≤ keep-alive:
//!           wakeups > 0 → take one, run jobs again; shutdown or timeout → idle -= 1, exit
//! Shutdown: set the flag, take the queue and every thread handle, notify all; then (unlocked)
//!           cancel the queued jobs and join every thread, so jobs already running finish.
//! ```
//! Every thread's handle stays in the list until it is joined: handles of threads that
//! exited after their keep-alive are reaped when a new thread starts, the rest at shutdown.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{compiler_fence, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::sched::Shared;

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
    cvar: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Box<dyn Job>>,
    threads: usize,
    idle: usize,
    wakeups: usize,
    shutdown: bool,
    handles: Vec<JoinHandle<()>>,
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration, thread_name: String) -> Self {
        BlockingPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                cvar: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                thread_name,
            }),
        }
    }

    /// Any thread: threads alive in the pool now (`fibra::debug::metrics`).
    pub(crate) fn threads(&self) -> usize {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.threads
    }

    /// Any thread: queues `job`. Hands it back if the pool has shut down, or if no thread
    /// could be started and none is alive to run it.
    pub(crate) fn submit(&self, job: Box<dyn Job>) -> Result<(), Box<dyn Job>> {
        let inner = &self.inner;
        let mut st = inner.lock();
        if st.shutdown {
            return Err(job);
        }
        st.queue.push_back(job);
        if st.idle > 0 {
            st.idle -= 1;
            st.wakeups += 1;
            inner.cvar.notify_one();
        } else if st.threads < inner.max_threads {
            st.handles.retain(|h| !h.is_finished()); // exited after their keep-alive: reap
            let pool = inner.clone();
            let spawned = thread::Builder::new()
                .name(inner.thread_name.clone())
                .spawn(move || pool.thread_main());
            match spawned {
                Ok(h) => {
                    st.threads += 1;
                    st.handles.push(h);
                }
                Err(e) if st.threads == 0 => {
                    eprintln!("fibra: cannot start a blocking-pool thread: {e}");
                    return Err(st.queue.pop_back().expect("pushed above"));
                }
                Err(_) => {} // a running thread will get to it
            }
        }
        Ok(())
    }

    /// Session end, after the workers exited: cancels queued jobs, waits for running ones,
    /// joins every thread.
    pub(crate) fn shutdown(&self) {
        let (queued, handles) = {
            let mut st = self.inner.lock();
            st.shutdown = true;
            (
                std::mem::take(&mut st.queue),
                std::mem::take(&mut st.handles),
            )
        };
        self.inner.cvar.notify_all();
        queued.into_iter().for_each(|job| job.cancel());
        for h in handles {
            let _ = h.join(); // jobs catch their panics; nothing to report here
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Body of a pool thread (see the protocol above).
    fn thread_main(&self) {
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
            st.idle += 1;
            loop {
                let (guard, timeout) = self
                    .cvar
                    .wait_timeout(st, self.keep_alive)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if st.wakeups > 0 {
                    st.wakeups -= 1; // the submitter took us off `idle`
                    continue 'work;
                }
                if st.shutdown || timeout.timed_out() {
                    st.idle -= 1;
                    break 'work;
                }
                // Spurious wake-up: wait again.
            }
        }
        st.threads -= 1;
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
