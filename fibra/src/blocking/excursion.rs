//! `fibra::run_blocking`: run a borrowing closure on a pool thread while the fiber parks.
//!
//! # Protocol
//! ```text
//! Fiber (home thread)                         Pool thread
//! 1. box the job: closure, result slot,
//!    done flag, the fiber itself; submit ──▶ 2. call the closure (own #[inline(never)] fn,
//! 3. park (ParkReason::Blocking) until            panics caught); write the result
//!    `done` (Acquire)                ◀─────── 4. done = true (Release, and under the lock
//! 5. take the result; return or resume            for a thread-blocking waiter); wake the fiber
//!    the panic
//! ```
//! The fiber never leaves its home thread (this is the "hand the closure over" design, not
//! the "resume the fiber on a pool thread" one): no switch happens on another thread, so no
//! thread-local address can go stale (ARCHITECTURE.md §4). The closure itself runs on the pool
//! thread, hence `Send`; it is called through its own `#[inline(never)]` function.
//!
//! # Why borrowing is sound
//! The closure and its result may borrow the fiber's stack (no `'static` bound), so the job's
//! lifetime is erased when it is handed to the pool. That is sound because `blocking` does not
//! leave its frame, by return *or by unwinding*, before the job has finished with the closure
//! and the result: a guard waits for `done` in its `Drop`. If shutdown unwinds the parked fiber
//! (a forced unwind from inside `park`), the guard blocks the worker thread until the pool
//! thread is done (the pool outlives the workers: `finish_session` shuts it down last). The
//! pool side touches only the `Arc`-owned flag, lock and fiber header after setting `done`.
//!
//! # Shutdown unwinds a fiber in an excursion last
//! Blocking the worker in the guard would deadlock when the closure waits for a fiber pinned
//! to the same worker (a `rx.recv()` whose sender another fiber of that worker holds): that
//! fiber is unwound, and drops the sender, only by this worker. So the fiber marks itself
//! (`Header::in_excursion`) before submitting, the pool thread clears the mark when the
//! closure is done (just before `done`, so a mark never outlives its excursion), and shutdown
//! leaves a marked fiber for a later pass (sched/shutdown.rs), as it does a fiber whose scoped
//! children still run. What remains: a closure waiting for something outside the runtime (a
//! socket, a plain thread, a lock held elsewhere) holds the session's end until it returns,
//! as a running `spawn_blocking` task does.

use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use super::pool::{self, Job};
use crate::fiber::FiberRef;
use crate::park::{self, ParkReason};
use crate::sched::{context, Shared};

/// Runs `f` on a thread of the runtime's blocking pool and returns its value; the calling
/// fiber parks meanwhile, so its worker keeps running other fibers. Outside a fiber (or while
/// the runtime unwinds the fiber at shutdown) it simply calls `f`.
///
/// Unlike [`spawn_blocking`](crate::spawn_blocking), `f` may borrow the caller's locals,
/// and the value comes back directly: *spawn* gives a handle, *run* waits for the value (as
/// [`Runtime::run`](crate::Runtime::run) and [`fibra::run`](crate::run) do). It was
/// `fibra::run_blocking` before 0.2.
///
/// # Panics
/// Resumes a panic of `f` in the caller.
///
/// # Migration
/// The calling fiber stays on its thread; only `f` runs elsewhere, which is why it must be
/// `Send`. A `thread_local!` read inside `f` is the pool thread's.
///
/// # Cancellation
/// A fiber cancelled ([`JoinHandle::cancel`](crate::JoinHandle::cancel)) while `f` runs is
/// not interrupted: `f` may borrow the caller's frame, so the fiber waits for it and unwinds
/// at its next park after this returns.
///
/// # Shutdown
/// If the session ends while `f` runs, the calling fiber is unwound after the session's other
/// fibers (which may be what `f` waits for) and only once `f` has returned: an `f` that waits
/// for something outside the runtime holds the session's end until it returns.
///
/// ```
/// # fibra::run(|| {
/// let path = String::from("/proc/self/status");
/// let text = fibra::run_blocking(|| std::fs::read_to_string(&path)).unwrap(); // borrows `path`
/// assert!(text.contains("Threads:"));
/// # });
/// ```
#[inline(never)]
pub fn run_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let fiber =
        context::with_current_fiber(|h| h.filter(|h| !h.state.is_cancelling()).map(|h| h.to_ref()));
    let Some(fiber) = fiber else {
        return f();
    };
    let shared = fiber.shared.clone();
    // Relaxed: read by this fiber's thread, or by shutdown after claiming the fiber (an
    // Acquire that pairs with the Release of its park, which follows this store).
    fiber.in_excursion.store(true, Relaxed);
    let excursion = Arc::new(Excursion {
        f: UnsafeCell::new(Some(f)),
        result: UnsafeCell::new(None),
        done: AtomicBool::new(false),
        done_lock: Mutex::new(false),
        done_cvar: Condvar::new(),
        fiber,
        session: shared.clone(),
    });
    let job: Box<dyn Job + '_> = Box::new(ExcursionJob(excursion.clone()));
    // SAFETY: only the lifetime bound changes (same fat pointer). What the job borrows (`f`,
    // `T`) lives in this frame, which `guard` keeps alive until the job set `done`, whether
    // this function returns or unwinds (module docs, "Why borrowing is sound"); after `done`
    // the job touches only `Arc`-owned, `'static` parts (flag, lock, fiber header).
    let job: Box<dyn Job> = unsafe { std::mem::transmute::<Box<dyn Job + '_>, Box<dyn Job>>(job) };
    if let Err(job) = shared.blocking.submit(job) {
        job.run(); // the pool is gone (cannot happen while a fiber runs): run it here
    }
    let guard = WaitGuard(&excursion);
    // Acquire pairs with `finish`'s Release store: the result is visible.
    while !excursion.done.load(Acquire) {
        if park::cancelling() {
            break; // the guard blocks the thread instead
        }
        // Uncancellable: the closure may borrow this frame, so a `JoinHandle::cancel` waits
        // for it; the request stays pending and the fiber unwinds at its next park after.
        park::park_uncancellable(ParkReason::Blocking);
    }
    excursion.wait_blocking(); // returns at once unless we stopped parking (cancelling)
    std::mem::forget(guard); // the frame leaves normally: the guard's work is done
                             // SAFETY: `done` was observed (by the loop or `wait_blocking`), so the job no longer touches
                             // `result`, and only this frame reads it.
    match unsafe { (*excursion.result.get()).take() } {
        Some(Ok(v)) => v,
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => unreachable!("a finished excursion has a result"),
    }
}

