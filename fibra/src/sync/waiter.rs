//! `Waiter` and `WaitList`: how every fibra primitive (locks, channels, `select!`) waits.
//!
//! A **waiter** is one blocked party (a fiber, or a plain thread) with a *selection word*:
//! 0 while it waits, then the token of whatever claimed it. A waiter can sit in several wait
//! lists at once (one per `select!` arm); the first notifier whose compare-and-swap wins
//! owns the waiter's wake-up, the others skip it. A timeout or cancellation claims the waiter
//! for itself the same way, so a wake-up and a timeout can never both "happen".
//!
//! A **wait list** is a FIFO of (waiter, token) owned by a primitive and protected by the
//! primitive's own lock (together with the state the waiters wait for), so "check the state,
//! then enqueue" is atomic with respect to notifiers.
//!
//! # Protocol (no lost wake-up)
//! ```text
//! Wait:   lock; check state; push (waiter, token); unlock; waiter.wait(deadline)
//! Notify: lock; change state; list.notify_one() (claims a waiter by CAS, wakes it); unlock
//! ```
//! The waiter re-reads `selected` after every park, so a spurious park return is harmless,
//! and a claim that lands before the waiter parks leaves the park's token set.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::loom::{AtomicUsize, Ordering::*};
use crate::park::{self, ParkReason};

/// The selection word's value while the waiter is still waiting.
pub(crate) const WAITING: usize = 0;
/// Claimed by the waiter's own timeout.
pub(crate) const TIMED_OUT: usize = usize::MAX;
/// Claimed because the runtime is unwinding the waiting fiber (shutdown).
pub(crate) const CANCELLED: usize = usize::MAX - 1;

/// One blocked fiber or thread; shared by every wait list it is registered in.
pub(crate) struct Waiter {
    selected: AtomicUsize,
    waker: Waker,
}

impl Waiter {
    /// A waiter for the calling fiber (or thread).
    pub(crate) fn current() -> Arc<Waiter> {
        Arc::new(Waiter {
            selected: AtomicUsize::new(WAITING),
            waker: park::current_waker(),
        })
    }

    /// Any thread: claims the waiter with `token` (nonzero). True if this call won; the
    /// caller then wakes it (`WaitList::notify_one` does both).
    pub(crate) fn try_select(&self, token: usize) -> bool {
        debug_assert_ne!(token, WAITING);
        // AcqRel: Release publishes what the notifier did before (e.g. handed over a value);
        // Acquire orders it after other claimers' failed attempts. Pairs with `wait`'s Acquire.
        self.selected
            .compare_exchange(WAITING, token, AcqRel, Acquire)
            .is_ok()
    }

    /// The token that claimed this waiter, or `WAITING`.
    pub(crate) fn selected(&self) -> usize {
        self.selected.load(Acquire) // pairs with `try_select`'s Release
    }

    pub(crate) fn wake(&self) {
        self.waker.wake_by_ref();
    }

    /// The waiter itself: parks until some token claims it or `deadline` passes (then it
    /// claims itself with `TIMED_OUT`, unless a notifier won the race). Returns the token.
    pub(crate) fn wait(&self, reason: ParkReason, deadline: Option<Instant>) -> usize {
        loop {
            let token = self.selected();
            if token != WAITING {
                return token;
            }
            if park::cancelling() && self.try_select(CANCELLED) {
                return CANCELLED;
            }
            match deadline {
                Some(d) if Instant::now() >= d => {
                    if self.try_select(TIMED_OUT) {
                        return TIMED_OUT;
                    }
                }
                Some(d) => crate::time::park_until(reason, d),
                None => park::park(reason),
            }
        }
    }
}

/// A FIFO of waiters with the token each was registered under. Not synchronised itself: it
/// lives under its primitive's lock.
#[derive(Default)]
pub(crate) struct WaitList {
    entries: VecDeque<(Arc<Waiter>, usize)>,
}

impl WaitList {
    /// `const`, so the primitives that hold one can be `static`s.
    pub(crate) const fn new() -> WaitList {
        WaitList {
            entries: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, waiter: Arc<Waiter>, token: usize) {
        self.entries.push_back((waiter, token));
    }

    /// Removes `waiter`'s entries (after it timed out, or was selected through another list).
    pub(crate) fn remove(&mut self, waiter: &Arc<Waiter>) {
        self.entries.retain(|(w, _)| !Arc::ptr_eq(w, waiter));
    }

    /// Claims and wakes the oldest waiter that is still waiting; returns it with its token.
    /// Entries whose waiter was claimed elsewhere (timeout, another select arm) are dropped.
    pub(crate) fn notify_one(&mut self) -> Option<(Arc<Waiter>, usize)> {
        while let Some((waiter, token)) = self.entries.pop_front() {
            if waiter.try_select(token) {
                waiter.wake();
                return Some((waiter, token));
            }
        }
        None
    }

    /// Claims and wakes every waiting waiter; returns how many.
    pub(crate) fn notify_all(&mut self) -> usize {
        let mut n = 0;
        while self.notify_one().is_some() {
            n += 1;
        }
        n
    }

    /// True if no entry is queued (stale ones count until a notify drops them).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries queued, stale ones included (tests watch queues fill up).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn notify_skips_waiters_claimed_elsewhere() {
        let a = Waiter::current();
        let b = Waiter::current();
        let mut list = WaitList::new();
        list.push(a.clone(), 1);
        list.push(b.clone(), 2);
        assert!(a.try_select(TIMED_OUT)); // `a` timed out before the notify
        let (w, token) = list.notify_one().unwrap();
        assert!(Arc::ptr_eq(&w, &b));
        assert_eq!(token, 2);
        assert_eq!(b.selected(), 2);
        assert!(list.notify_one().is_none());
    }

