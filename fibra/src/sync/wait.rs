//! How a primitive's blocking call waits, gives up, and survives being unwound.
//!
//! Every primitive follows the same steps around [`Waiter`] (see `waiter.rs`):
//! ```text
//! 1. under the primitive's lock: check the state; push (waiter, token)
//! 2. wait(waiter, reason, deadline, abandon)           parks; returns the claiming token
//! 3. token == the primitive's grant  -> the caller owns what was granted
//!    TIMED_OUT / CANCELLED           -> withdraw: remove the entry under the lock
//! ```
//! If shutdown unwinds the fiber while it is parked in step 2, `abandon` runs during the
//! unwind: it claims the waiter with `CANCELLED` (then withdraws), or, if a notifier won that
//! race and already handed something over (a lock, a permit), gives it back, so nothing is
//! lost to a dead fiber.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::waiter::{Waiter, CANCELLED};
use crate::park::ParkReason;

/// `now + timeout`, or `None` (no deadline) if that is not representable.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Parks on `waiter` until a token claims it (returned), `deadline` passes (`TIMED_OUT`) or
/// the fiber is being unwound (`CANCELLED`). If the fiber is unwound *while parked*, `abandon`
/// runs during the unwind, before the frames holding `waiter` are gone.
pub(crate) fn wait(
    waiter: &Arc<Waiter>,
    reason: ParkReason,
    deadline: Option<Instant>,
    abandon: impl FnOnce(),
) -> usize {
    struct OnUnwind<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for OnUnwind<F> {
        fn drop(&mut self) {
            if let Some(abandon) = self.0.take() {
                abandon();
            }
        }
    }
    let mut on_unwind = OnUnwind(Some(abandon));
    let token = waiter.wait(reason, deadline);
    on_unwind.0 = None; // returned normally: the caller handles every token
    token
}

/// The body of an `abandon` closure: claims `waiter` for cancellation and `withdraw`s its
/// entry; if a notifier claimed it first, `give_back(token)` returns what was handed over.
pub(crate) fn abandon(waiter: &Waiter, withdraw: impl FnOnce(), give_back: impl FnOnce(usize)) {
    if waiter.try_select(CANCELLED) {
        withdraw();
    } else {
        give_back(waiter.selected());
    }
}

/// How long a blocking call made by a fiber that shutdown is unwinding (a destructor taking a
/// lock) keeps retrying before it gives up. Such a fiber cannot park any more. The holder is
/// then a fiber being unwound by another worker (~3 µs each, ARCHITECTURE §2) or a thread, so
/// 1 s is generous; past it the holder is parked on this very worker, which cannot unwind it
/// while we wait: a panic with a message beats a silent hang.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Retries `attempt` while yielding the OS thread, for up to [`CANCEL_GRACE`]; used when a
/// blocking call (`what`) is made by a fiber that shutdown is unwinding.
///
/// # Panics
/// If `attempt` keeps failing for `CANCEL_GRACE`.
pub(crate) fn while_cancelled<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = attempt() {
            return v;
        }
        if start.elapsed() > CANCEL_GRACE {
            panic!(
                "fibra::sync::{what}: the runtime is shutting down and is unwinding this fiber, \
                 which can no longer park; the resource stayed unavailable for {CANCEL_GRACE:?}. \
                 Use the `try_`/`_timeout` variants in destructors that may run at shutdown."
            );
        }
        std::thread::yield_now();
    }
}
