//! [`RawMutex`]: the state word and the wait list, without the data. The protocol is
//! written once, in the parent module's docs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loom::lock::Mutex as QueueLock;
use crate::loom::sync::atomic::AtomicU32;
use crate::loom::Ordering::*;
use crate::park::ParkReason;
use crate::sync::wait;
use crate::sync::waiter::{WaitList, Waiter};

const LOCKED: u32 = 1;
const QUEUED: u32 = 1 << 1;
const WOKEN: u32 = 1 << 2;
const HANDOFF: u32 = 1 << 3;
const UNCOUNTED: u32 = 1 << 4;
const FLAGS: u32 = 0xFF;
const B_SHIFT: u32 = 8;
const LIMIT_SHIFT: u32 = 16;

/// Claim token: the lock was handed over; the waiter owns it.
const GRANTED: usize = 1;
/// Claim token: the lock was freed; race for it.
const TRY_AGAIN: usize = 2;

/// Barges a queued fiber tolerates before unlock hands it the lock. The bound is
/// MAX_BARGES + N - 1 acquisitions for N contenders: 135 for the 8 fibers, a few µs of
/// critical sections of ~20-50 ns. Each hand-off leaves the lock idle for the grantee's
/// trip to a worker (~1-10 µs; everyone else queues and parks meanwhile), so K sets how
/// often a contended lock pays that: `fibra-lab child chan fibra 100000 --workers 2 --case
/// mutex`, 8 fibers on 2 workers, 10 interleaved runs: K = 8: 139 ns a lock/unlock (median),
/// 32: 71, 64: 57, **128: 37** (Go's `sync.Mutex`, bounded by time only: 27-34). Half the
/// u8 counter's range, so B - stamp never wraps. Shrunk under loom so the models reach
/// hand-off.
pub(crate) const MAX_BARGES: u8 = if cfg!(loom) { 2 } else { 128 };
/// Go's starvationThresholdNs: a waiter that keeps losing for longer than this is handed the
/// lock whatever the count says (a long critical section makes each loss costly). Reading the
/// clock costs ~80 ns, so it is read only when a woken waiter loses.
const STARVATION: Duration = Duration::from_millis(1);
/// Spins before queuing, for threads and for a woken waiter. A critical section of a few plain
/// writes takes ~20-50 ns; 64 `spin_loop` hints (~1-3 µs) cover it with room to spare, and
/// stay well below the ~1 µs+ of a park and wake-up round trip times two. A *newcomer fiber*
/// tries once and queues: its spin would block its worker, where the holder may be a parked
/// fiber, and a fiber spinning unqueued can be overtaken by any number of acquisitions,
/// outside the bound (`tests/sync_fairness.rs` saw 17-22 of a bound of 16 with it).
/// Shrunk under loom (each spin is a branch there).
const SPINS: u32 = if cfg!(loom) { 2 } else { 64 };

fn barges(s: u32) -> u8 {
    (s >> B_SHIFT) as u8
}

fn limit(s: u32) -> u8 {
    (s >> LIMIT_SHIFT) as u8
}

/// `s`'s flags with the counters replaced.
fn with_counters(s: u32, barges: u8, limit: u8) -> u32 {
    (s & FLAGS) | u32::from(barges) << B_SHIFT | u32::from(limit) << LIMIT_SHIFT
}

/// Zeroes everything but LOCKED once nobody waits (QUEUED and WOKEN clear).
fn settle(s: u32) -> u32 {
    if s & (QUEUED | WOKEN) == 0 {
        s & LOCKED
    } else {
        s
    }
}

/// The state after a barge from `s`, or `None` if the lock is held or in hand-off mode.
fn barge(s: u32) -> Option<u32> {
    if s & (LOCKED | HANDOFF) != 0 {
        return None;
    }
    if s & (QUEUED | WOKEN) == 0 || s & UNCOUNTED != 0 {
        return Some(s | LOCKED); // nobody waits, or a thread: nobody is charged
    }
    let b = barges(s).wrapping_add(1);
    let handoff = if b == limit(s) { HANDOFF } else { 0 };
    Some(with_counters(s | LOCKED | handoff, b, limit(s)))
}

/// The state after the woken waiter takes the free lock (allowed in HANDOFF: it is the oldest).
fn take_woken(s: u32) -> Option<u32> {
    (s & LOCKED == 0).then(|| settle((s | LOCKED) & !WOKEN))
}

