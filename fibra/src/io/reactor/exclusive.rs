//! One poller, many workers: whoever finds it free polls; nobody waits for the poller, and no
//! event is left behind in the kernel while every worker goes to sleep.
//!
//! One atomic word holds `POLLING` (a worker is polling) and `AGAIN` (someone asked for a
//! poll). A worker raises `AGAIN`; if nobody is polling it sets `POLLING` and polls, clearing
//! `AGAIN` before each poll, until it can swap `POLLING` (alone) back to 0. Every step is a
//! read-modify-write of the one word, so they are totally ordered: a request either comes
//! before the poller's final swap, which then fails and the poller polls again (after the
//! request, so it sees the event behind it), or after it, and then the requester finds
//! nobody polling and polls itself. Rejected: a `try_lock` plus a flag checked after
//! unlocking, the store-buffer pattern across two locations; loom found the lost request.

use crate::loom::sync::atomic::{AtomicU8, Ordering::*};

const POLLING: u8 = 1;
const AGAIN: u8 = 2;

/// The state word of one shared poller.
pub(crate) struct Exclusive {
    state: AtomicU8,
}

impl Exclusive {
    pub(crate) fn new() -> Exclusive {
        Exclusive {
            state: AtomicU8::new(0),
        }
    }

    /// Asks for a poll: runs `poll` (maybe several times) unless another thread is polling,
    /// which then polls again on this caller's behalf. `poll` never runs on two threads at once.
    pub(crate) fn poll(&self, mut poll: impl FnMut()) {
        // AcqRel throughout: the event that prompted this request happens-before the poll
        // that serves it.
        if self.state.fetch_or(AGAIN, AcqRel) & POLLING != 0 {
            return; // its final swap fails on AGAIN: it polls once more
        }
        if self.state.fetch_or(POLLING, AcqRel) & POLLING != 0 {
            return; // another thread got there first, after our AGAIN: same as above
        }
        loop {
            self.state.fetch_and(!AGAIN, AcqRel);
            poll();
            if self
                .state
                .compare_exchange(POLLING, 0, AcqRel, Acquire)
                .is_ok()
            {
                return;
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// Two events arrive, each followed by a worker's request for a poll; whatever the
    /// interleaving, polls never overlap (loom checks the cell) and the last one saw both.
    #[test]
    fn busy_shared_poller_strands_no_event() {
        loom::model(|| {
            let arrived = Arc::new(AtomicUsize::new(0));
            let ex = Arc::new(Exclusive::new());
            // What the latest poll saw (an `epoll_wait` reports every event queued before it).
            let seen = Arc::new(UnsafeCell::new(0usize));
            let worker =
                |arrived: Arc<AtomicUsize>, ex: Arc<Exclusive>, seen: Arc<UnsafeCell<usize>>| {
                    move || {
                        arrived.fetch_add(1, Release);
                        ex.poll(|| {
                            let n = arrived.load(Acquire);
                            // SAFETY (model): `Exclusive::poll` runs one poll at a time.
                            seen.with_mut(|s| unsafe { *s = n });
                        });
                    }
                };
            let t = thread::spawn(worker(arrived.clone(), ex.clone(), seen.clone()));
            worker(arrived.clone(), ex.clone(), seen.clone())();
            t.join().unwrap();
            // SAFETY (model): both threads are done.
            let last = seen.with(|s| unsafe { *s });
            assert_eq!(last, 2, "an event was left unpolled");
        });
    }
}
