//! The per-worker ring: bounded, lock-free, one producer (the owner worker), many consumers.
//!
//! # Positions
//! `tail: u32` and `head: u64 = steal << 32 | real` hold positions that count up forever and
//! wrap at 2^32; position `p` lives in `buffer[p % CAPACITY]`. All arithmetic is wrapping, and
//! "a ≤ b" below means `b.wrapping_sub(a) ≤ CAPACITY`. At every instant
//! ```text
//!   steal ≤ real ≤ tail,   tail − steal ≤ CAPACITY
//!
//!   ...free...][ claimed by a stealer ][ queued              ][...free...
//!              ^steal                 ^real                  ^tail
//! ```
//! - `[steal, real)`: claimed by the one stealer now copying them out; empty when `steal == real`.
//! - `[real, tail)`: queued; the owner pops at `real`, a stealer claims from `real`.
//! - the rest: free; only the owner writes there, at `tail`.
//!
//! Why two head counters: a stealer must claim slots *before* reading them (a generic `T` cannot
//! be read while the owner may overwrite it), and the owner must not overwrite claimed slots until
//! the stealer is done. `real` tells everyone where the queued items start; `steal` tells the owner
//! which slots are still busy. Go's `runqgrab` instead copies first and then CASes `head`,
//! discarding the copy on failure: sound for Go's pointer-sized atomic loads, a data race for `T`.
//!
//! # Field access
//! | field        | written by                                                  | read by |
//! |--------------|-------------------------------------------------------------|---------|
//! | `tail`       | owner only (`push_back`), Release                           | owner (Relaxed: its own store), stealers (Acquire) |
//! | `head.real`  | CAS: owner (`pop`, overflow), stealers (claim)              | all |
//! | `head.steal` | CAS: owner, only while `steal == real` (moves both); the claiming stealer (release) | all |
//! | slot `p`     | the owner, while `p` is free (`push_back`, and `steal_into` when the owner is the thief) | whoever won `p` by CAS on `head`: the owner (`pop`, overflow) or the claiming thief |
//!
//! # Protocols
//! ```text
//! Push (owner):  1. load head (Acquire)
//!                2. tail − steal < CAPACITY: write slot tail; store tail + 1 (Release). Done.
//!                3. steal ≠ real: a stealer is about to free slots; push the value alone to inject.
//!                4. else the ring is full: CAS head (real, real) → (real+HALF, real+HALF)
//!                   (Release), then move those HALF oldest items + the value to inject under
//!                   one lock. CAS failed (a stealer claimed meanwhile): go to 1.
//! Pop (owner):   CAS head.real → real + 1 (Release), also moving steal if it equalled real;
//!                then read slot real.
//! Steal:         1. dst (the thief's own ring) has ≤ HALF items (Acquire load of dst.head),
//!                   else give up.
//!                2. load src.head; steal ≠ real: another stealer is copying, give up
//!                   (Go and tokio do the same: a second thief would find only scraps).
//!                3. load src.tail (Acquire); n = ⌈(tail − real) / 2⌉; n == 0: give up.
//!                   tail − real > CAPACITY: a load was stale; re-read head (Acquire RMW), go to 2.
//!                4. claim: CAS src.head (steal, real) → (steal, real + n); failed: go to 2.
//!                5. keep item `real` to return; copy the other n − 1 into dst's free slots.
//!                6. release: CAS src.head (steal, r) → (r, r) (Release): the owner may reuse them.
//!                7. store dst.tail += n − 1 (Release): publishes the copies to dst's stealers.
//! ```
//! # Memory ordering
//! Three hand-overs, each a Release/Acquire pair:
//! - slot contents, owner → thief: Push 2 (Release store of `tail`) → Steal 3 (Acquire load).
//!   Likewise Steal 7 → Steal 3 for the copies a thief puts into its own ring.
//! - slot reuse, thief → owner: Steal 6 (Release CAS of `head`) → Push 1 / Steal 1 (Acquire
//!   load of `head`). Every change of `head` is an RMW, which continues the release sequence, so
//!   whichever `steal > p` the owner reads, the copy out of position `p` happened-before.
//! - progress for thieves: Steal 2 loads `head` Relaxed, so either load may be stale and the
//!   count `tail − real` may exceed CAPACITY. Step 3 then re-reads `head` with an Acquire RMW,
//!   which returns the latest value. If that has `steal == real`, it was stored by a Release CAS
//!   (Pop, Push 4, Steal 6; RMWs continue the release sequence) whose author had seen a `tail` at
//!   least its `real`, so the next `tail` load is too and the count is sane. Without this pair a
//!   thief could spin on a stale `tail` (loom: "exceeded maximum number of branches"). The claim
//!   CAS (Steal 4) leaves `steal ≠ real`, which no thief acts on: Relaxed.
//!
//! Weakening any of these orderings makes a `loom_tests` model fail (checked one at a time).
//!
//! ABA: a CAS on `head` compares both 32-bit counters, so it can succeed on a stale value only if
//! 2^32 items passed through the ring between the load and the CAS.
//!
//! Rejected: a growable Chase-Lev deque (crossbeam-deque): growth needs epoch reclamation and the
//! scheduler wants a bound anyway (overflow goes to the global queue, as in Go). Per-slot sequence
//! numbers (Vyukov's bounded queue): an extra atomic store per push and per steal item.

