//! [`RawRwLock`]: the state word and the wait list, without the data. The protocol is written
//! once, in the parent module's docs; the bound's constants come from the mutex's
//! (`sync/mutex/raw.rs`), whose barging this mirrors for writers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loom::lock::Mutex as QueueLock;
use crate::loom::sync::atomic::AtomicU64;
use crate::loom::Ordering::*;
use crate::park::ParkReason;
use crate::sync::wait;
use crate::sync::waiter::{WaitList, Waiter};

pub(super) const WRITER: u64 = 1;
pub(super) const QUEUED: u64 = 1 << 1;
pub(super) const WOKEN: u64 = 1 << 2;
pub(super) const HANDOFF: u64 = 1 << 3;
const UNCOUNTED: u64 = 1 << 4;
const B_SHIFT: u32 = 8;
const LIMIT_SHIFT: u32 = 16;
const COUNTERS: u64 = 0xFFFF << B_SHIFT;
/// Readers holding the lock count in bits 32..64.
pub(super) const READER: u64 = 1 << 32;
/// The bits that say who holds the lock: WRITER and the reader count.
const HOLDERS: u64 = !(READER - 1) | WRITER;

/// Claim token: the lock was handed over; the waiter holds it (a read or the write).
pub(super) const GRANTED: usize = 1;
/// Claim token (writers only): the lock was freed; race for it.
pub(super) const TRY_AGAIN: usize = 2;

/// Barges a queued writer tolerates before unlock hands it the lock: the mutex's value and for
/// the same reason (`Mutex`'s `MAX_BARGES`: 8 fibers on 2 workers, 139 ns a lock/unlock with
/// 8, 37 with 128). Not re-tuned for this lock: with it, `fibra-lab child chan fibra 100000
/// --workers 2 --case rwlock` went from 1,243 ns a lock/unlock (strict hand-off) to 104, the
/// mutex taking 98-119 in the same runs (module docs). Half the u8 counter's range, so
/// B - stamp never wraps.
/// Shrunk under loom so the models reach hand-off.
pub(super) const MAX_BARGES: u8 = if cfg!(loom) { 2 } else { 128 };
/// Go's starvationThresholdNs, as the mutex: a writer that keeps losing for longer than this is
/// handed the lock whatever the count says.
const STARVATION: Duration = Duration::from_millis(1);
/// Spins before queuing (threads) and for a woken writer: the mutex's `SPINS`, for the same
/// reasons (a critical section of ~20-50 ns; a fiber newcomer tries once, a spinning
/// unqueued fiber would be overtaken outside the bound). Shrunk under loom.
const SPINS: u32 = if cfg!(loom) { 2 } else { 64 };

/// What a caller locks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Read,
    Write,
}

fn readers(s: u64) -> u64 {
    s >> READER.trailing_zeros()
}

fn held(s: u64) -> bool {
    s & HOLDERS != 0
}

fn waiting(s: u64) -> bool {
    s & (QUEUED | WOKEN) != 0
}

fn barges(s: u64) -> u8 {
    (s >> B_SHIFT) as u8
}

fn limit(s: u64) -> u8 {
    (s >> LIMIT_SHIFT) as u8
}

fn with_counters(s: u64, barges: u8, limit: u8) -> u64 {
    (s & !COUNTERS) | u64::from(barges) << B_SHIFT | u64::from(limit) << LIMIT_SHIFT
}

/// Zeroes everything but the holders once nobody waits (QUEUED and WOKEN clear).
fn settle(s: u64) -> u64 {
    if waiting(s) {
        s
    } else {
        s & HOLDERS
    }
}

/// True if a reader may join now: no writer holds, nobody waits (readers never barge).
fn readable(s: u64) -> bool {
    s & (WRITER | QUEUED | WOKEN | HANDOFF) == 0
}

/// The state after a writer's barge from `s`, or `None` if the lock is held or in hand-off.
fn barge(s: u64) -> Option<u64> {
    if held(s) || s & HANDOFF != 0 {
        return None;
    }
    if !waiting(s) || s & UNCOUNTED != 0 {
        return Some(s | WRITER); // nobody waits, or a thread is oldest: nobody is charged
    }
    let b = barges(s).wrapping_add(1);
    let handoff = if b == limit(s) { HANDOFF } else { 0 };
    Some(with_counters(s | WRITER | handoff, b, limit(s)))
}

