//! What debugging reads of a fiber (`fibra::debug`): when it parked, what it waits for, and
//! the backtrace-capture hand-shake.
//!
//! # Field access
//! | field | written by | read by |
//! |---|---|---|
//! | `parked_at` | the fiber, in `park` (coarse session clock, ms) | dumps |
//! | `waits_for`, `waits_for_holder` | the fiber, before it waits for a mutex or a channel | dumps |
//! | `woken_at` | an unparker of a sampled fiber; its runner resets it | its runner |
//! | `capture` | a dumper (CAS null → request), the fiber (swap → null), a dumper withdrawing | both |
//!
//! # Capture hand-shake (ARCHITECTURE.md §8)
//! ```text
//! dumper: 1. round.pending += 1   2. CAS capture null → request   3. unpark(fiber)
//! fiber:  woken (by 3 or by anyone), `park` sees capture != null → swap it out,
//!         Backtrace::force_capture() on its own stack, push it, pending -= 1 (wake the
//!         dumper at 0), then suspend again as if nothing happened
//! ```
//! Re-suspending after a capture never loses a wake-up: every installed request is followed
//! by the dumper's unpark (step 3), so either that unpark is still to come and wakes the fiber
//! again, or it already happened and left the `NOTIFIED` token (the fiber was running), which
//! makes the re-suspend requeue it. Either way the fiber returns from `park` only after a
//! real or spurious wake it would have had anyway, with its park reason and parked-since time
//! unchanged. The request's visibility rides on the same chain: the CAS happens-before the
//! dumper's unpark (an AcqRel read-modify-write of the state word), which happens-before the
//! fiber's next run (queue Release/Acquire, or `take_notified`'s Acquire).

use std::backtrace::Backtrace;
use std::collections::HashSet;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::Waker;

/// One dump's outstanding captures.
pub(crate) struct CaptureRound {
    /// Captures not yet answered, plus one held by the dumper while it issues requests.
    pub(crate) pending: AtomicUsize,
    /// Every answered request.
    pub(crate) results: Mutex<Answers>,
    /// Wakes the dumper (a fiber or a thread) when `pending` reaches 0.
    pub(crate) waker: Waker,
}

impl CaptureRound {
    pub(crate) fn new(waker: Waker) -> Arc<CaptureRound> {
        Arc::new(CaptureRound {
            pending: AtomicUsize::new(1),
            results: Mutex::new(Answers::default()),
            waker,
        })
    }

    /// One request is done (answered, withdrawn, or never installed).
    pub(crate) fn done_one(&self) {
        // AcqRel: Release publishes our pushed result to the dumper's Acquire load of
        // `pending`; Acquire orders the other answers before the wake.
        if self.pending.fetch_sub(1, AcqRel) == 1 {
            self.waker.wake_by_ref();
        }
    }
}

/// The answers of one round. Fibers parked at the same place have the same return
/// addresses: only the first of them captures a `Backtrace` (symbolising is what costs, and
/// it is then done once per distinct stack).
#[derive(Default)]
pub(crate) struct Answers {
    /// Return-address lists already captured in full.
    seen: HashSet<Vec<usize>>,
    /// `(fiber id, return addresses, full backtrace if this fiber was the first)`.
    pub(crate) list: Vec<(u64, Vec<usize>, Option<Backtrace>)>,
}

/// The return addresses of the calling stack (through the fiber's stack into its worker's,
/// as corosensei links them), at most `MAX_FRAMES`: cheap, unsymbolised, for grouping.
fn return_addresses() -> Vec<usize> {
    const MAX_FRAMES: usize = 128;
    extern "C" fn each(ctx: *mut c_void, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `&mut Vec<usize>` passed below, alive for the whole walk, and
        // nothing else touches it meanwhile.
        let ips = unsafe { &mut *arg.cast::<Vec<usize>>() };
        // SAFETY: `ctx` is the live unwind context the unwinder hands to this callback.
        ips.push(unsafe { _Unwind_GetIP(ctx) });
        if ips.len() >= MAX_FRAMES {
            4 // _URC_NORMAL_STOP
        } else {
            0 // _URC_NO_REASON: keep walking
        }
    }
    let mut ips: Vec<usize> = Vec::with_capacity(32);
    // SAFETY: `_Unwind_Backtrace` (libgcc_s, which std links on Linux) calls `each` for each
    // frame of the current stack with `arg`, and returns before `ips` goes out of scope.
    unsafe { _Unwind_Backtrace(each, ptr::from_mut(&mut ips).cast()) };
    ips
}

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

/// Per-fiber debugging state (see the module header).
pub(crate) struct Watch {
    /// Coarse session time (ms, `sched::CoarseClock`) of the current park's start, and the
    /// `SERVING` bit (read it with `parked_since`).
    pub(crate) parked_at: AtomicU64,
    /// Address of the `sync::Mutex` this fiber waits for, or 0.
    pub(crate) waits_for: AtomicUsize,
    /// The holder's fiber id as seen when the fiber queued (0: a thread, or unknown).
    pub(crate) waits_for_holder: AtomicU64,
    /// Null, or a request from `Arc::into_raw(CaptureRound)` owning one count.
    capture: AtomicPtr<CaptureRound>,
    /// Sampled fibers only: session nanoseconds of the wake that made it runnable, or 0
    /// (`sched/stats.rs`).
    pub(crate) woken_at: AtomicU64,
}

