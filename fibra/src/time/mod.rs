//! Sleeping: a fiber parks and its worker's timer heap unparks it; a [`Sleep`] future is
//! woken by the same timers (`sleep_future.rs`).

mod sleep_future;
mod timers;

use std::time::{Duration, Instant};

use crate::park::{self, ParkReason};
use std::sync::atomic::Ordering::*;

use crate::sched::context;
pub use sleep_future::Sleep;
pub(crate) use timers::{fire_due, Timers};

/// Parks the calling fiber for at least `dur`; its worker runs other fibers meanwhile.
///
/// Outside a fiber (on a plain OS thread) this is `std::thread::sleep`.
///
/// ```
/// # fibra::run(|| {
/// let t = std::time::Instant::now();
/// fibra::sleep(std::time::Duration::from_millis(5));
/// assert!(t.elapsed() >= std::time::Duration::from_millis(5));
/// # });
/// ```
pub fn sleep(dur: Duration) {
    match Instant::now().checked_add(dur) {
        Some(deadline) => sleep_until(deadline),
        None => sleep_forever(),
    }
}

/// Parks the calling fiber until `deadline` has passed.
///
/// Outside a fiber this blocks the calling thread until `deadline`.
///
/// ```
/// # fibra::run(|| {
/// let deadline = std::time::Instant::now() + std::time::Duration::from_millis(3);
/// fibra::sleep_until(deadline);
/// assert!(std::time::Instant::now() >= deadline);
/// # });
/// ```
pub fn sleep_until(deadline: Instant) {
    while Instant::now() < deadline && !park::cancelling() {
        park_until(ParkReason::Sleep, deadline);
    }
}

/// Parks the calling fiber (or thread) until an unpark or `deadline`, whichever comes first;
/// may return spuriously, like [`park`](crate::park).
///
/// ```
/// # fibra::run(|| {
/// let t = std::time::Instant::now();
/// fibra::park_timeout(std::time::Duration::from_millis(2)); // nobody unparks us
/// assert!(t.elapsed() >= std::time::Duration::from_millis(2));
/// # });
/// ```
pub fn park_timeout(dur: Duration) {
    match Instant::now().checked_add(dur) {
        Some(deadline) => park_until(ParkReason::User, deadline),
        None => park::park(ParkReason::User),
    }
}

/// The timed wait under every fibra timeout: arms a timer on the current worker, parks, and
/// disarms it (by generation, without touching the heap) however the park ended.
pub(crate) fn park_until(reason: ParkReason, deadline: Instant) {
    park_until_with(reason, deadline, park::park);
}

/// `park_until`, parking with `park_fn` (`park::park_uncancellable` for a wait whose frame
/// must return normally: the libc hooks, whose callers are C-ABI frames).
pub(crate) fn park_until_with(reason: ParkReason, deadline: Instant, park_fn: fn(ParkReason)) {
    let armed = context::with_worker(|w| {
        let w = w?;
        // SAFETY: see `context::with_current_fiber`: non-null `current` is the running fiber.
        let fiber = unsafe { w.current.get().as_ref() }?;
        let generation = fiber.timer_gen.fetch_add(1, Relaxed).wrapping_add(1);
        w.timers().insert(deadline, generation, fiber.to_ref());
        Some(fiber.to_ref())
    });
    match armed {
        Some(fiber) => {
            park_fn(reason);
            // Release pairs with the Acquire check in `Worker::fire_timers`.
            fiber.timer_gen.fetch_add(1, Release);
        }
        None => {
            let now = Instant::now();
            if deadline > now {
                std::thread::park_timeout(deadline - now);
            }
        }
    }
}

fn sleep_forever() {
    while !park::cancelling() {
        park::park(ParkReason::Sleep);
    }
}