/// The state after the woken writer takes the free lock (allowed in HANDOFF: it is the oldest).
fn take_woken(s: u64) -> Option<u64> {
    (!held(s)).then(|| settle((s | WRITER) & !WOKEN))
}

/// A queue entry's registered token: stamp, kind and flags, bit 0 set so it is never WAITING.
fn entry_token(stamp: u8, starving: bool, thread: bool, kind: Kind) -> usize {
    let write = usize::from(kind == Kind::Write);
    usize::from(stamp) << 4 | write << 3 | usize::from(thread) << 2 | usize::from(starving) << 1 | 1
}

fn stamp(token: usize) -> u8 {
    (token >> 4) as u8
}

fn is_write(token: usize) -> bool {
    token & 8 != 0
}

fn is_thread(token: usize) -> bool {
    token & 4 != 0
}

/// True if the writer queued under `token` must be handed the lock rather than race for it:
/// it is starving, or a fiber overtaken MAX_BARGES times.
fn due(s: u64, token: usize) -> bool {
    token & 2 != 0 || !is_thread(token) && barges(s).wrapping_sub(stamp(token)) >= MAX_BARGES
}

/// The counting part of the state when the waiter queued under `token` becomes the oldest.
fn counting_for(s: u64, token: usize) -> u64 {
    let uncounted = if is_thread(token) { UNCOUNTED } else { 0 };
    let limit = stamp(token).wrapping_add(MAX_BARGES);
    with_counters((s & !UNCOUNTED) | uncounted, barges(s), limit)
}

/// True if the caller is a fiber. Loom models are plain threads standing in for fibers.
fn in_fiber() -> bool {
    cfg!(loom) || crate::sched::context::with_current_fiber(|f| f.is_some())
}

/// A waiter's place, kept across the races it loses.
pub(super) struct Ticket {
    stamp: u8,
    starving: bool,
    thread: bool,
    kind: Kind,
    first_loss: Option<Instant>,
}

impl Ticket {
    fn token(&self) -> usize {
        entry_token(self.stamp, self.starving, self.thread, self.kind)
    }

    /// Records a lost race; the second loss more than [`STARVATION`] after the first marks the
    /// writer starving. The clock is never read on the fast paths.
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

/// The lock without the data.
pub(super) struct RawRwLock {
    pub(super) state: AtomicU64,
    pub(super) queue: QueueLock<WaitList>,
}

impl RawRwLock {
    crate::loom::const_fn! {
        pub(super) fn new() -> RawRwLock {
            RawRwLock {
                state: AtomicU64::new(0),
                queue: QueueLock::new(WaitList::new()),
            }
        }
    }