use std::mem::MaybeUninit;

use super::inject::Inject;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use crate::loom::sync::Arc;

/// Slots per ring. Go's runq and tokio use 256: room for a burst of spawns, and a ring of
/// pointer-sized items fits in 2 KiB. Loom must explore every interleaving, so it gets 4.
pub(crate) const CAPACITY: usize = if cfg!(loom) { 4 } else { 256 };
const CAP: u32 = CAPACITY as u32;
const MASK: u32 = CAP - 1;
/// Items moved to the inject queue on overflow; also the most a steal takes.
const HALF: u32 = CAP / 2;
const _: () = assert!(CAPACITY.is_power_of_two() && CAPACITY >= 4 && CAPACITY <= 1 << 31);

struct Inner<T> {
    /// `steal << 32 | real`; see "Positions".
    head: AtomicU64,
    /// One past the newest item. Written by the owner only.
    tail: AtomicU32,
    /// Which slots are initialized follows from `head` and `tail`. An array, so that
    /// `pos & MASK` needs no bounds check.
    buffer: Box<[UnsafeCell<MaybeUninit<T>>; CAPACITY]>,
}

// SAFETY: the slots are the only non-`Sync` part. Each slot is accessed by one thread at a time,
// as given by the ring invariants in "Field access" (the owner writes free slots only; a slot is
// read by whoever won its position by CAS on `head`), and the Release/Acquire pairs on `head` and
// `tail` order the hand-overs. Items move between threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Inner<T> {}

fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

impl<T> Inner<T> {
    /// Writes `value` into the slot of position `pos`.
    ///
    /// # Safety
    /// `pos` is free (see "Positions") and the caller is the owner of this ring.
    unsafe fn write(&self, pos: u32, value: T) {
        self.buffer[(pos & MASK) as usize].with_mut(|slot| {
            // SAFETY: the caller guarantees `pos` is free and only the owner writes free slots,
            // so no other thread accesses this slot now.
            unsafe { slot.write(MaybeUninit::new(value)) }
        });
    }

    /// Moves the item out of the slot of position `pos`, leaving the slot logically free.
    ///
    /// # Safety
    /// `pos` holds an initialized item that the caller has won by a CAS on `head` (a pop, an
    /// overflow, or a steal claim), and the caller reads it at most once.
    unsafe fn take(&self, pos: u32) -> T {
        self.buffer[(pos & MASK) as usize].with(|slot| {
            // SAFETY: the caller's CAS made it the only thread that may read `pos`, which was
            // written before `tail` passed it (published by push's Release store of `tail`).
            unsafe { slot.read().assume_init() }
        })
    }
}

