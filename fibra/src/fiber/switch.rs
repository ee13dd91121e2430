//! The only caller of corosensei: creating a fiber's coroutine, resuming it, suspending it.
//!
//! Both switch functions are `#[inline(never)]`: a switch is an opaque call, so LLVM cannot
//! keep a thread-local address computed before it in a register after it (ARCHITECTURE.md §4).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::header::Header;
use crate::stack::FiberStack;

/// Why a fiber switched back to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// It waits for an unpark.
    Park,
    /// It wants to go to the back of the run queue.
    Yield,
}

pub(crate) type FiberCoroutine = Coroutine<(), Suspend, (), FiberStack>;
type FiberYielder = Yielder<(), Suspend>;

/// What a resumed fiber did.
pub(crate) enum Switched {
    Suspended(Suspend),
    Finished,
}

/// Builds the coroutine that runs `body` on `stack`.
///
/// # Safety
/// - `header` points to the control block that will own this coroutine and outlives it.
/// - Everything `body` borrows stays valid until the coroutine finishes or is dropped
///   (`fibra::scope` guarantees that by waiting for its fibers).
/// - `body` must not unwind, except to continue a forced unwind started by corosensei.
pub(crate) unsafe fn new_coroutine<F: FnOnce()>(
    stack: FiberStack,
    header: *const Header,
    body: F,
) -> FiberCoroutine {
    let entry = move |yielder: &FiberYielder, ()| {
        // SAFETY: the caller promises `header` outlives the coroutine; only this fiber writes
        // `yielder` (header.rs field table).
        unsafe {
            (*header)
                .yielder
                .set(yielder as *const FiberYielder as *const ())
        };
        body()
    };
    // SAFETY: the caller's promise on borrowed data is exactly `with_stack_unchecked`'s.
    unsafe { Coroutine::with_stack_unchecked(stack, entry) }
}

/// Runs the fiber until it suspends or finishes. The thread that owns the run only.
#[inline(never)]
pub(crate) fn resume(co: &mut FiberCoroutine) -> Switched {
    match co.resume(()) {
        CoroutineResult::Yield(s) => Switched::Suspended(s),
        CoroutineResult::Return(()) => Switched::Finished,
    }
}

/// Switches from the running fiber back to its worker. On the fiber's own stack only.
///
/// # Cancellation
/// Shutdown unwinds a parked fiber with corosensei's `force_unwind`, which makes this call
/// unwind with corosensei's private payload. It is swapped here for [`Cancelled`], so every
/// catch on the way up (`Start::run`, `drop_or_abort`, the fiber's root) can tell it from a
/// user's panic, and the root ends it and returns normally (corosensei accepts that as the
/// end of a forced unwind). A fiber parked while it was already unwinding (a destructor that
/// waits, during a panic) is not unwound a second time, which would abort the process: the
/// park returns, and since the fiber is now CANCELLING its waits return at once, so the
/// unwinding it was doing runs to the end. (std counts panics per thread, so a fiber parked
/// mid-unwind makes this test true for the other fibers of its thread too, until it is
/// resumed: docs/SOUNDNESS.md §6.)
///
/// # Where it stopped
/// While suspended, the fiber's `Watch::suspended_at` points at a [`SavedRegs`] in this
/// function's frame: registers read at one instruction here, so that the monitor can unwind
/// the fiber's stack from outside, from a kernel copy, while its worker is stuck
/// (`sched/lock_holder.rs`). The frame stays put until the fiber resumes, and the pointer is
/// cleared before this returns or unwinds on (the clear follows the `catch_unwind`).
#[inline(never)]
pub(crate) fn suspend(header: &Header, why: Suspend) {
    let yielder = header.yielder.get() as *const FiberYielder;
    debug_assert!(!yielder.is_null(), "suspend before the fiber started");
    let regs = SavedRegs::here();
    // Relaxed: read only by the monitor of this fiber's own stuck worker, which saw the store
    // through the Release of the worker's next `run_start` (monitor.rs, "seqlock").
    (header.watch.suspended_at).store(ptr::from_ref(&regs) as usize, Relaxed);
    let resumed = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `yielder` was set by `new_coroutine`'s entry on this fiber's stack and lives
        // as long as the coroutine; we are running on that stack (callers check that `header`
        // is the current fiber), so the yielder is the live parent link of this coroutine.
        unsafe { (*yielder).suspend(why) }
    }));
    (header.watch.suspended_at).store(0, Relaxed); // running again: `regs` is about to go
    if let Err(forced) = resumed {
        drop(forced); // corosensei's forced unwind: the only unwind out of `Yielder::suspend`
        if !std::thread::panicking() {
            panic::resume_unwind(Box::new(Cancelled));
        }
    }
}