/// A queue entry's registered token: stamp, flags, and bit 0 so it is never WAITING.
fn entry_token(stamp: u8, starving: bool, thread: bool) -> usize {
    usize::from(stamp) << 3 | usize::from(thread) << 2 | usize::from(starving) << 1 | 1
}

fn stamp(token: usize) -> u8 {
    (token >> 3) as u8
}

fn is_thread(token: usize) -> bool {
    token & 4 != 0
}

/// True if the waiter queued under `token` must be handed the lock rather than race for it:
/// it is starving, or a fiber overtaken MAX_BARGES times.
fn due(s: u32, token: usize) -> bool {
    token & 2 != 0 || !is_thread(token) && barges(s).wrapping_sub(stamp(token)) >= MAX_BARGES
}

/// The counting part of the state when the waiter queued under `token` becomes the oldest.
fn counting_for(s: u32, token: usize) -> u32 {
    let uncounted = if is_thread(token) { UNCOUNTED } else { 0 };
    let limit = stamp(token).wrapping_add(MAX_BARGES);
    with_counters((s & !UNCOUNTED) | uncounted, barges(s), limit)
}

/// True if the caller is a fiber. Loom models are plain threads standing in for fibers.
fn in_fiber() -> bool {
    cfg!(loom) || crate::sched::context::with_current_fiber(|f| f.is_some())
}

/// A waiter's place, kept across the races it loses.
struct Ticket {
    stamp: u8,
    starving: bool,
    thread: bool,
    first_loss: Option<Instant>,
}

impl Ticket {
    fn token(&self) -> usize {
        entry_token(self.stamp, self.starving, self.thread)
    }

    /// Records a lost race; the second loss more than [`STARVATION`] after the first marks the
    /// waiter starving. The clock is never read on the fast paths.
    fn lost(&mut self) {
        if cfg!(loom) {
            return; // loom models must be deterministic; they reach hand-off by count
        }
        let now = Instant::now();
        match self.first_loss {
            None => self.first_loss = Some(now),
            Some(t) => self.starving |= now.duration_since(t) > STARVATION,
        }
    }
}

/// The lock without the data: the state word and the wait list. Also used by `Condvar`.
pub(crate) struct RawMutex {
    state: AtomicU32,
    queue: QueueLock<WaitList>,
    /// The id of the fiber that last took the lock through a `MutexGuard` (0: a thread).
    /// Stale once unlocked; read only by waiters about to park, for `fibra::debug`'s
    /// deadlock report. Not part of the lock protocol, hence a std atomic even under loom.
    holder: std::sync::atomic::AtomicU64,
}

/// The calling fiber's id, or 0 on a plain thread.
fn current_fiber_id() -> u64 {
    crate::sched::context::with_current_fiber(|f| f.map_or(0, |h| h.identity.id))
}

impl RawMutex {
    crate::loom::const_fn! {
        pub(crate) fn new() -> RawMutex {
            RawMutex {
                state: AtomicU32::new(0),
                queue: QueueLock::new(WaitList::new()),
                holder: std::sync::atomic::AtomicU64::new(0),
            }
        }
    }

