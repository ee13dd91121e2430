//! `fibra::block_on(future)`: await any future from blocking-style fiber code.

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
/// # Panics
/// Outside a fiber: on a plain thread use a runtime's `block_on` or another executor.
///
/// ```
/// # fibra::run(|| {
/// let v = fibra::block_on(async { 40 + 2 });
/// assert_eq!(v, 42);
/// # });
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = context::with_current_fiber(|f| f.map(|h| park::fiber_waker(h.to_ref())))
        .expect("fibra::block_on(future) must be called inside a fiber: wrap the caller in fibra::run(|| ...)");
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        park::park(ParkReason::BlockOn);
    }
}
