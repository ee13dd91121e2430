//! `fibra::await_future(future)`: await any future from blocking-style fiber code.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use crate::park::{self, ParkReason};
use crate::sched::context;

/// Runs `future` to completion on the calling fiber: the fiber parks while the future is
/// pending and its worker runs other fibers; the future's waker unparks it.
///
/// Any runtime-agnostic future works (channels from `futures`, `event-listener`, ...).
///
/// Named for what it does from the fiber's point of view: it awaits the future (the fiber
/// waits; its thread does not). It was `fibra::await_future` before 0.2, which read like the
/// thread-blocking executors' `block_on` and was mistaken for [`Runtime::run`](crate::Runtime::run).
///
/// # Panics
/// Outside a fiber: on a plain thread use another executor (`futures::executor::block_on`,
/// `pollster`), or start a runtime with [`fibra::run`](crate::run).
///
/// # Cancellation
/// A [cancelled](crate::JoinHandle::cancel) fiber unwinds at its next park here, dropping the
/// future.
///
/// ```
/// # fibra::run(|| {
/// let v = fibra::await_future(async { 40 + 2 });
/// assert_eq!(v, 42);
/// # });
/// ```
pub fn await_future<F: Future>(future: F) -> F::Output {
    let waker = context::with_current_fiber(|f| f.map(|h| park::fiber_waker(h.to_ref())))
        .expect("fibra::await_future(future) must be called inside a fiber: wrap the caller in fibra::run(|| ...)");
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        park::park(ParkReason::BlockOn);
    }
}

/// Renamed [`await_future`]: it awaits a future on the calling fiber.
///
/// ```
/// # #![allow(deprecated)]
/// # fibra::run(|| {
/// assert_eq!(fibra::block_on(async { 1 }), fibra::await_future(async { 1 }));
/// # });
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed to `fibra::await_future`: it parks the calling fiber until the future is ready"
)]
pub fn block_on<F: Future>(future: F) -> F::Output {
    await_future(future)
}