/// The owner's handle: push and pop. Owner worker only (`&mut self`); may move between threads.
pub(crate) struct Local<T> {
    inner: Arc<Inner<T>>,
}

/// Steals from one ring. Any thread; cheap to clone.
pub(crate) struct Stealer<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Stealer {
            inner: self.inner.clone(),
        }
    }
}

/// A new, empty ring: the owner's handle and a stealer for other workers.
pub(crate) fn local<T>() -> (Local<T>, Stealer<T>) {
    local_at(0)
}

/// [`local`] with all positions starting at `start`; tests start near `u32::MAX` to cross the wrap.
pub(super) fn local_at<T>(start: u32) -> (Local<T>, Stealer<T>) {
    let slots: Box<[_]> = (0..CAPACITY)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let Ok(buffer) = slots.try_into() else {
        unreachable!("CAPACITY slots")
    };
    let head = AtomicU64::new(pack(start, start));
    let inner = Arc::new(Inner {
        head,
        tail: AtomicU32::new(start),
        buffer,
    });
    (
        Local {
            inner: inner.clone(),
        },
        Stealer { inner },
    )
}

impl<T> Local<T> {
    /// Appends `value` at the newest end. When the ring is full, moves its older half plus
    /// `value` to `inject` in one batch. Owner worker only.
    pub(crate) fn push_back(&mut self, mut value: T, inject: &Inject<T>) {
        // Relaxed: only we store `tail`, so this reads our own last store.
        let tail = self.inner.tail.load(Relaxed);
        loop {
            // Acquire pairs with a thief's Release CAS in `release`: its copies out of the slots
            // below `steal` happened-before we overwrite them.
            let (steal, real) = unpack(self.inner.head.load(Acquire));
            if tail.wrapping_sub(steal) < CAP {
                // SAFETY: `tail − steal < CAPACITY`, so position `tail` is free; we are the owner.
                unsafe { self.inner.write(tail, value) };
                // Release publishes slot `tail`; pairs with the Acquire load of `tail` in `claim`.
                self.inner.tail.store(tail.wrapping_add(1), Release);
                return;
            }
            if steal != real {
                // Full, but a thief is copying out of the ring and will free slots shortly.
                // Waiting for it would stall the owner; send the one value to the global queue.
                inject.push(value);
                return;
            }
            match self.push_overflow(value, real, tail, inject) {
                Ok(()) => return,
                Err(v) => value = v, // a thief claimed meanwhile: there is room now
            }
        }
    }

    /// Appends `value` at the newest end if the ring has room, else hands it back (never
    /// touches the global queue, so it may run under its lock: `Inject::pop_batch`). Owner
    /// worker only.
    pub(crate) fn push_if_room(&mut self, value: T) -> Result<(), T> {
        // Relaxed: only we store `tail`.
        let tail = self.inner.tail.load(Relaxed);
        // Acquire: as in `push_back`.
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        if tail.wrapping_sub(steal) >= CAP {
            return Err(value);
        }
        // SAFETY: `tail − steal < CAPACITY`, so position `tail` is free; we are the owner.
        unsafe { self.inner.write(tail, value) };
        // Release publishes slot `tail`; pairs with the Acquire load of `tail` in `claim`.
        self.inner.tail.store(tail.wrapping_add(1), Release);
        Ok(())
    }

