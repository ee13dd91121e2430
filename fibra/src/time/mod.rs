//! Sleeping: a fiber parks and its worker's timer heap unparks it.

mod timers;

use std::time::{Duration, Instant};

use crate::park::{self, ParkReason};
use crate::sched::context;
pub(crate) use timers::Timers;

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
    let registered = context::with_worker(|w| {
        let w = w?;
        let h = w.current.get();
        // SAFETY: see `context::with_current_fiber`: non-null `current` is the running fiber.
        let fiber = unsafe { h.as_ref() }?;
        if Instant::now() < deadline {
            w.timers.borrow_mut().insert(deadline, fiber.to_ref());
        }
        Some(())
    });
    if registered.is_none() {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        return;
    }
    // The timer unparks us at the deadline; other unparks are spurious wake-ups for this loop.
    while Instant::now() < deadline && !park::cancelling() {
        park::park(ParkReason::Sleep);
    }
}

fn sleep_forever() {
    while !park::cancelling() {
        park::park(ParkReason::Sleep);
    }
}
