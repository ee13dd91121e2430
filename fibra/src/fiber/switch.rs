//! The only caller of corosensei: creating a fiber's coroutine, resuming it, suspending it.
//!
//! Both switch functions are `#[inline(never)]`: a switch is an opaque call, so LLVM cannot
//! keep a thread-local address computed before it in a register after it (ARCHITECTURE.md §4).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::header::Header;
use crate::stack::FiberStack;

/// Why a fiber switched back to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// It waits for an unpark.
    Park,
    /// It wants to go to the back of the run queue.
    Yield,
}

pub(crate) type FiberCoroutine = Coroutine<(), Suspend, (), FiberStack>;
type FiberYielder = Yielder<(), Suspend>;

/// What a resumed fiber did.
pub(crate) enum Switched {
    Suspended(Suspend),
    Finished,
}

/// Builds the coroutine that runs `body` on `stack`.
///
/// # Safety
/// - `header` points to the control block that will own this coroutine and outlives it.
/// - Everything `body` borrows stays valid until the coroutine finishes or is dropped
///   (`fibra::scope` guarantees that by waiting for its fibers).
/// - `body` must not unwind, except to continue a forced unwind started by corosensei.
pub(crate) unsafe fn new_coroutine<F: FnOnce()>(
    stack: FiberStack,
    header: *const Header,
    body: F,
) -> FiberCoroutine {
    let entry = move |yielder: &FiberYielder, ()| {
        // SAFETY: the caller promises `header` outlives the coroutine; only this fiber writes
        // `yielder` (header.rs field table).
        unsafe {
            (*header)
                .yielder
                .set(yielder as *const FiberYielder as *const ())
        };
        body()
    };
    // SAFETY: the caller's promise on borrowed data is exactly `with_stack_unchecked`'s.
    unsafe { Coroutine::with_stack_unchecked(stack, entry) }
}

/// Runs the fiber until it suspends or finishes. The thread that owns the run only.
#[inline(never)]
pub(crate) fn resume(co: &mut FiberCoroutine) -> Switched {
    match co.resume(()) {
        CoroutineResult::Yield(s) => Switched::Suspended(s),
        CoroutineResult::Return(()) => Switched::Finished,
    }
}

/// Switches from the running fiber back to its worker. On the fiber's own stack only.
///
/// # Cancellation
/// Shutdown unwinds a parked fiber with corosensei's `force_unwind`, which makes this call
/// unwind with corosensei's private payload. It is swapped here for [`Cancelled`], so every
/// catch on the way up (`Start::run`, `drop_or_abort`, the fiber's root) can tell it from a
/// user's panic, and the root ends it and returns normally (corosensei accepts that as the
/// end of a forced unwind). A fiber parked while it was already unwinding (a destructor that
/// waits, during a panic) is not unwound a second time, which would abort the process: the
/// park returns, and since the fiber is now CANCELLING its waits return at once, so the
/// unwinding it was doing runs to the end. (std counts panics per thread, so a fiber parked
/// mid-unwind makes this test true for the other fibers of its thread too, until it is
/// resumed: docs/SOUNDNESS.md §6.)
///
/// While suspended, the registers the fiber stopped with are where corosensei's switch left
/// them (its saved stack pointer, in the coroutine), which is where debuggers and the
/// monitor's lock-holder search read them (`sched/anchor.rs`): nothing is stored here for
/// them, so a park costs nothing for it.
#[inline(never)]
pub(crate) fn suspend(header: &Header, why: Suspend) {
    let yielder = header.yielder.get() as *const FiberYielder;
    debug_assert!(!yielder.is_null(), "suspend before the fiber started");
    let resumed = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `yielder` was set by `new_coroutine`'s entry on this fiber's stack and lives
        // as long as the coroutine; we are running on that stack (callers check that `header`
        // is the current fiber), so the yielder is the live parent link of this coroutine.
        unsafe { (*yielder).suspend(why) }
    }));
    if let Err(forced) = resumed {
        drop(forced); // corosensei's forced unwind: the only unwind out of `Yielder::suspend`
        if !std::thread::panicking() {
            panic::resume_unwind(Box::new(Cancelled));
        }
    }
}

/// The payload of a fiber's cancellation (shutdown's unwinding), as fibra carries it: see
/// [`suspend`]. Ends at the fiber's root.
pub(crate) struct Cancelled;

/// True for the payload of shutdown's cancellation of a fiber.
pub(crate) fn is_shutdown_cancellation(payload: &(dyn Any + Send)) -> bool {
    payload.is::<Cancelled>()
}

/// True for the payload of a fiber's cancellation, by shutdown or by `JoinHandle::cancel`
/// (`fiber/cancel.rs`); false for a user's panic.
pub(crate) fn is_cancellation(payload: &(dyn Any + Send)) -> bool {
    is_shutdown_cancellation(payload) || super::cancel::is_payload(payload)
}