    /// The ring is full (`tail − real == CAPACITY`, no thief): moves the HALF oldest items and
    /// `value` to `inject`. Returns `value` if a thief claimed items first.
    #[cold]
    fn push_overflow(
        &mut self,
        value: T,
        real: u32,
        tail: u32,
        inject: &Inject<T>,
    ) -> Result<(), T> {
        debug_assert_eq!(
            tail.wrapping_sub(real),
            CAP,
            "sched::queue::push_overflow: not full"
        );
        let end = real.wrapping_add(HALF);
        // Release: the third pair in "Memory ordering". Failure: `push_back` re-reads `head`.
        let won =
            self.inner
                .head
                .compare_exchange(pack(real, real), pack(end, end), Release, Relaxed);
        if won.is_err() {
            return Err(value);
        }
        let batch = Drain {
            inner: &self.inner,
            pos: real,
            end,
        };
        inject.push_batch(batch.chain(Some(value)));
        Ok(())
    }

    /// Removes the oldest item. Owner worker only.
    pub(crate) fn pop(&mut self) -> Option<T> {
        // Relaxed: only we store `tail`.
        let tail = self.inner.tail.load(Relaxed);
        // Relaxed: a stale value has a smaller `real` (if even that equals `tail`, the ring is
        // empty) and fails the CAS below.
        let mut head = self.inner.head.load(Relaxed);
        loop {
            let (steal, real) = unpack(head);
            if real == tail {
                return None;
            }
            let next_real = real.wrapping_add(1);
            // While no thief is copying, `steal` follows `real`; otherwise only `release` moves it.
            let next = if steal == real {
                pack(next_real, next_real)
            } else {
                pack(steal, next_real)
            };
            // Release: the third pair in "Memory ordering". Failure: retry with the fresh value.
            match self
                .inner
                .head
                .compare_exchange_weak(head, next, Release, Relaxed)
            {
                // SAFETY: our CAS moved `real` past position `real`, so no thief will claim it,
                // and `real < tail` means we wrote it.
                Ok(_) => return Some(unsafe { self.inner.take(real) }),
                Err(actual) => head = actual,
            }
        }
    }

    /// Items queued (not counting ones a thief is copying out). Owner worker only.
    #[allow(dead_code)] // part of the queue API; the scheduler does not call it yet
    pub(crate) fn len(&self) -> usize {
        // Relaxed: only we store `tail`, and every `real` we can read is ≤ it; a snapshot anyway.
        let tail = self.inner.tail.load(Relaxed);
        let (_, real) = unpack(self.inner.head.load(Relaxed));
        tail.wrapping_sub(real) as usize
    }

