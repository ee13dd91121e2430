//! Timer channels: [`after`], [`at`], [`tick`], and [`never`].
//!
//! # Design
//! The clock is the channel's sender. A timer channel is an ordinary `Chan` created without a
//! `Sender` (so it never disconnects) that carries a [`Timer`]: a receive that finds the
//! buffer empty asks the timer, under the lock, whether an item is due, and a waiting
//! receiver (or `select!`) waits with the timer's due time as a deadline, then asks again.
//! So nothing runs and nothing is armed until somebody waits: an `after` dropped unfired
//! costs its one allocation and nothing else. Inside a runtime the wait is the fiber's
//! ordinary timed park (the worker's timer heap); on a plain thread it is
//! `std::thread::park_timeout`. Only `recv_async` needs a helper to wake its task when the
//! item falls due (`wake_at`).
//! Rejected: a fiber (or thread) per timer that sleeps and then sends (it lives until the
//! deadline even when the receiver is long gone: `after(1h)` in a loop piles them up).

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::channel::Chan;
use super::error::TryRecvError;
use super::receiver::Receiver;

/// What an `after`/`tick` channel delivers, and when.
pub(crate) struct Timer<T> {
    /// When the next item is due; `None`: never again (an `after` that delivered, or a
    /// deadline beyond what `Instant` can hold).
    next: Option<Instant>,
    /// `tick`'s period; `None` for `after`.
    period: Option<Duration>,
    /// Turns the due time into the item (the identity: timer channels carry `Instant`s).
    make: fn(Instant) -> T,
}

impl<T> Timer<T> {
    /// Under the lock: when the next item is due.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.next
    }

    /// Under the lock: the item due at `now`, if any. A tick that fell behind delivers one
    /// item and schedules the next a whole period after `now`: missed ticks are dropped, not
    /// delivered in a burst.
    pub(crate) fn fire(&mut self, now: Instant) -> Result<T, TryRecvError> {
        match self.next {
            Some(due) if now >= due => {
                self.next = self.period.and_then(|p| now.checked_add(p));
                Ok((self.make)(due))
            }
            _ => Err(TryRecvError::Empty),
        }
    }
}

fn timer_channel(next: Option<Instant>, period: Option<Duration>) -> Receiver<Instant> {
    let timer = Timer {
        next,
        period,
        make: |due| due,
    };
    Receiver {
        chan: Arc::new(Chan::with_timer(1, Some(Box::new(timer)))),
    }
}

/// A channel that delivers one message, the `Instant` it was due, once `duration` has
/// passed (crossbeam-channel's `after`). It never disconnects: after its message a `recv`
/// waits for ever, so in a loop use it in `select!` with other arms.
///
/// Nothing is armed until a receiver waits, so creating one and dropping it unfired is
/// cheap (one allocation). A waiting fiber parks on its worker's timers; a plain thread
/// blocks in `std::thread::park_timeout`.
///
/// ```
/// use std::time::{Duration, Instant};
/// # fibra::run(|| {
/// let start = Instant::now();
/// let (_tx, rx) = fibra::chan::unbounded::<u8>();
/// let timeout = fibra::chan::after(Duration::from_millis(5));
/// fibra::select! {
///     recv(rx) -> _ => unreachable!(),
///     recv(timeout) -> at => assert!(at.unwrap() >= start + Duration::from_millis(5)),
/// }
/// # });
/// ```
pub fn after(duration: Duration) -> Receiver<Instant> {
    timer_channel(Instant::now().checked_add(duration), None)
}

/// A channel that delivers one message, `when`, once `when` has passed (as [`after`]).
///
/// ```
/// use std::time::{Duration, Instant};
/// # fibra::run(|| {
/// let when = Instant::now() + Duration::from_millis(2);
/// assert_eq!(fibra::chan::at(when).recv(), Ok(when));
/// # });
/// ```
pub fn at(when: Instant) -> Receiver<Instant> {
    timer_channel(Some(when), None)
}

/// A channel that delivers the due `Instant` every `period` (crossbeam-channel's `tick`).
/// A receiver that falls behind gets one message and the next a whole `period` later:
/// missed ticks are dropped, never delivered in a burst. It never disconnects.
///
/// Cheap when idle, as [`after`]: nothing runs between the receives.
///
/// ```
/// use std::time::Duration;
/// # fibra::run(|| {
/// let ticks = fibra::chan::tick(Duration::from_millis(2));
/// let a = ticks.recv().unwrap();
/// let b = ticks.recv().unwrap();
/// assert!(b >= a + Duration::from_millis(2));
/// # });
/// ```
pub fn tick(period: Duration) -> Receiver<Instant> {
    timer_channel(Instant::now().checked_add(period), Some(period))
}

/// A channel that never delivers and never disconnects: a `select!` arm on it is never
/// chosen, which switches an arm off (`recv(rx.as_ref().unwrap_or(&never()))`).
///
/// ```
/// use std::time::Duration;
/// # fibra::run(|| {
/// let off: Option<fibra::chan::Receiver<u8>> = None;
/// let got = fibra::select! {
///     recv(off.as_ref().unwrap_or(&fibra::chan::never())) -> _ => "message",
///     default(Duration::from_millis(1)) => "timeout",
/// };
/// assert_eq!(got, "timeout");
/// # });
/// ```
pub fn never<T>() -> Receiver<T> {
    Receiver {
        chan: Arc::new(Chan::with_timer(0, None)),
    }
}

/// For a pending `recv_async` on a timer channel: wakes `waker` at `due`, from a fiber
/// sleeping on the runtime's timers, or from a thread outside a runtime.
pub(crate) fn wake_at(due: Instant, waker: Waker) {
    let wake = move || {
        crate::sleep_until(due);
        waker.wake();
    };
    let wake = match crate::Builder::new().name("chan-timer").spawn(wake.clone()) {
        Ok(_) => return,
        Err(_) => wake, // no runtime here, or it is shutting down
    };
    let _ = std::thread::Builder::new()
        .name("fibra-chan-timer".into())
        .spawn(wake);
}