    /// Any thread. Takes the lock if it is free and not reserved for a starving waiter.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.try_lock_fast() || self.try_lock_slow()
    }

    /// One CAS; fails if the lock is held or anyone waits for it.
    #[inline]
    fn try_lock_fast(&self) -> bool {
        // Acquire pairs with the Release of every store/CAS that clears LOCKED (`unlock`,
        // `unlock_slow`, `wake_or_hand_off`): the previous critical section happens-before ours.
        self.state
            .compare_exchange(0, LOCKED, Acquire, Relaxed)
            .is_ok()
    }

    /// Barges (see [`barge`]) unless the lock is held or in hand-off mode.
    #[cold]
    fn try_lock_slow(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while let Some(new) = barge(s) {
            // Acquire: as in `try_lock_fast`.
            match self.state.compare_exchange_weak(s, new, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// Locks, parking with `reason` until `deadline`. False on timeout, or if the calling
    /// fiber is being unwound by shutdown.
    #[inline]
    pub(crate) fn lock(&self, reason: ParkReason, deadline: Option<Instant>) -> bool {
        self.try_lock_fast() || self.lock_slow(reason, deadline)
    }

    #[cold]
    fn lock_slow(&self, reason: ParkReason, deadline: Option<Instant>) -> bool {
        let park = |w: &Arc<Waiter>| {
            // For deadlock reports: what we wait for, and who held it as we queued.
            let holder = self.holder.load(std::sync::atomic::Ordering::Relaxed);
            let me = crate::park::Caller::current();
            me.note_waiting(std::ptr::from_ref(self) as usize, holder);
            wait::wait(w, reason, deadline, || self.abandon(w))
        };
        let locked = self.lock_contended(deadline, Waiter::current, park);
        crate::park::Caller::current().note_waiting(0, 0);
        locked
    }

    /// The new holder, just after taking the lock: one relaxed store (plus finding the
    /// current fiber), for `fibra::debug`'s deadlock report.
    #[inline]
    pub(crate) fn note_holder(&self) {
        self.holder
            .store(current_fiber_id(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The contended path, with waiting abstracted so the loom models can spin instead of
    /// park: `park(waiter)` returns the claiming token.
    fn lock_contended(
        &self,
        deadline: Option<Instant>,
        new_waiter: impl Fn() -> Arc<Waiter>,
        mut park: impl FnMut(&Arc<Waiter>) -> usize,
    ) -> bool {
        let fiber = in_fiber();
        if self.spin(false, if fiber { 1 } else { SPINS }) {
            return true;
        }
        let mut waiter = new_waiter();
        let Some(mut ticket) = self.enqueue(&waiter, fiber) else {
            return true;
        };
        loop {
            match park(&waiter) {
                GRANTED => return true, // the claim's Release published the lock to us
                TRY_AGAIN => {}
                _ => {
                    self.withdraw(&waiter); // TIMED_OUT or CANCELLED
                    return false;
                }
            }
            if self.spin(true, SPINS) {
                return true;
            }
            ticket.lost();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.give_up_woken(); // true if the lock came free meanwhile
            }
            waiter = new_waiter();
            if self.requeue(&waiter, &ticket) {
                return true;
            }
        }
    }

    /// Tries `spins` times for the lock. A newcomer spins only while nobody waits: once
    /// someone does, it queues at once (a newcomer spinning behind waiters could be overtaken
    /// by any number of them before it queues), and never in hand-off mode. The `woken`
    /// waiter takes the lock even in hand-off mode: it is the oldest.
    fn spin(&self, woken: bool, spins: u32) -> bool {
        for _ in 0..spins {
            let s = self.state.load(Relaxed);
            if !woken && s & (QUEUED | WOKEN | HANDOFF) != 0 {
                // One barge attempt, then queue. Acquire: as in `try_lock_fast`.
                let won = |new| {
                    self.state
                        .compare_exchange(s, new, Acquire, Relaxed)
                        .is_ok()
                };
                return barge(s).is_some_and(won);
            }
            let new = if woken { take_woken(s) } else { barge(s) };
            if let Some(new) = new {
                // Acquire: as in `try_lock_fast`.
                if self
                    .state
                    .compare_exchange(s, new, Acquire, Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            crate::loom::hint::spin_loop();
        }
        false
    }

    /// Under the queue lock: barges (`None`), or queues `waiter` (a `fiber`'s or a thread's)
    /// at the back with the current barge count as its stamp.
    fn enqueue(&self, waiter: &Arc<Waiter>, fiber: bool) -> Option<Ticket> {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order, barged) = match barge(s) {
                Some(new) => (new, Acquire, true), // as in `try_lock_fast`
                // Only flags and counters; the queue lock orders the push. Held (or reserved
                // for the WOKEN one), so an unlock or that waiter will wake us.
                None if s & (QUEUED | WOKEN) == 0 => {
                    let first = entry_token(0, false, !fiber); // settled: B is 0
                    (counting_for(s | QUEUED, first), Relaxed, false)
                }
                None => (s | QUEUED, Relaxed, false),
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if barged => return None,
                Ok(_) => {
                    let ticket = Ticket {
                        stamp: barges(new),
                        starving: false,
                        thread: !fiber,
                        first_loss: None,
                    };
                    queue.push(waiter.clone(), ticket.token());
                    return Some(ticket);
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// The woken waiter lost the race: under the queue lock, takes the lock if it came free
    /// (true), else goes back to the front with its stamp and clears WOKEN (false).
    fn requeue(&self, waiter: &Arc<Waiter>, ticket: &Ticket) -> bool {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order) = match take_woken(s) {
                Some(new) => (new, Acquire), // as in `try_lock_fast`
                None => {
                    // Seen LOCKED: the holder's unlock will find WOKEN clear and wake us.
                    let handoff = if ticket.starving { HANDOFF } else { 0 };
                    ((s | QUEUED | handoff) & !WOKEN, Relaxed)
                }
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if s & LOCKED == 0 => return true,
                Ok(_) => {
                    queue.push_front(waiter.clone(), ticket.token());
                    return false;
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// The woken waiter stops racing (deadline, shutdown). Under the queue lock, so that it
    /// cannot slip between an unlocker's claim and its state store: takes the lock if it is
    /// free (true: the caller owns it), else clears WOKEN while LOCKED is seen (false).
    fn give_up_woken(&self) -> bool {
        let _queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order) = match take_woken(s) {
                Some(new) => (new, Acquire), // as in `try_lock_fast`
                None => (settle(s & !WOKEN), Relaxed),
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) => return s & LOCKED == 0,
                Err(actual) => s = actual,
            }
        }
    }

    /// The holder only.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release pairs with the Acquire of whichever CAS takes LOCKED next.
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut s = self.state.load(Relaxed);
        loop {
            let new = if s & WOKEN != 0 {
                s & !LOCKED // someone is racing for it already (alone, in HANDOFF)
            } else if s & QUEUED == 0 {
                0 // nobody waits: leftover counters only
            } else {
                break;
            };
            // Release: as in `unlock`.
            match self.state.compare_exchange_weak(s, new, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        if let Some(woken) = self.wake_or_hand_off() {
            woken.wake();
        }
    }

    /// The holder, with WOKEN clear and QUEUED seen: claims the front waiter, GRANTED or
    /// TRY_AGAIN, and returns it to be woken once the queue lock is released.
    fn wake_or_hand_off(&self) -> Option<Arc<Waiter>> {
        let mut queue = self.queue.lock();
        // Frozen until our store: we hold LOCKED (no barge, no woken take), WOKEN is clear and
        // only an unlocker sets it, and every other writer needs the queue lock we hold.
        let s = self.state.load(Relaxed);
        let mut granted = false;
        let claimed = queue.claim_front(|token| {
            granted = due(s, token);
            if granted {
                GRANTED
            } else {
                TRY_AGAIN
            }
        });
        let Some((waiter, token)) = claimed else {
            // Every entry had given up: the list is empty.
            self.state.store(0, Release); // Release: as in `unlock`
            return None;
        };
        let new = if granted {
            // LOCKED stays: the claim's Release (pairs with `Waiter::selected`'s Acquire)
            // publishes our critical section. The grantee's unlock sees QUEUED in the old
            // state, so it takes the queue lock and sees this store.
            match queue.front() {
                None => LOCKED,
                Some(next) => {
                    let handoff = if due(s, next) { HANDOFF } else { 0 };
                    counting_for(LOCKED | QUEUED | handoff | (s & !FLAGS), next)
                }
            }
        } else {
            // Free the lock for the woken waiter and any barger; HANDOFF off: it is not due.
            let queued = if queue.is_empty() { 0 } else { QUEUED };
            counting_for(WOKEN | queued | (s & !FLAGS), token)
        };
        // Release: as in `unlock` (the woken waiter's or a barger's CAS Acquires it).
        self.state.store(new, Release);
        Some(waiter)
    }

    /// After the waiter claimed itself (timeout, cancel): removes its entry.
    fn withdraw(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.queue.lock();
        queue.remove(waiter);
        if queue.is_empty() {
            let mut s = self.state.load(Relaxed);
            // Only flags and counters: no data is published.
            while let Err(actual) =
                self.state
                    .compare_exchange_weak(s, settle(s & !QUEUED), Relaxed, Relaxed)
            {
                s = actual;
            }
        }
    }

    /// The fiber is unwound while parked: withdraw, or pass on whatever it was claimed for.
    fn abandon(&self, waiter: &Arc<Waiter>) {
        wait::abandon(
            waiter,
            || self.withdraw(waiter),
            |token| match token {
                GRANTED => self.unlock(),
                TRY_AGAIN if self.give_up_woken() => self.unlock(),
                _ => {}
            },
        );
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests;
