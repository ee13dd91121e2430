//! Cancelling one fiber: `JoinHandle::cancel` asks, the fiber unwinds itself at its next park.
//!
//! # Protocol
//! ```text
//! Canceller (any thread)                      The fiber (its own stack, its home thread)
//! 1. state.request_cancel(): CANCEL_REQUESTED,
//!    and wake it like an unpark (PARKED →
//!    SCHEDULED and queue it home, or leave   2. at a park (before switching out, or once
//!    the NOTIFIED token)                        resumed): take_cancel_request():
//!                                               SCHEDULED → CANCELLING|SELF_CANCEL
//!                                            3. resume_unwind(CancelPayload): its frames
//!                                               unwind, destructors run; every park meanwhile
//!                                               returns at once (it is CANCELLING)
//!                                            4. Start::run catches the payload: result
//!                                               JoinError::Cancelled; dropping the payload
//!                                               ends the cancellation (→ SCHEDULED), and the
//!                                               root frame finishes as after any panic
//! ```
//! Why this shape: the unwind is an ordinary Rust panic raised *by the fiber, on its own
//! stack and thread*, at a point where shutdown's forced unwind may start too (a park), so
//! every wait in fibra is already written to be left that way, and nothing crosses threads
//! (a started fiber's stack may hold `!Send` values: docs/SOUNDNESS.md §2). Rejected:
//! `force_unwind` by the canceller (it would need the fiber's home thread and its run, i.e.
//! the shutdown machinery mid-session) and a flag polled by user code (that is
//! [`CancellationToken`](crate::CancellationToken), which is cooperative by design).
//!
//! # Where it is not raised
//! - While the thread is already unwinding (`std::thread::panicking()`): a park in a
//!   destructor during a panic would otherwise panic again, which aborts. The request stays
//!   pending for a later park. (The check can only say "yes" too often, when another fiber of
//!   the same worker is parked mid-unwind, §6 of SOUNDNESS.md; that only delays.)
//! - In a park that a frame's soundness depends on returning normally: `fibra::run_blocking`
//!   waiting for its closure (the closure may borrow the frame) and `fibra::scope` waiting for
//!   its children (they may borrow it). They park with `park_uncancellable`, and act on the
//!   request themselves: a scope cancels its children.
//! - A fiber that never started is never run: its first pick drops its closure
//!   (`Worker::run`).

use std::any::Any;
use std::panic;

use super::header::{FiberRef, Header};
use super::state::AfterCancel;

/// The panic payload of a fiber's own cancellation. Dropping it (its root frame does, or
/// code that caught it) ends the cancellation: the fiber's parks wait again.
pub(crate) struct CancelPayload {
    fiber: FiberRef,
}

impl Drop for CancelPayload {
    fn drop(&mut self) {
        let _ = self.fiber.state.end_self_cancel();
    }
}

/// Any thread: asks `fiber` to unwind at its next park, waking it if it is parked.
pub(crate) fn request(fiber: &Header) {
    if fiber.state.request_cancel() == AfterCancel::Schedule {
        // SAFETY: our PARKED → SCHEDULED transition (`request_cancel`) just succeeded.
        crate::sched::schedule_woken(unsafe { fiber.adopt_parked_ref() });
    }
}

/// The running fiber `me`, at a cancellable park: unwinds if a request is pending and no
/// panic is in flight on this thread.
#[inline]
pub(crate) fn check(me: &Header) {
    if me.state.cancel_requested() {
        raise_requested(me);
    }
}

#[cold]
fn raise_requested(me: &Header) {
    if std::thread::panicking() {
        return; // a later park raises it (module docs)
    }
    if me.state.take_cancel_request() {
        raise(me);
    }
}

/// The running fiber `me`: unwinds now as cancelled, whether or not a request is pending (a
/// scope re-raising the cancellation it held back while its children finished).
pub(crate) fn raise_now(me: &Header) -> ! {
    me.state.begin_self_cancel();
    raise(me)
}

fn raise(me: &Header) -> ! {
    // `resume_unwind`, not `panic_any`: no panic hook, no "thread panicked" line; this is a
    // request being honoured, not a bug.
    panic::resume_unwind(Box::new(CancelPayload { fiber: me.to_ref() }))
}

/// True if `payload` is a fiber's own cancellation.
pub(crate) fn is_payload(payload: &(dyn Any + Send)) -> bool {
    payload.is::<CancelPayload>()
}
