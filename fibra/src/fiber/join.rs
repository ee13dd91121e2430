//! `JoinHandle`: waiting for a fiber and taking its result.

use std::cell::UnsafeCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, Ordering::*};
use std::sync::Arc;

use super::handle::Fiber;
use super::header::Header;
use super::local;
use crate::error::JoinError;
use crate::park::{self, ParkReason};
use crate::scope::ScopeData;

/// One allocation per fiber besides its header: the fiber's code until it starts, then its
/// result until it is joined. (Code and result used to live in separate allocations; merging
/// them saved a malloc/free pair per spawn, which glibc makes costly when the fiber finishes
/// on another worker than the one that spawned it.)
pub(crate) struct Packet<T, F> {
    result: UnsafeCell<Option<Result<T, JoinError>>>,
    start: UnsafeCell<Option<F>>,
    /// Set for scoped fibers: the scope waits until every packet is gone (std's protocol).
    scope: Option<Arc<ScopeData>>,
}

// SAFETY: `start` is taken once, by the worker that owns the fiber's first run (or shutdown's
// claimer), before any other access; `result` is written once by the fiber before its state
// becomes COMPLETE (Release) and read by the single joiner after observing COMPLETE (Acquire).
// `T: Send`, `F: Send` let both cross threads.
unsafe impl<T: Send, F: Send> Sync for Packet<T, F> {}

/// The result side of a packet, as `JoinHandle<T>` sees it (without the closure's type).
pub(crate) trait Outcome<T>: Send + Sync {
    /// The joiner, after completion: the result, if the fiber left one.
    fn take(&self) -> Option<Result<T, JoinError>>;
}

/// The code side of a packet, as the worker that starts the fiber sees it.
pub(crate) trait Start: Send + Sync {
    /// Runs the fiber's code on its own stack. Called once, on the fiber's stack.
    fn run(&self, header: *const Header);
    /// Drops the code of a fiber that will never run (shutdown); a no-op after `run`.
    fn discard(&self);
}

impl<T, F> Packet<T, F> {
    pub(crate) fn new(start: Option<F>, scope: Option<Arc<ScopeData>>) -> Packet<T, F> {
        Packet {
            result: UnsafeCell::new(None),
            start: UnsafeCell::new(start),
            scope,
        }
    }

    /// The fiber itself, once, before it completes.
    fn set(&self, value: Result<T, JoinError>) {
        // SAFETY: only the fiber writes, before COMPLETE is published; nobody reads until then.
        unsafe { *self.result.get() = Some(value) };
    }

    fn take_start(&self) -> Option<F> {
        // SAFETY: only the owner of the fiber's first run (or its shutdown claimer) calls
        // this, once, and nothing else touches `start` (see the Sync impl).
        unsafe { (*self.start.get()).take() }
    }
}

impl<T: Send, F: Send> Outcome<T> for Packet<T, F> {
    fn take(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: COMPLETE was observed with Acquire (the writer is done) and `JoinHandle::join`
        // consumes the only handle, so this is the only access.
        unsafe { (*self.result.get()).take() }
    }
}

impl<T: Send, F: FnOnce() -> T + Send> Start for Packet<T, F> {
    fn run(&self, header: *const Header) {
        let Some(f) = self.take_start() else { return };
        let _locals = local::DropLocalsOnExit(header);
        let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            // SAFETY: the header owns the coroutine running us and so outlives it.
            Err(payload) if unsafe { (*header).state.is_cancelling() } => {
                self.set(Err(JoinError::Cancelled));
                // Shutdown's forced unwind (corosensei's payload): let it finish unwinding.
                panic::resume_unwind(payload)
            }
            Err(payload) => Err(JoinError::Panicked(payload)),
        };
        self.set(result);
    }

    fn discard(&self) {
        drop(self.take_start());
    }
}

impl<T, F> Drop for Packet<T, F> {
    fn drop(&mut self) {
        if let Some(scope) = &self.scope {
            let unhandled_panic =
                matches!(self.result.get_mut(), Some(Err(JoinError::Panicked(_))));
            scope.decrement_running(unhandled_panic);
        }
    }
}

/// Waits until `fiber` completes. Returns false if the caller is itself being unwound by
/// shutdown and gave up waiting.
pub(crate) fn wait_complete(fiber: &Header) -> bool {
    if fiber.state.is_complete() {
        crate::coop::consume(); // finished without parking: counts against the budget
        return true;
    }
    let joining_self = crate::sched::context::with_current_fiber(|me| {
        me.is_some_and(|me| std::ptr::eq(me, fiber))
    });
    assert!(
        !joining_self,
        "a fiber cannot join itself (it would wait forever)"
    );
    *fiber.join_waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(park::current_waker());
    fiber.join_waiting.store(true, Relaxed);
    fence(SeqCst); // pairs with the fence in `Header::wake_joiner`
    while !fiber.state.is_complete() {
        if park::cancelling() {
            return false;
        }
        park::park(if fiber.is_blocking_task() {
            ParkReason::BlockingJoin
        } else {
            ParkReason::Join
        });
    }
    true
}

/// An owned permission to join a fiber: returned by [`spawn`](crate::spawn).
/// Dropping it detaches the fiber (it keeps running; its result is dropped).
pub struct JoinHandle<T> {
    fiber: Fiber,
    packet: Arc<dyn Outcome<T>>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(fiber: Fiber, packet: Arc<dyn Outcome<T>>) -> JoinHandle<T> {
        JoinHandle { fiber, packet }
    }

    /// Waits for the fiber to finish and returns its value. From a fiber this parks the fiber;
    /// from a plain thread it blocks the thread.
    ///
    /// # Errors
    /// [`JoinError::Panicked`] with the payload if the fiber panicked;
    /// [`JoinError::Cancelled`] if the runtime shut down before it finished.
    ///
    /// # Panics
    /// If a fiber tries to join itself.
    ///
    /// # Memory ordering
    /// Everything the fiber did happens-before `join` returns.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| 6 * 7);
    /// assert_eq!(h.join().unwrap(), 42);
    /// let bad = fibra::spawn(|| panic!("boom"));
    /// assert!(matches!(bad.join(), Err(fibra::JoinError::Panicked(_))));
    /// # });
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        if !wait_complete(&self.fiber.0) {
            return Err(JoinError::Cancelled);
        }
        match self.packet.take() {
            Some(result) => result,
            // SAFETY: written before COMPLETE, which `wait_complete` observed with Acquire;
            // only this (sole) handle reads it.
            None => match unsafe { (*self.fiber.0.start_error.get()).take() } {
                Some(e) => Err(JoinError::NoStack(*e)),
                None => Err(JoinError::Cancelled),
            },
        }
    }

    /// True once the fiber has finished; `join` then returns without waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| ());
    /// while !h.is_finished() { fibra::yield_now(); }
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.fiber.is_finished()
    }

    /// The fiber this handle joins.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::Builder::new().name("conn-7").spawn(|| ()).unwrap();
    /// assert_eq!(h.fiber().name(), Some("conn-7"));
    /// # });
    /// ```
    pub fn fiber(&self) -> &Fiber {
        &self.fiber
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("fiber", &self.fiber)
            .finish()
    }
}
