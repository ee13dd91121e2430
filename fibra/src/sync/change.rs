//! Waiting for a change of state kept under a lock, where every change wakes every waiter:
//! the blocking wait ([`block_until`]) and its `async` twin ([`AsyncWait`]). Used by
//! `fibra::chan::{broadcast, watch}`, whose receivers all want each new item or value.
//!
//! # Protocol (no lost wake-up)
//! ```text
//! Wait:    lock; check the state -> ready: return it
//!          push (waiter, CHANGED); unlock; park; repeat from the top
//! Change:  lock; change the state; notify_all; unlock
//! ```
//! The check and the push happen under the same lock as the change, so a waiter either sees
//! the change or is in the list when `notify_all` runs. A claim only means "look again", and
//! every waiter gets one per change, so a waiter that leaves (timeout, shutdown, a dropped
//! future) has nothing to pass on.

use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use super::wait;
use super::waiter::{WaitList, Waiter, TIMED_OUT, WAITING};
use crate::loom::lock::Mutex as Lock;
use crate::park::{self, ParkReason};

/// The token a change claims its waiters with.
pub(crate) const CHANGED: usize = 1;

/// Why [`block_until`] returned without the state becoming ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// The deadline passed.
    TimedOut,
    /// The calling fiber is being unwound by shutdown: it cannot park.
    Cancelled,
}

/// Parks the calling fiber (or thread) until `check`, run on the state under `lock`, returns
/// `Some`. `list` finds the state's wait list; `object` (an address) is what `fibra::debug`
/// shows the fiber waiting on. What `check` returns leaves the lock with it, so values it
/// takes out can be cloned or dropped after the lock is released.
pub(crate) fn block_until<S, R>(
    lock: &Lock<S>,
    list: impl Fn(&mut S) -> &mut WaitList,
    mut check: impl FnMut(&mut S) -> Option<R>,
    reason: ParkReason,
    deadline: Option<Instant>,
    object: usize,
) -> Result<R, GaveUp> {
    loop {
        let waiter = {
            let mut st = lock.lock();
            if let Some(ready) = check(&mut st) {
                return Ok(ready);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(GaveUp::TimedOut);
            }
            if park::cancelling() {
                return Err(GaveUp::Cancelled);
            }
            let waiter = Waiter::current();
            list(&mut st).push(waiter.clone(), CHANGED);
            waiter
        };
        let withdraw = || list(&mut lock.lock()).remove(&waiter);
        park::Caller::current().note_waiting(object, 0); // for `fibra::debug`
        let abandon = || wait::abandon(&waiter, withdraw, |_| {});
        let token = wait::wait(&waiter, reason, deadline, abandon);
        if token == CHANGED {
            continue;
        }
        withdraw(); // TIMED_OUT or CANCELLED: our entry may still be queued
                    // A change may have landed as we gave up: take it rather than report a timeout.
        if let Some(ready) = check(&mut lock.lock()) {
            return Ok(ready);
        }
        return Err(if token == TIMED_OUT {
            GaveUp::TimedOut
        } else {
            GaveUp::Cancelled
        });
    }
}

/// An `async` waiter's place in a wait list: registered by a `poll` that found nothing,
/// replaced when the task's waker changes or a change claimed it, and removed when the future
/// completes or is dropped. Every method runs under the lock that guards the list.
#[derive(Default)]
pub(crate) struct AsyncWait {
    waiter: Option<Arc<Waiter>>,
}

impl AsyncWait {
    pub(crate) const fn new() -> AsyncWait {
        AsyncWait { waiter: None }
    }

    /// Under the lock, after the check found nothing: makes sure the next change wakes
    /// `waker`. Keeps the entry a previous poll left if it still waits with the same waker.
    pub(crate) fn register(&mut self, list: &mut WaitList, waker: &Waker) {
        if let Some(old) = self.waiter.take() {
            // Only changes claim these waiters, under this lock: a claimed one is already off
            // the list, an unclaimed one stays on it until removed here.
            if old.selected() == WAITING {
                if old.will_wake(waker) {
                    self.waiter = Some(old);
                    return;
                }
                list.remove(&old);
            }
        }
        let waiter = Waiter::with_waker(waker.clone());
        list.push(waiter.clone(), CHANGED);
        self.waiter = Some(waiter);
    }

    /// True if an entry may still sit in the list (registered, not yet claimed): only then
    /// does [`cancel`](AsyncWait::cancel) need the lock. Any thread, no lock needed.
    pub(crate) fn is_queued(&self) -> bool {
        self.waiter
            .as_ref()
            .is_some_and(|w| w.selected() == WAITING)
    }

    /// Under the lock: takes the entry off the list (the future is done or dropped).
    pub(crate) fn cancel(&mut self, list: &mut WaitList) {
        if let Some(waiter) = self.waiter.take() {
            if waiter.selected() == WAITING {
                list.remove(&waiter);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    struct State {
        version: u32,
        waiters: WaitList,
    }

    fn bump(lock: &Lock<State>) {
        let mut st = lock.lock();
        st.version += 1;
        st.waiters.notify_all();
    }

    /// Two threads wait for the version to move past 0; one change wakes both.
    #[test]
    fn one_change_wakes_every_waiter() {
        let lock = Arc::new(Lock::new(State {
            version: 0,
            waiters: WaitList::new(),
        }));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    let seen = |st: &mut State| (st.version > 0).then_some(st.version);
                    block_until(&lock, |s| &mut s.waiters, seen, ParkReason::User, None, 0)
                })
            })
            .collect();
        while lock.lock().waiters.len() < 2 {
            std::thread::yield_now();
        }
        bump(&lock);
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(1));
        }
        assert!(lock.lock().waiters.is_empty());
    }

    /// A timed-out wait leaves no entry behind, and reports a change that landed meanwhile.
    #[test]
    fn a_timeout_withdraws() {
        let lock = Lock::new(State {
            version: 0,
            waiters: WaitList::new(),
        });
        let deadline = Instant::now() + Duration::from_millis(2);
        let never = |_: &mut State| None::<()>;
        let r = block_until(
            &lock,
            |s| &mut s.waiters,
            never,
            ParkReason::User,
            Some(deadline),
            0,
        );
        assert_eq!(r, Err(GaveUp::TimedOut));
        assert!(lock.lock().waiters.is_empty());
    }

    /// A future's entry is replaced, not duplicated, when it re-registers, and removed on
    /// cancel.
    #[test]
    fn async_registration_keeps_one_entry() {
        let mut list = WaitList::new();
        let mut wait = AsyncWait::new();
        let waker = Waker::noop();
        wait.register(&mut list, waker);
        wait.register(&mut list, waker);
        assert_eq!(list.len(), 1);
        assert!(wait.is_queued());
        list.notify_all();
        assert!(!wait.is_queued(), "claimed: off the list");
        wait.register(&mut list, waker);
        assert_eq!(list.len(), 1);
        wait.cancel(&mut list);
        assert!(list.is_empty());
        assert!(!wait.is_queued());
    }
}
