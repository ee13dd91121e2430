//! The runtime's thread-local: which worker this OS thread drives, and which fiber it runs.
//!
//! Read only through `#[inline(never)]` accessors with a compiler fence: a fiber may resume
//! on another thread (migration opt-in, `fibra::run_blocking` excursions), and an inlined
//! `thread_local!` access could reuse an address computed on the previous thread
//! (ARCHITECTURE.md §4: reproduced in release builds).

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering::SeqCst};

use super::worker::Worker;
use crate::fiber::Header;

thread_local! {
    static WORKER: Cell<*const Worker> = const { Cell::new(ptr::null()) };
    static DISCARDING: Cell<bool> = const { Cell::new(false) };
}

#[inline(never)]
fn worker_ptr() -> *const Worker {
    compiler_fence(SeqCst);
    let w = WORKER.with(Cell::get);
    compiler_fence(SeqCst);
    w
}

/// Worker thread only: marks this thread as driving `worker` (null when it stops).
#[inline(never)]
fn set_worker(worker: *const Worker) {
    compiler_fence(SeqCst);
    WORKER.with(|c| c.set(worker));
    compiler_fence(SeqCst);
}

/// This thread drives `worker` while the registration lives. Dropping it clears the pointer
/// however the worker's frame is left, unwinding included, so no later fibra call on this
/// thread (a thread-local destructor, say) reaches a dropped `Worker`.
pub(crate) struct WorkerRegistration {
    index: usize,
}

impl WorkerRegistration {
    /// Declare it after `worker`, so it is dropped first.
    pub(crate) fn new(worker: &Worker) -> WorkerRegistration {
        set_worker(worker);
        WorkerRegistration {
            index: worker.index,
        }
    }
}

impl Drop for WorkerRegistration {
    fn drop(&mut self) {
        set_worker(ptr::null());
        if std::thread::panicking() {
            // A panic got out of the scheduling loop (a bug, or a user callback it runs):
            // the fibers that call this thread home can run nowhere else, so going on would
            // strand them and hang the runtime.
            crate::macros::abort_with(format_args!(
                "worker {} unwound out of its scheduling loop (see the panic above); its \
                 fibers cannot run elsewhere, aborting",
                self.index
            ));
        }
    }
}

/// Runs `f` with this thread's worker, if it is a worker thread.
///
/// Do not hold the reference across a park or yield: the fiber may resume elsewhere.
///
/// Always inlined (the thread-local read itself stays in `worker_ptr`, out of line): left to
/// the compiler, this wrapper and `with_current_fiber` stayed calls; inlining them (and
/// `WorkerSlot::take_inbox`) took a park/unpark round trip from 681 to 615 instructions
/// (callgrind, `fibra-lab child switch`) and its wall time by ~7% (paired runs).
#[inline(always)]
pub(crate) fn with_worker<R>(f: impl FnOnce(Option<&Worker>) -> R) -> R {
    let w = worker_ptr();
    // SAFETY: `set_worker` stores a pointer to the `Worker` that lives on this thread's stack
    // for as long as the pointer is set: `WorkerRegistration`, declared after the worker in
    // `Worker::run_thread`, clears it before the worker is dropped, on return and on unwind.
    // The worker is only used through shared references.
    f(unsafe { w.as_ref() })
}

/// Runs `f` with the fiber running on this thread, if any.
#[inline(always)]
pub(crate) fn with_current_fiber<R>(f: impl FnOnce(Option<&Header>) -> R) -> R {
    with_worker(|w| {
        let fiber = w.and_then(|w| {
            let h = w.current.get();
            // SAFETY: `current` is non-null only while the worker resumes (or unwinds) that
            // fiber and holds a `FiberRef` to it; the only code running then is the fiber's own,
            // which is who calls us. The header stays alive while the fiber is unfinished
            // (the registry holds a count), which covers a park inside `f`.
            unsafe { h.as_ref() }
        });
        f(fiber)
    })
}

/// While the runtime drops a user's value on a thread outside any fiber (the closure of a
/// fiber that will never run: shutdown, a cancelled pool task, a first run without a stack),
/// waits on this thread give up as they do in a cancelled fiber (`park::Caller::cancelling`).
/// Blocking the thread instead could hang the session: a worker waiting in such a destructor
/// never gets to unwind the fiber that would wake it.
pub(crate) struct Discarding {
    was: bool,
}

impl Discarding {
    pub(crate) fn begin() -> Discarding {
        Discarding {
            was: set_discarding(true),
        }
    }
}

impl Drop for Discarding {
    fn drop(&mut self) {
        set_discarding(self.was);
    }
}

/// True while this thread drops a value for the runtime outside any fiber (`Discarding`).
#[inline(never)]
pub(crate) fn discarding() -> bool {
    compiler_fence(SeqCst);
    let d = DISCARDING.with(Cell::get);
    compiler_fence(SeqCst);
    d
}

#[inline(never)]
fn set_discarding(on: bool) -> bool {
    compiler_fence(SeqCst);
    let was = DISCARDING.with(|d| d.replace(on));
    compiler_fence(SeqCst);
    was
}