/// `parked_at`'s top bit: set while the fiber runs only to answer a capture and park again
/// (still parked as far as its caller, and a dump, can tell); cleared when its park really
/// returns. A bit of an existing word: a field of its own would grow the header past its
/// malloc size class (`header.rs`, `header_sizes`).
const SERVING: u64 = 1 << 63;

impl Watch {
    /// The fiber is about to wait for `object`, for `fibra::debug`: the address of a `Mutex`
    /// (with its holder's fiber id, 0 if unknown) or of a channel (holder 0). Which kind it is
    /// follows from the park reason the wait records.
    pub(crate) fn note_waiting(&self, object: usize, holder: u64) {
        self.waits_for_holder.store(holder, Relaxed);
        self.waits_for.store(object, Relaxed);
    }

    pub(crate) fn new() -> Watch {
        Watch {
            parked_at: AtomicU64::new(0),
            waits_for: AtomicUsize::new(0),
            waits_for_holder: AtomicU64::new(0),
            capture: AtomicPtr::new(ptr::null_mut()),
            woken_at: AtomicU64::new(0),
        }
    }

    /// Dumper: asks the fiber for a backtrace. False if another dump's request is pending.
    /// The caller unparks the fiber afterwards when this returns true.
    pub(crate) fn request_capture(&self, round: &Arc<CaptureRound>) -> bool {
        let req = Arc::into_raw(round.clone()).cast_mut();
        // Release: the request's contents travel with the pointer (the fiber also gets them
        // through the unpark chain, see the module header).
        match self
            .capture
            .compare_exchange(ptr::null_mut(), req, Release, Relaxed)
        {
            Ok(_) => true,
            Err(_) => {
                // SAFETY: `req` came from `Arc::into_raw` above and was not published.
                drop(unsafe { Arc::from_raw(req) });
                false
            }
        }
    }

    /// Dumper, after its timeout: takes its request back if the fiber has not taken it.
    /// True if withdrawn (then the fiber will never answer it).
    pub(crate) fn withdraw_capture(&self, round: &Arc<CaptureRound>) -> bool {
        let req = Arc::as_ptr(round).cast_mut();
        if self
            .capture
            .compare_exchange(req, ptr::null_mut(), Acquire, Relaxed)
            .is_ok()
        {
            // SAFETY: the pointer we swapped out owned one count (`request_capture`).
            drop(unsafe { Arc::from_raw(req) });
            true
        } else {
            false
        }
    }

    /// The fiber, on its own stack, after being woken: answers a pending request. True if
    /// there was one. One relaxed load when there is none.
    #[inline]
    pub(crate) fn serve_capture(&self, fiber_id: u64) -> bool {
        if self.capture.load(Relaxed).is_null() {
            return false;
        }
        self.serve_slow(fiber_id)
    }

    #[cold]
    #[inline(never)]
    fn serve_slow(&self, fiber_id: u64) -> bool {
        // Acquire pairs with `request_capture`'s Release.
        let req = self.capture.swap(ptr::null_mut(), Acquire);
        if req.is_null() {
            return false; // withdrawn meanwhile
        }
        // SAFETY: a non-null `capture` owns one count of an `Arc<CaptureRound>`; the swap
        // made that count ours.
        let round = unsafe { Arc::from_raw(req) };
        // Before the answer wakes the dumper: a dump that follows at once must not see this
        // fiber running (it only answers, then parks again).
        self.parked_at.fetch_or(SERVING, Relaxed);
        let ips = return_addresses();
        let first = (round.results.lock().unwrap_or_else(|e| e.into_inner()))
            .seen
            .insert(ips.clone());
        // Capture only (unsymbolised, ~µs); the dumper symbolises, outside any fiber.
        let bt = first.then(Backtrace::force_capture);
        (round.results.lock().unwrap_or_else(|e| e.into_inner()))
            .list
            .push((fiber_id, ips, bt));
        round.done_one();
        true
    }
}

impl Watch {
    /// True while the fiber only answers a capture between two halves of one park
    /// (`serve_capture`): dumps list it as parked.
    pub(crate) fn is_serving(&self) -> bool {
        self.parked_at.load(Relaxed) & SERVING != 0
    }

    /// When the current (or last) park began, coarse session ms.
    pub(crate) fn parked_since(&self) -> u64 {
        self.parked_at.load(Relaxed) & !SERVING
    }

    /// Its park returns for real: no longer only serving. One relaxed load when it was not.
    #[inline]
    pub(crate) fn park_ended(&self) {
        if self.parked_at.load(Relaxed) & SERVING != 0 {
            self.parked_at.fetch_and(!SERVING, Relaxed);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let req = *self.capture.get_mut();
        if !req.is_null() {
            // SAFETY: a non-null `capture` owns one count (`request_capture`).
            let round = unsafe { Arc::from_raw(req) };
            round.done_one(); // unanswered: the dumper stops waiting for this fiber
        }
    }
}