    #[test]
    fn wait_times_out_when_nobody_claims() {
        let w = Waiter::current();
        let deadline = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(w.wait(ParkReason::User, Some(deadline)), TIMED_OUT);
        assert!(Instant::now() >= deadline);
        assert!(
            !w.try_select(7),
            "a timed-out waiter cannot be claimed any more"
        );
    }

    #[test]
    fn a_thread_waits_for_a_claim_from_another_thread() {
        let w = Waiter::current();
        let mut list = WaitList::new();
        list.push(w.clone(), 42);
        let notifier = std::thread::spawn(move || list.notify_one().map(|(_, t)| t));
        assert_eq!(w.wait(ParkReason::User, None), 42);
        assert_eq!(notifier.join().unwrap(), Some(42));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Two notifiers (two `select!` arms) race the waiter's own timeout: exactly one claim
    /// wins, and the waiter reads the winner's token.
    #[test]
    fn one_claim_wins() {
        loom::model(|| {
            let w = Arc::new(Waiter {
                selected: AtomicUsize::new(WAITING),
                waker: Waker::noop().clone(),
            });
            let claimers: Vec<_> = (1..=2)
                .map(|token| {
                    let w = w.clone();
                    thread::spawn(move || w.try_select(token))
                })
                .collect();
            let timed_out = w.try_select(TIMED_OUT);
            let wins: Vec<bool> = claimers.into_iter().map(|t| t.join().unwrap()).collect();
            let total = wins.iter().filter(|&&x| x).count() + usize::from(timed_out);
            assert_eq!(total, 1);
            let sel = w.selected();
            if timed_out {
                assert_eq!(sel, TIMED_OUT);
            } else {
                assert_eq!(sel, if wins[0] { 1 } else { 2 });
            }
        });
    }
}

/// Added for `fibra::sync`'s `RwLock` (appended here to keep the API above stable).
impl WaitList {
    /// The token of the oldest entry whose waiter is still waiting; stale entries in front of
    /// it are dropped. Caller holds the primitive's lock.
    pub(crate) fn front(&mut self) -> Option<usize> {
        while let Some((waiter, token)) = self.entries.front() {
            if waiter.selected() == WAITING {
                return Some(*token);
            }
            self.entries.pop_front();
        }
        None
    }
}

/// Added for `fibra::sync::Mutex`'s barging protocol (appended here to keep the API above stable).
impl WaitList {
    /// Queues `waiter` at the front: a woken waiter that lost the race for the lock keeps its
    /// place ahead of everyone who queued after it.
    pub(crate) fn push_front(&mut self, waiter: Arc<Waiter>, token: usize) {
        self.entries.push_front((waiter, token));
    }

    /// Claims the oldest still-waiting entry with `claim(registered token)` instead of the
    /// registered token, removes it and returns it with its registered token, *without* waking
    /// it: the caller first publishes what the waiter will read, then calls `wake`. Entries
    /// claimed elsewhere are dropped; `claim` runs again for the next one.
    pub(crate) fn claim_front(
        &mut self,
        mut claim: impl FnMut(usize) -> usize,
    ) -> Option<(Arc<Waiter>, usize)> {
        while let Some((waiter, token)) = self.entries.pop_front() {
            if waiter.try_select(claim(token)) {
                return Some((waiter, token));
            }
        }
        None
    }
}

/// Added back for the loom models of `sync` (mutex, semaphore, once), which stand a spinning
/// loom thread in for a parked fiber; `fibra::chan` no longer needs it outside tests.
#[cfg(all(test, loom))]
impl Waiter {
    /// A waiter whose wake does nothing: the models spin on its selection word instead.
    pub(crate) fn spinning() -> Arc<Waiter> {
        Arc::new(Waiter {
            selected: AtomicUsize::new(WAITING),
            waker: Waker::noop().clone(),
        })
    }
}

/// Added for `fibra::chan::{broadcast, watch}`'s futures (appended here to keep the API above
/// stable).
impl Waiter {
    /// A waiter that wakes `waker` (an `async` task's) instead of the calling fiber.
    pub(crate) fn with_waker(waker: Waker) -> Arc<Waiter> {
        Arc::new(Waiter {
            selected: AtomicUsize::new(WAITING),
            waker,
        })
    }

    /// True if waking this waiter would wake the same task as `waker`.
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        self.waker.will_wake(waker)
    }
}

/// Added for `fibra::sync::RwLock`'s barging protocol (appended here to keep the API above stable).
impl WaitList {
    /// Pops the front entry and claims it with `claim`, *without* waking it; the waiter if the
    /// claim won. The caller has just read the entry's token with [`front`](WaitList::front)
    /// and already counted what the claim hands over (the waiter may run at once); on `None`
    /// the entry was claimed elsewhere meanwhile (timeout) and is gone: undo and look again.
    pub(crate) fn try_claim_front(&mut self, claim: usize) -> Option<Arc<Waiter>> {
        let (waiter, _) = self.entries.pop_front()?;
        waiter.try_select(claim).then_some(waiter)
    }
}
