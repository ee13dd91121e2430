//! [`Sleep`]: a future that completes at a deadline, on the polling worker's timers.
//!
//! # Arming
//! A `Sleep` costs nothing until a poll finds its deadline ahead. Then it allocates its
//! `TaskTimer` (once) and inserts an entry into the timers of the worker the poll runs on,
//! beside the fibers' timed parks (`timers.rs`, `Target::Task`). The entry carries the
//! timer's generation; a new deadline ([`Sleep::reset`]), completion or drop bumps it, so the
//! old entry goes stale and is swept like the entry of a fiber's wait that ended early (no
//! heap removal).
//! ```text
//! poll (deadline ahead):  1. lock waker slot, store cx.waker()   2. if not armed for this
//!                            deadline: generation += 1, insert (deadline, generation)
//! worker (entry due):     a. lock waker slot; if generation unchanged: take the waker
//!                         b. unlock; wake it (a fiber's waker: unpark and queue here)
//! ```
//! The waker slot's mutex orders 1 against a: either the worker finds the new waker, or the
//! poll that follows the wake finds the deadline passed.
//!
//! # Off a worker
//! A `Sleep` polled on a thread that is no fibra worker (another executor's) has no timers
//! to join: it arms a short-lived helper thread that sleeps until the deadline and wakes it.
//! That costs a thread per arming; poll timers on fibra workers (inside
//! [`fibra::await_future`](crate::await_future)) where it matters.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sched::context;

/// A future that completes once its deadline has passed, woken by fibra's timers: the
/// `async` counterpart of [`fibra::sleep`](crate::sleep), for code that awaits (hyper's
/// `rt::Timer`, `select`s of futures) rather than parks.
///
/// Polled inside a fiber (through [`fibra::await_future`](crate::await_future)) it arms the
/// worker's own timers, as [`fibra::sleep`](crate::sleep) does; on any other thread a
/// helper thread wakes it. Dropping it disarms it.
///
/// ```
/// use std::time::{Duration, Instant};
/// # fibra::run(|| {
/// let t = Instant::now();
/// fibra::await_future(fibra::Sleep::after(Duration::from_millis(5)));
/// assert!(t.elapsed() >= Duration::from_millis(5));
/// # });
/// ```
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    timer: Option<Arc<TaskTimer>>,
    /// The deadline the timers hold an entry for (`None`: not armed).
    armed: Option<Instant>,
}

/// The part of a [`Sleep`] its timer entry shares.
#[derive(Debug, Default)]
pub(crate) struct TaskTimer {
    /// Bumped at each arming and disarming; an entry armed with an older value is stale.
    generation: AtomicU32,
    /// The waker of the last poll; taken when the entry fires.
    waker: Mutex<Option<Waker>>,
}

impl TaskTimer {
    /// The current generation. Acquire pairs with `disarm`'s Release increment.
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Acquire)
    }

    /// The entry armed with `generation` fell due: the waker to wake, if that arming is
    /// still the live one (step a).
    pub(crate) fn fire(&self, generation: u32) -> Option<Waker> {
        let mut w = self.lock();
        if self.generation() != generation {
            return None;
        }
        w.take()
    }

    /// Makes every armed entry stale; returns the new generation. Release pairs with the
    /// Acquire of `generation`, read by `fire` and by the timers' sweep.
    fn disarm(&self) -> u32 {
        self.generation.fetch_add(1, Release).wrapping_add(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sleep {
    /// A `Sleep` that completes `dur` from now (never, if that is beyond what [`Instant`]
    /// can hold).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let s = fibra::Sleep::after(std::time::Duration::from_millis(1));
    /// fibra::await_future(s);
    /// # });
    /// ```
    pub fn after(dur: Duration) -> Sleep {
        let now = Instant::now();
        // ~30 years: far enough to be never, near enough not to overflow `Instant`.
        let far = now + Duration::from_secs(86_400 * 365 * 30);
        Sleep::until(now.checked_add(dur).unwrap_or(far))
    }

    /// A `Sleep` that completes once `deadline` has passed.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2);
    /// fibra::await_future(fibra::Sleep::until(deadline));
    /// assert!(std::time::Instant::now() >= deadline);
    /// # });
    /// ```
    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            timer: None,
            armed: None,
        }
    }

    /// When it completes.
    ///
    /// ```
    /// let deadline = std::time::Instant::now();
    /// assert_eq!(fibra::Sleep::until(deadline).deadline(), deadline);
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (earlier or later), even after it completed: the next poll waits
    /// for the new one. A waker from an earlier poll is kept, so a pending `Sleep` reset
    /// while nobody polls it still wakes its task at the new deadline.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// # fibra::run(|| {
    /// let mut s = fibra::Sleep::after(Duration::from_secs(3600));
    /// s.reset(Instant::now() + Duration::from_millis(1));
    /// fibra::await_future(&mut s); // an hour early
    /// # });
    /// ```
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if self.armed.is_some_and(|a| a != deadline) {
            self.armed = None;
            let has_waker = self.timer.as_ref().is_some_and(|t| t.lock().is_some());
            if has_waker && Instant::now() < deadline {
                self.arm();
            } else if let Some(t) = &self.timer {
                t.disarm();
            }
        }
    }

    /// Has the deadline passed?
    ///
    /// ```
    /// let s = fibra::Sleep::until(std::time::Instant::now());
    /// assert!(s.is_elapsed());
    /// ```
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Inserts an entry for `deadline` into this worker's timers (or a helper thread's).
    fn arm(&mut self) {
        let timer = self.timer.get_or_insert_with(Arc::default).clone();
        let generation = timer.disarm();
        let deadline = self.deadline;
        self.armed = Some(deadline);
        let task = timer.clone();
        let on_worker = context::with_worker(|w| {
            w.map(|w| w.timers().insert_task(deadline, generation, task))
                .is_some()
        });
        if !on_worker {
            let helper = move || {
                while Instant::now() < deadline && timer.generation() == generation {
                    std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
                }
                if let Some(w) = timer.fire(generation) {
                    w.wake();
                }
            };
            // Without a thread nothing would ever wake the task: that is fatal to it.
            if let Err(e) = std::thread::Builder::new()
                .name("fibra-sleep".into())
                .spawn(helper)
            {
                panic!("fibra::Sleep: cannot start its timer thread off a worker: {e}");
            }
        }
    }

    fn disarm(&mut self) {
        if self.armed.take().is_some() {
            if let Some(t) = &self.timer {
                t.disarm();
                // The entry may outlive us until swept: it must not keep a fiber alive.
                drop(t.lock().take());
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.is_elapsed() {
            this.disarm();
            return Poll::Ready(());
        }
        {
            let timer = this.timer.get_or_insert_with(Arc::default);
            let mut w = timer.lock();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        if this.armed != Some(this.deadline) {
            this.arm();
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}