    /// `len() == 0`. Owner worker only.
    #[allow(dead_code)] // part of the queue API; the scheduler does not call it yet
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Local<T> {
    /// Drops the items left in the ring. Items a thief has claimed belong to that thief.
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

/// Moves the items of positions `[pos, end)` out of the ring, oldest first. Created by
/// `push_overflow` after its CAS won those positions; drops any it was not asked for.
struct Drain<'a, T> {
    inner: &'a Inner<T>,
    pos: u32,
    end: u32,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.pos == self.end {
            return None;
        }
        // SAFETY: `push_overflow`'s CAS won `[pos, end)`, all below `tail` and written by the
        // owner; each position is taken once because `pos` advances past it.
        let value = unsafe { self.inner.take(self.pos) };
        self.pos = self.pos.wrapping_add(1);
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end.wrapping_sub(self.pos) as usize;
        (n, Some(n))
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

impl<T> Stealer<T> {
    /// Steals about half of the victim's items, oldest first: returns the oldest and appends the
    /// rest to `dst`. `None` if the victim is empty, another thief is busy with it, or `dst` is
    /// more than half full. Any thread; `dst` is the calling worker's own ring.
    pub(crate) fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        // Relaxed: `dst` is ours, so this reads our own last store.
        let dst_tail = dst.inner.tail.load(Relaxed);
        // Acquire pairs with the Release CAS in `release` by thieves of `dst`: their copies out
        // of the slots below `dst_steal` happened-before we overwrite them.
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        if dst_tail.wrapping_sub(dst_steal) > HALF {
            return None; // no room guaranteed for HALF − 1 more; the thief has work anyway
        }
        let (first, n) = self.claim()?;
        // SAFETY: `claim` won `[first, first + n)`, n ≥ 1; `first` is taken here, the rest below.
        let oldest = unsafe { self.inner.take(first) };
        for i in 1..n {
            // SAFETY: won by `claim`; each `i` is taken once.
            let value = unsafe { self.inner.take(first.wrapping_add(i)) };
            // SAFETY: `dst` spans at most HALF positions from `dst_steal` and we add n − 1 < HALF,
            // so every position we write is within CAPACITY of `dst_steal`: free. We own `dst`.
            unsafe { dst.inner.write(dst_tail.wrapping_add(i - 1), value) };
        }
        self.release(first);
        if n > 1 {
            // Release publishes the copied slots; pairs with the Acquire load of `tail` in `claim`.
            dst.inner.tail.store(dst_tail.wrapping_add(n - 1), Release);
        }
        Some(oldest)
    }

    /// Claims the older half (rounded up) of the queued items: returns `(first, n)`, n ≥ 1,
    /// after which positions `[first, first + n)` are this thread's to read.
    fn claim(&self) -> Option<(u32, u32)> {
        // Relaxed: the CAS below re-checks it, and a `tail` it disagrees with is caught below.
        let mut head = self.inner.head.load(Relaxed);
        loop {
            let (steal, real) = unpack(head);
            if steal != real {
                return None; // another thief is copying; see "Protocols"
            }
            // Acquire pairs with push's Release store of `tail`: slots below it are written.
            let tail = self.inner.tail.load(Acquire);
            let queued = tail.wrapping_sub(real);
            if queued > CAP {
                // One of the two loads is stale (the ring never holds more than CAPACITY).
                // Re-read `head` with an RMW, which returns the latest value. Acquire pairs with
                // the Release CAS that stored it (Pop, Push 4, Steal 6), whose author had seen a
                // `tail` ≥ its `real`: our next `tail` load is ≥ `real` too, so no spinning.
                head = self.inner.head.fetch_add(0, Acquire);
                continue;
            }
            let n = queued - queued / 2;
            if n == 0 {
                return None;
            }
            let next = pack(steal, real.wrapping_add(n));
            // Relaxed: success only keeps others out of `[real, real + n)` (the slots are
            // published by `tail`); on failure `actual` is checked like the first load.
            match self
                .inner
                .head
                .compare_exchange_weak(head, next, Relaxed, Relaxed)
            {
                Ok(_) => return Some((real, n)),
                Err(actual) => head = actual,
            }
        }
    }

    /// Ends this thief's claim, which began at `first`: sets `steal = real`.
    fn release(&self, first: u32) {
        let mut head = self.inner.head.load(Relaxed); // the CAS re-checks it
        loop {
            let (steal, real) = unpack(head);
            // While we hold the claim only we move `steal`, so it still marks our first position.
            debug_assert!(
                steal == first && steal != real,
                "sched::queue::release: lost claim"
            );
            // Release pairs with the Acquire loads of `head` in `push_back` and `steal_into` (dst
            // check): our reads of the claimed slots happen-before the owner overwrites them.
            match self
                .inner
                .head
                .compare_exchange_weak(head, pack(real, real), Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Items queued in the victim, a snapshot. Any thread.
    ///
    /// # Memory ordering
    /// A hint. A caller that must not miss a push orders these loads with its own SeqCst fence
    /// (sched/mod.rs, "No lost wake-ups").
    pub(crate) fn len(&self) -> usize {
        // Acquire: the third pair in "Memory ordering", so the count cannot wrap below 0.
        let (_, real) = unpack(self.inner.head.load(Acquire));
        let tail = self.inner.tail.load(Relaxed);
        // A stale `head` can over-count: clamp to what the ring holds.
        (tail.wrapping_sub(real) as usize).min(CAPACITY)
    }

    /// `len() == 0`. Any thread.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