struct Excursion<F, T> {
    /// The closure, until the pool thread takes it.
    f: UnsafeCell<Option<F>>,
    /// Written by the pool thread before `done`; read by the fiber after.
    result: UnsafeCell<Option<thread::Result<T>>>,
    done: AtomicBool,
    /// `done` again, for a waiter that blocks its thread (shutdown's unwinding).
    done_lock: Mutex<bool>,
    done_cvar: Condvar,
    /// The calling fiber: its `in_excursion` mark, and whom to unpark.
    fiber: FiberRef,
    session: Arc<Shared>,
}

// SAFETY: `f` is taken once by the pool thread; `result` is written by the pool thread before
// `done` (Release) and read by the fiber after observing it (Acquire), or after the lock of
// `done_lock`. `F: Send`, `T: Send` let them cross threads.
unsafe impl<F: Send, T: Send> Sync for Excursion<F, T> {}
// SAFETY: as above.
unsafe impl<F: Send, T: Send> Send for Excursion<F, T> {}

impl<F, T> Excursion<F, T> {
    /// Pool thread, once, after writing `result`. Touches only `'static`-safe parts after
    /// the Release store (see the module docs).
    fn finish(&self) {
        // Before `done`: once the fiber sees `done` it may start another excursion, whose
        // mark this store must not clear. Release pairs with shutdown's Acquire load; nothing
        // else rides on it (an unwinding fiber still waits for `done` in its guard).
        self.fiber.in_excursion.store(false, Release);
        let mut done = self.done_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.done.store(true, Release); // pairs with the fiber's Acquire load
        *done = true;
        drop(done);
        self.done_cvar.notify_all();
        park::unpark(&self.fiber);
    }

    /// The fiber's frame, on its way out: blocks the thread until the job is done, then drops
    /// a result nobody took (it may borrow the frame).
    fn wait_blocking(&self) {
        if !self.done.load(Acquire) {
            let mut done = self.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*done {
                done = self.done_cvar.wait(done).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Runs only if `blocking`'s frame unwinds (shutdown unwinding the parked fiber): keeps the
/// frame alive, by blocking its thread, until the job is done.
struct WaitGuard<'a, F, T>(&'a Arc<Excursion<F, T>>);

impl<F, T> Drop for WaitGuard<'_, F, T> {
    fn drop(&mut self) {
        self.0.wait_blocking();
        // Drop the result here, while what it may borrow is alive.
        // SAFETY: the job is done with `result` (`wait_blocking`); only this frame reads it.
        drop(unsafe { (*self.0.result.get()).take() });
    }
}

struct ExcursionJob<F, T>(Arc<Excursion<F, T>>);

impl<F: FnOnce() -> T + Send, T: Send> Job for ExcursionJob<F, T> {
    fn run(self: Box<Self>) {
        let e = &self.0;
        let _session = pool::enter_session(&e.session);
        // SAFETY: only the job touches `f`, once.
        let f = unsafe { (*e.f.get()).take() };
        let result = match f {
            Some(f) => call(f),
            None => Err(Box::new("fibra::blocking: closure missing") as _),
        };
        // SAFETY: the fiber reads `result` only after `done`, which `finish` sets below.
        unsafe { *e.result.get() = Some(result) };
        e.finish();
    }

    fn cancel(self: Box<Self>) {
        // The pool shut down before running it; `finish_session` shuts the pool down only
        // after every fiber is gone, so nobody waits. Run it anyway: never leave a waiter.
        self.run();
    }
}

/// The closure's own out-of-line frame on the pool thread (ARCHITECTURE.md §4).
#[inline(never)]
fn call<F: FnOnce() -> T, T>(f: F) -> thread::Result<T> {
    panic::catch_unwind(AssertUnwindSafe(f))
}