/// A suspended fiber's registers at one instruction inside [`suspend`]: with the stack above
/// `sp`, enough to unwind it with the unwind tables (`sys::unwind`). The callee-saved
/// registers complete the picture of what the fiber's frames hold: a caller's value kept in
/// one of them across the park is saved below `sp` (by corosensei's switch) or nowhere, so it
/// is taken here. `repr(C)`: the monitor reads it as words from a kernel copy of the stack.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SavedRegs {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
    /// `rbx`, `r12`, `r13`, `r14`, `r15`.
    pub(crate) callee_saved: [u64; 5],
}

impl SavedRegs {
    /// Bytes of a `SavedRegs` as the monitor copies it.
    pub(crate) const SIZE: usize = 64;

    /// The registers at this point of the caller (always inlined, so it is the caller's
    /// frame the three describe: the caller must be a function whose frame outlives the
    /// suspension, `suspend`).
    #[inline(always)]
    fn here() -> SavedRegs {
        let (ip, sp, bp, rbx, r12, r13, r14, r15): (u64, u64, u64, u64, u64, u64, u64, u64);
        // SAFETY: copies registers into caller-saved ones named explicitly (so none of them
        // is overwritten before it is read): no memory is read or written, the stack pointer
        // is only read. `ip` is the next instruction's address, so `ip` and `sp` are taken at
        // the same instruction, which is what an unwinder needs.
        unsafe {
            std::arch::asm!(
                "lea rax, [rip]",
                "mov rcx, rsp",
                "mov rdx, rbp",
                "mov rsi, rbx",
                "mov rdi, r12",
                "mov r8, r13",
                "mov r9, r14",
                "mov r10, r15",
                out("rax") ip,
                out("rcx") sp,
                out("rdx") bp,
                out("rsi") rbx,
                out("rdi") r12,
                out("r8") r13,
                out("r9") r14,
                out("r10") r15,
                options(nomem, nostack, preserves_flags),
            );
        }
        SavedRegs {
            ip,
            sp,
            bp,
            callee_saved: [rbx, r12, r13, r14, r15],
        }
    }

    /// Reads one from the bytes of a copy (`SIZE` bytes, little-endian words).
    pub(crate) fn from_bytes(b: &[u8]) -> Option<SavedRegs> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(SavedRegs {
            ip: word(0)?,
            sp: word(1)?,
            bp: word(2)?,
            callee_saved: [word(3)?, word(4)?, word(5)?, word(6)?, word(7)?],
        })
    }
}

/// The payload of a fiber's cancellation (shutdown's unwinding), as fibra carries it: see
/// [`suspend`]. Ends at the fiber's root.
pub(crate) struct Cancelled;

/// True for the payload of shutdown's cancellation of a fiber.
pub(crate) fn is_shutdown_cancellation(payload: &(dyn Any + Send)) -> bool {
    payload.is::<Cancelled>()
}

/// True for the payload of a fiber's cancellation, by shutdown or by `JoinHandle::cancel`
/// (`fiber/cancel.rs`); false for a user's panic.
pub(crate) fn is_cancellation(payload: &(dyn Any + Send)) -> bool {
    is_shutdown_cancellation(payload) || super::cancel::is_payload(payload)
}
