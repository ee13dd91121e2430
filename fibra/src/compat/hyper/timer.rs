//! [`Timer`]: hyper's timeouts on fibra's timers, through [`Sleep`].

use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::Sleep;

/// A [`hyper::rt::Timer`] whose sleeps are fibra [`Sleep`]s: polled in a fiber, they wait on
/// the worker's own timers, as [`fibra::sleep`](crate::sleep) does. Builders need one for
/// their timeouts (`header_read_timeout`, `keep_alive_interval`).
///
/// ```
/// use hyper::rt::Timer as _;
/// # fibra::run(|| {
/// let t = std::time::Instant::now();
/// fibra::await_future(fibra::compat::hyper::Timer.sleep(std::time::Duration::from_millis(2)));
/// assert!(t.elapsed() >= std::time::Duration::from_millis(2));
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::after(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(deadline))
    }

    /// Moves the deadline of one of our sleeps in place (no new allocation).
    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(s) => s.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

impl hyper::rt::Sleep for Sleep {}