    /// Any thread. Joins the readers unless a writer holds the lock or anyone waits.
    #[inline]
    pub(super) fn try_read(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while readable(s) {
            // Acquire pairs with the Release of the last write unlock (or downgrade).
            match self
                .state
                .compare_exchange_weak(s, s + READER, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// Any thread. Takes the write lock if it is free and not reserved (barging, counted).
    pub(super) fn try_write(&self) -> bool {
        self.try_write_fast() || self.try_write_slow()
    }

    #[inline]
    fn try_write_fast(&self) -> bool {
        // Acquire pairs with the Release of every unlock: readers' CASes and writers' form a
        // release sequence ending in the 0 we read.
        self.state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_ok()
    }

    #[cold]
    fn try_write_slow(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        while let Some(new) = barge(s) {
            // Acquire: as in `try_write_fast`.
            match self.state.compare_exchange_weak(s, new, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// Locks for `kind`, parking until `deadline`; false on timeout or cancellation.
    #[inline]
    pub(super) fn lock(&self, kind: Kind, deadline: Option<Instant>) -> bool {
        let fast = match kind {
            Kind::Read => self.try_read(),
            Kind::Write => self.try_write_fast(),
        };
        fast || self.lock_slow(kind, deadline)
    }

    #[cold]
    fn lock_slow(&self, kind: Kind, deadline: Option<Instant>) -> bool {
        let reason = match kind {
            Kind::Read => ParkReason::RwLockRead,
            Kind::Write => ParkReason::RwLockWrite,
        };
        let park = |waiter: &Arc<Waiter>| {
            wait::wait(waiter, reason, deadline, || self.abandon(waiter, kind))
        };
        self.lock_contended(kind, deadline, Waiter::current, park)
    }

    /// The contended path, with waiting abstracted so the loom models can spin instead of
    /// park: `park(waiter)` returns the claiming token.
    pub(super) fn lock_contended(
        &self,
        kind: Kind,
        deadline: Option<Instant>,
        new_waiter: impl Fn() -> Arc<Waiter>,
        mut park: impl FnMut(&Arc<Waiter>) -> usize,
    ) -> bool {
        let fiber = in_fiber();
        if kind == Kind::Write && self.spin(false, if fiber { 1 } else { SPINS }) {
            return true;
        }
        let mut waiter = new_waiter();
        let Some(mut ticket) = self.enqueue(&waiter, kind, fiber) else {
            return true;
        };
        loop {
            match park(&waiter) {
                GRANTED => return true, // counted before the claim, whose Release publishes it
                TRY_AGAIN => debug_assert_eq!(kind, Kind::Write, "readers are granted, not woken"),
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

    /// A writer tries `spins` times for the lock. A newcomer spins only while nobody waits
    /// (then one barge attempt, and it queues); the `woken` writer takes the lock even in
    /// hand-off mode: it is the oldest.
    fn spin(&self, woken: bool, spins: u32) -> bool {
        for _ in 0..spins {
            let s = self.state.load(Relaxed);
            // Acquire: as in `try_write_fast`.
            let won = |new| {
                self.state
                    .compare_exchange(s, new, Acquire, Relaxed)
                    .is_ok()
            };
            if !woken && waiting(s) {
                return barge(s).is_some_and(won);
            }
            let new = if woken { take_woken(s) } else { barge(s) };
            match new {
                Some(new) if won(new) => return true,
                Some(_) => continue,
                None => crate::loom::hint::spin_loop(),
            }
        }
        false
    }

    /// Under the queue lock: takes the lock (`None`: a reader joins, a writer barges), or
    /// queues `waiter` at the back with the current barge count as its stamp.
    fn enqueue(&self, waiter: &Arc<Waiter>, kind: Kind, fiber: bool) -> Option<Ticket> {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let take = match kind {
                Kind::Read => readable(s).then(|| s + READER),
                Kind::Write => barge(s),
            };
            let (new, order) = match take {
                Some(new) => (new, Acquire), // as in `try_read`/`try_write_fast`
                // Only flags and counters; the queue lock orders the push. Held or waited for,
                // so an unlock or the woken writer will see QUEUED.
                None if !waiting(s) => {
                    let first = entry_token(0, false, !fiber, kind); // settled: B is 0
                    (counting_for(s | QUEUED, first), Relaxed)
                }
                None => (s | QUEUED, Relaxed),
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if take.is_some() => return None,
                Ok(_) => {
                    let ticket = Ticket {
                        stamp: barges(new),
                        starving: false,
                        thread: !fiber,
                        kind,
                        first_loss: None,
                    };
                    queue.push(waiter.clone(), ticket.token());
                    return Some(ticket);
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// The woken writer lost the race: under the queue lock, takes the lock if it came free
    /// (true), else goes back to the front with its stamp and clears WOKEN (false).
    fn requeue(&self, waiter: &Arc<Waiter>, ticket: &Ticket) -> bool {
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order) = match take_woken(s) {
                Some(new) => (new, Acquire), // as in `try_write_fast`
                None => {
                    // Seen held: the holder's unlock (the last reader's) sees WOKEN clear and
                    // QUEUED, and wakes or grants us.
                    let handoff = if ticket.starving { HANDOFF } else { 0 };
                    ((s | QUEUED | handoff) & !WOKEN, Relaxed)
                }
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) if !held(s) => return true,
                Ok(_) => {
                    queue.push_front(waiter.clone(), ticket.token());
                    return false;
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// The woken writer stops racing (deadline, shutdown). Under the queue lock, so that it
    /// cannot slip between an unlocker's claim and its state change: takes the lock if it is
    /// free (true: the caller holds it), else clears WOKEN while the lock is seen held (false).
    pub(super) fn give_up_woken(&self) -> bool {
        let _queue = self.queue.lock();
        let mut s = self.state.load(Relaxed);
        loop {
            let (new, order) = match take_woken(s) {
                Some(new) => (new, Acquire), // as in `try_write_fast`
                None => (settle(s & !WOKEN), Relaxed),
            };
            match self.state.compare_exchange_weak(s, new, order, Relaxed) {
                Ok(_) => return !held(s),
                Err(actual) => s = actual,
            }
        }
    }

    pub(super) fn unlock(&self, kind: Kind) {
        match kind {
            Kind::Read => self.read_unlock(),
            Kind::Write => self.write_unlock(),
        }
    }

    /// A reader only.
    #[inline]
    pub(super) fn read_unlock(&self) {
        let mut s = self.state.load(Relaxed);
        loop {
            if readers(s) == 1 && s & (WRITER | QUEUED | WOKEN) == QUEUED {
                return self.read_unlock_slow(); // the last one out, and nobody on the way
            }
            // Release publishes our reads-done to the next writer (a release sequence of
            // RMWs up to its Acquire).
            match self
                .state
                .compare_exchange_weak(s, s - READER, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    #[cold]
    fn read_unlock_slow(&self) {
        let woken = self.release(&mut self.queue.lock());
        if let Some(w) = woken {
            w.wake();
        }
    }

    /// The writer only.
    #[inline]
    pub(super) fn write_unlock(&self) {
        // Release pairs with the Acquire of whichever CAS takes the lock next.
        if self
            .state
            .compare_exchange(WRITER, 0, Release, Relaxed)
            .is_err()
        {
            self.write_unlock_slow();
        }
    }

    #[cold]
    fn write_unlock_slow(&self) {
        let mut s = self.state.load(Relaxed);
        loop {
            let new = if s & WOKEN != 0 {
                s & !WRITER // the woken writer (or a barger) takes it; HANDOFF: the woken only
            } else if s & QUEUED == 0 {
                settle(s & !WRITER) // leftover counters only
            } else {
                break;
            };
            // Release: as in `write_unlock`.
            match self.state.compare_exchange_weak(s, new, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        let woken = {
            let mut queue = self.queue.lock();
            // WRITER becomes one READER: the hold `release` hands on. Release pairs with the
            // Acquire of a reader that joins if a withdraw emptied the queue meanwhile.
            self.state.fetch_add(READER - WRITER, Release);
            self.release(&mut queue)
        };
        if let Some(w) = woken {
            w.wake();
        }
    }

    /// The writer only: turns its WRITER into one READER without letting a writer in between,
    /// then admits the readers waiting at the front (a writer there keeps waiting for us).
    pub(super) fn downgrade(&self) {
        // Release pairs with the Acquire of the readers admitted next (`try_read`'s CAS or
        // the claim's): our writes happen-before their reads. WRITER is bit 0 and held, so
        // adding READER - WRITER clears it without a borrow and keeps every flag.
        let prev = self.state.fetch_add(READER - WRITER, Release);
        if prev & (QUEUED | WOKEN) == QUEUED {
            // With WOKEN set the woken writer is the oldest: readers behind it wait for it.
            let mut queue = self.queue.lock();
            if self.state.load(Acquire) & (QUEUED | WOKEN) == QUEUED {
                self.admit_readers(&mut queue);
            }
        }
    }

    /// Under the queue lock, the caller holding one READER: hands the lock on if the caller
    /// is the last holder and someone queued (the state is frozen then: no fast path or barge
    /// passes QUEUED with a hold counted, WOKEN is clear, and every other writer of the word
    /// needs the queue lock), then leaves. Returns a writer to wake after the queue lock is
    /// released.
    fn release(&self, queue: &mut WaitList) -> Option<Arc<Waiter>> {
        let mut woken = None;
        loop {
            // Acquire: our view includes every earlier holder's Release before we hand on.
            let s = self.state.load(Acquire);
            let last_out = readers(s) == 1 && s & (WRITER | QUEUED | WOKEN) == QUEUED;
            if last_out && woken.is_none() {
                match queue.front() {
                    None => {} // every entry had given up: leave, clearing QUEUED
                    Some(t) if !is_write(t) => {
                        self.admit_readers(queue);
                        continue; // if they are gone already, we are the last out again
                    }
                    Some(t) if due(s, t) => {
                        self.state.fetch_add(WRITER, Relaxed);
                        // The claim's Release (pairs with `Waiter::selected`'s Acquire)
                        // publishes what we saw to the new holder.
                        match queue.try_claim_front(GRANTED) {
                            Some(w) => woken = Some(w),
                            None => {
                                self.state.fetch_sub(WRITER, Relaxed); // timed out just now
                            }
                        }
                        continue;
                    }
                    Some(t) => {
                        let Some(w) = queue.try_claim_front(TRY_AGAIN) else {
                            continue;
                        };
                        // Free the lock for the woken writer and any barger; HANDOFF off: the
                        // woken writer is not due. Frozen, so this CAS succeeds; Release as
                        // in `read_unlock`, for the woken writer's (or a barger's) Acquire.
                        let queued = if queue.is_empty() { 0 } else { QUEUED };
                        let new = counting_for(((s - READER) & !(QUEUED | HANDOFF)) | WOKEN, t);
                        if self
                            .state
                            .compare_exchange(s, new | queued, Release, Relaxed)
                            .is_err()
                        {
                            fatal!("sync::rwlock::release: state changed while frozen");
                        }
                        return Some(w);
                    }
                }
            }
            // Leave: others still hold (the last of them hands on), someone is on the way
            // (WOKEN), nobody waits, or we just granted a writer. QUEUED tracks the list.
            let mut new = s - READER;
            if woken.is_some() {
                new &= !HANDOFF; // the debt is paid; the next unlock judges the next front
            }
            if queue.is_empty() {
                new = settle(new & !QUEUED);
            }
            // Release: as in `read_unlock`.
            if self
                .state
                .compare_exchange(s, new, Release, Relaxed)
                .is_ok()
            {
                return woken;
            }
        }
    }

    /// Under the queue lock, with readers holding, no writer, WOKEN clear and QUEUED set: the
    /// holders cannot all leave meanwhile (the last one needs the queue lock). Admits the
    /// readers at the front, stopping at the first writer (FIFO: it waits for them), and
    /// clears QUEUED if the list empties.
    fn admit_readers(&self, queue: &mut WaitList) {
        while let Some(t) = queue.front() {
            if is_write(t) {
                return;
            }
            // Counted before the claim: a claimed waiter may run at once (a spurious park
            // return) and must find its hold counted.
            self.state.fetch_add(READER, Relaxed);
            match queue.try_claim_front(GRANTED) {
                Some(w) => w.wake(), // the claim's Release publishes the data (see `release`)
                None => {
                    self.state.fetch_sub(READER, Relaxed); // it timed out just now
                }
            }
        }
        self.clear_queued_if_empty(queue);
    }

    /// Under the queue lock: clears QUEUED (and the counters if nobody is woken) once the list
    /// is empty.
    fn clear_queued_if_empty(&self, queue: &WaitList) {
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

    /// After the waiter claimed itself (timeout, cancel): removes its entry; readers behind
    /// it may now be admitted, if readers hold the lock.
    fn withdraw(&self, waiter: &Arc<Waiter>) {
        let mut queue = self.queue.lock();
        queue.remove(waiter);
        let s = self.state.load(Acquire); // as in `release`, for the readers admitted
        if readers(s) > 0 && s & (WRITER | QUEUED | WOKEN) == QUEUED {
            self.admit_readers(&mut queue);
        } else {
            self.clear_queued_if_empty(&queue);
        }
    }

    /// The fiber is unwound while parked: withdraw, or pass on whatever it was claimed for.
    fn abandon(&self, waiter: &Arc<Waiter>, kind: Kind) {
        wait::abandon(
            waiter,
            || self.withdraw(waiter),
            |token| match token {
                GRANTED => self.unlock(kind),
                TRY_AGAIN if self.give_up_woken() => self.write_unlock(),
                _ => {}
            },
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(all(test, not(loom)))]
mod tests;
