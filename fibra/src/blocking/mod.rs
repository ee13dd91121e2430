//! Blocking work off the workers: [`spawn_blocking`], [`blocking`], and the pool under them.
//!
//! A fiber that calls a blocking function (`std::fs`, a C library, `std::thread::sleep`) or
//! computes for long holds its worker's OS thread, and every fiber pinned to that thread
//! waits. Two ways out:
//! - [`run_blocking(|| ...)`](run_blocking): runs a closure on a pool thread while the calling fiber
//!   parks, then returns its value. The closure may borrow the caller's locals.
//! - [`spawn_blocking(f)`](spawn_blocking): runs a `'static` closure on a pool thread and
//!   returns a [`JoinHandle`] (join it from a fiber, which parks, or from a thread, which
//!   blocks).
//!
//! The pool belongs to the runtime session: up to
//! [`max_blocking_threads`](crate::RuntimeBuilder::max_blocking_threads) threads (default
//! 512), each exiting after [`blocking_keep_alive`](crate::RuntimeBuilder::blocking_keep_alive)
//! idle (default 10 s). When the session ends, tasks already running finish first (the end
//! waits for them), tasks still queued are dropped and their handles report
//! [`JoinError::Cancelled`](crate::JoinError::Cancelled), and every pool thread is joined.
//!
//! # Panics nobody can see
//! A panic in a closure is caught and handed to whoever waits: `join` returns
//! [`JoinError::Panicked`](crate::JoinError::Panicked), `blocking` resumes it in the caller.
//! What a pool thread cannot hand to anyone is a panic from a `Drop` it runs on the user's
//! behalf: the result (or the panic payload) of a `spawn_blocking` task whose handle was
//! dropped before the task finished, or the closure of a task cancelled at session end. A
//! task's packet is a fiber's, so the fibers' rule applies (`fiber/join.rs`,
//! `drop_or_abort`): the process aborts with a `fibra:` message, as std does when a thread's
//! result panics on drop. Unwinding would kill the pool thread (or the session's end) with
//! nobody to tell, and carrying on silently would hide the bug.
//!
//! Blocking calls that are *not* wrapped are noticed by the monitor (see
//! [`RuntimeBuilder::stall_threshold`](crate::RuntimeBuilder::stall_threshold)): it keeps the
//! rest of the runtime moving and reports the fiber, but the fibers pinned to the stuck
//! thread wait for it.

mod excursion;
mod pool;

use std::panic::Location;
use std::sync::Arc;

pub use excursion::run_blocking;
use pool::Job;
pub(crate) use pool::{pool_session, BlockingPool};

use crate::fiber::identity::FiberIdentity;
use crate::fiber::{join, next_fiber_id, Fiber, FiberRef, Header, JoinHandle, Packet, StartRef};
use crate::sched::{context, Shared};

/// `FiberIdentity::stack_size` of a blocking task's header: it has no stack, and no fiber
/// has a stack this large (`Header::is_blocking_task`).
pub(crate) const TASK_MARK: usize = usize::MAX;

/// Runs `f` on a thread of the runtime's blocking pool and returns a handle to join it.
///
/// Use it for blocking calls and long computations; the handle's [`join`](JoinHandle::join)
/// parks a fiber (its worker runs others meanwhile) or blocks a plain thread. Tasks beyond
/// [`max_blocking_threads`](crate::RuntimeBuilder::max_blocking_threads) queue.
///
/// # Panics
/// Outside a fibra runtime (a worker or pool thread of one); the message says to use
/// [`fibra::run`](crate::run). A panic inside `f` is returned by `join` as
/// [`JoinError::Panicked`](crate::JoinError::Panicked).
///
/// # Aborts
/// If the handle is dropped before the task finishes and the task's value (or its panic
/// payload) then panics when the pool thread drops it, the process aborts with a `fibra:`
/// message, as std does when a thread's result panics on drop (module docs, "Panics nobody
/// can see").
///
/// # Errors (through the handle)
/// [`JoinError::Cancelled`](crate::JoinError::Cancelled) if the session ended before the task
/// started, or if no pool thread was alive, none could be started, and the runtime has no
/// monitor to retry (see [`RuntimeBuilder::monitor`](crate::RuntimeBuilder::monitor)).
///
/// ```
/// # fibra::run(|| {
/// let h = fibra::spawn_blocking(|| std::fs::read_to_string("/proc/self/stat").map(|s| s.len()));
/// assert!(h.join().unwrap().unwrap() > 0);
/// # });
/// ```
#[track_caller]
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(shared) = current_session() else {
        panic!(
            "fibra::spawn_blocking called outside a fibra runtime: run this code inside \
             fibra::run(|| ...) or Runtime::run"
        )
    };
    let identity = FiberIdentity {
        id: next_fiber_id(),
        name: Some("blocking".into()),
        location: Location::caller(),
        stack_size: TASK_MARK,
    };
    let mut header = Header::new(identity, shared.clone());
    join::install(&mut header, Packet::new(Some(f), None));
    let header = Arc::new(header);
    // SAFETY: the packet was just installed and this is its one fiber side; it lives in the
    // task, whose `header` is dropped after it (field order).
    let start = unsafe { StartRef::new(Arc::as_ptr(&header)) };
    let task = Box::new(Task {
        start,
        header: header.clone(),
    });
    if let Err(task) = shared.blocking.submit(task) {
        task.cancel();
    }
    // SAFETY: the packet is a `Packet<T, F>` with its handle side not taken yet.
    unsafe { JoinHandle::new::<F>(Fiber(header)) }
}

/// A `spawn_blocking` task: a fiber header without a stack, so `JoinHandle` works unchanged.
struct Task {
    /// The packet's fiber side. Declared before `header`: it must be dropped first.
    start: StartRef,
    header: FiberRef,
}

impl Job for Task {
    fn run(self: Box<Self>) {
        let session = pool::enter_session(&self.header.shared);
        // `Start::run` catches the closure's panic into the packet; the header is not
        // CANCELLING (only shutdown's claims set that, and they never see this header).
        self.start.run();
        self.complete();
        // Dropping the fiber side drops the result (or panic payload) too when the handle is
        // gone already; a panic there aborts (module docs).
        drop(self);
        drop(session);
    }

    fn cancel(self: Box<Self>) {
        self.start.discard(); // a panic there aborts (module docs)
        self.complete();
    }
}

impl Task {
    /// The result (or none: cancelled) is in the packet: publish it and wake the joiner.
    fn complete(&self) {
        self.header.state.transition_to_complete();
        self.header.wake_joiner();
    }
}

/// The session of the calling worker thread, or of the job this pool thread runs.
pub(crate) fn current_session() -> Option<Arc<Shared>> {
    context::with_worker(|w| w.map(|w| w.shared.clone())).or_else(pool::pool_session)
}

/// Renamed [`run_blocking`]: it runs `f` on the blocking pool and waits for its value.
///
/// ```
/// # #![allow(deprecated)]
/// # fibra::run(|| {
/// assert_eq!(fibra::blocking(|| 1), fibra::run_blocking(|| 1));
/// # });
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed to `fibra::run_blocking`: like `spawn_blocking`, but waits for the value"
)]
pub fn blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    run_blocking(f)
}
