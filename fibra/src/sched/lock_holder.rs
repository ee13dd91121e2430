//! Who holds the futex a stuck worker waits on, when it is a fiber pinned to that very worker:
//! then neither can ever run again, a deadlock (issue 14: a `std::sync` guard held across a
//! fibra park, and another fiber of the same worker locking it).
//!
//! # How the holder is found
//! A std guard keeps a reference to its lock, and the lock keeps its futex word first: `Mutex`
//! at offset 0 (its data field comes last, since `T: ?Sized`), `RwLock`'s state at 0 and its
//! writer-notify word at 4, a `Once`'s completion guard points at the state word itself. So a
//! fiber parked with a guard alive has, in a live frame of its stack, a word pointing at the
//! futex the stuck thread waits on, or a few bytes below it ([`REACH`]). The monitor looks
//! through the stacks of the fibers that cannot run while the worker is stuck: those homed on
//! it (pinned, docs/SOUNDNESS.md §2), suspended, other than the stuck run's own fiber.
//!
//! # Reading a suspended fiber's stack from the monitor
//! - **Where it stopped.** corosensei's switch pushed the resume address, `rbx` and `rbp` at
//!   the suspended coroutine's saved stack pointer, which it keeps in the coroutine, in the
//!   fiber's header (the word the debugger anchor's start-up probe found, `sched/anchor.rs`):
//!   the live part of the stack is `[sp, base)`, and those registers unwind it. Nothing is
//!   stored for this on the park path.
//! - **No fault, no race.** Every byte (the registers too) is copied by the kernel
//!   (`sys::read_own`, `process_vm_readv` on our own pid): a stack given back or unmapped
//!   meanwhile fails with `EFAULT` instead of faulting, and a fiber that runs meanwhile is no
//!   data race, only a torn copy.
//! - **A consistent copy.** A torn copy is thrown away: the caller passes `unchanged`, true
//!   while the stuck worker is still inside the same run (its seqlock counter, monitor.rs).
//!   Pinned fibers run only on their home thread, which is stuck in that run all along, so a
//!   copy taken between two such checks is of a stack nobody touched. Under the migration
//!   opt-in a pinned fiber is no such thing (another worker may resume it, and the user
//!   promised to hold no `!Send` guard across a park anyway): the monitor does not look.
//!
//! # What it cannot tell
//! A parked fiber that holds a plain `&Mutex` (or a `Box<Mutex>`, or a reference to a struct
//! whose first field is the mutex) without holding the lock looks the same. The report says
//! "very likely" for that reason. A reference that a caller keeps in a callee-saved register
//! across the park is on the stack too: corosensei's switch pushes `rbx` and `rbp` and
//! declares the other callee-saved registers clobbered, so the compiler saves them in the
//! frames above. A caller-saved register holds nothing across a call.
//! `parking_lot` waits on a per-thread word, not on the lock: never matched.

use super::anchor::{saved_sp_slot, SAVED_WORDS};
use super::WorkerSlot;
use crate::fiber::FiberRef;

/// A suspended fiber's registers, as its switch left them.
#[derive(Clone, Copy)]
struct Regs {
    ip: u64,
    /// The stack pointer once resumed (past the words the switch pushed).
    sp: u64,
    bp: u64,
    bx: u64,
}

/// Bytes of a parked stack looked through at most: 4× the default stack, and a guard usually
/// sits in the frames near the place the fiber parked, which are read first.
const MAX_SCAN: usize = 256 * 1024;

/// Bytes copied per search at most, over all fibers: a parked fiber uses a few KiB of stack,
/// so this covers ~10,000 of them, and copying it takes the monitor ~10 ms (a `memcpy` through
/// the kernel). Fibers past it are not looked at (a worker with more parked fibers than that
/// may get the futex advice instead of the deadlock).
const MAX_TOTAL: usize = 32 << 20;

/// How far below the futex word a guard's reference may point (see the module doc). 16 would
/// also match an `Arc<Mutex>`'s pointer (two counts before the mutex): any clone of the
/// `Arc`, held by a fiber that never locked, would then pass for the holder.
const REACH: usize = 8;

/// A fiber pinned to the stuck worker that very likely holds the futex.
pub(crate) struct Holder {
    pub(crate) fiber: FiberRef,
    regs: Regs,
    /// Kernel copy of its stack from `regs.sp` up.
    stack: Vec<u8>,
}

impl Holder {
    /// Its frames, innermost first, from the code that parked down to its entry, as
    /// `function at file:line:col`. Unwinds and symbolises the copy: call only for a report
    /// that is shown.
    pub(crate) fn frames(&self) -> Vec<String> {
        let addrs = crate::sys::unwind(self.regs.ip, self.regs.sp, self.regs.bp, &self.stack);
        let mut frames = crate::sys::symbolise(&addrs);
        // The switch and the park, with the `catch_unwind` around the switch: how it waits,
        // not where.
        let machinery = frames
            .iter()
            .take_while(|(f, _)| {
                ["corosensei::", "fibra::fiber::switch::", "fibra::park::"]
                    .iter()
                    .chain(&["core::ops::function::", "<core::panic::unwind_safe::"])
                    .chain(&["std::panicking::", "std::panic::", "__rust_try"])
                    .any(|p| f.starts_with(p))
            })
            .count();
        frames.drain(..machinery);
        super::stall::fiber_frames(frames)
    }
}

/// Looks for the holder of `futex` among the fibers homed on `slot` (whose worker is stuck in
/// the run of fiber `running`). `unchanged()` says the worker is still in that run; the copies
/// are kept only if it holds after all of them. Monitor thread only; without the migration
/// opt-in only (module doc).
pub(crate) fn find(
    slot: &WorkerSlot,
    running: u64,
    futex: usize,
    unchanged: impl Fn() -> bool,
) -> Option<Holder> {
    let mut best: Option<(usize, u64, Holder)> = None;
    let mut budget = MAX_TOTAL;
    for fiber in slot.registry.snapshot() {
        if budget == 0 {
            break;
        }
        let id = fiber.identity.id;
        if id == running || fiber.state.is_complete() {
            continue;
        }
        let Some((regs, stack)) = copy_stack(&fiber, budget) else {
            continue;
        };
        budget -= stack.len();
        // The live frames, and what the switch saved of the callee-saved registers.
        let held = [regs.bx, regs.bp].map(|w| w as usize);
        let words = stack_words(&stack, regs.sp as usize).chain(held);
        let Some(dist) = nearest_reference(words, futex) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(d, i, _)| (dist, id) < (*d, *i));
        if better {
            best = Some((dist, id, Holder { fiber, regs, stack }));
        }
    }
    // A copy taken while the worker moved on may be torn, and the fiber may have let go.
    best.filter(|_| unchanged()).map(|(_, _, h)| h)
}

/// A suspended fiber's saved registers and live stack (at most `budget` bytes of it), copied
/// by the kernel; `None` if it is not suspended, or its stack is not where its saved stack
/// pointer says.
fn copy_stack(fiber: &FiberRef, budget: usize) -> Option<(Regs, Vec<u8>)> {
    let word = |b: &[u8], i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    let slot = saved_sp_slot(fiber)?;
    let sp = word(&crate::sys::read_own(slot, 8).ok()?, 0)? as usize;
    if sp == 0 {
        return None; // running, or never suspended
    }
    let base = crate::stack::stack_base_of(sp)?;
    let pushed = SAVED_WORDS * 8;
    let mut stack = crate::sys::read_own(sp, (base - sp).min(MAX_SCAN).min(budget)).ok()?;
    let regs = Regs {
        ip: word(&stack, 0)?,
        bx: word(&stack, 1)?,
        bp: word(&stack, 2)?,
        sp: (sp + pushed) as u64,
    };
    stack.drain(..pushed);
    Some((regs, stack))
}

/// The words of `stack` (copied from address `sp`), read at 8-aligned addresses, where the
/// compiler keeps pointers.
fn stack_words(stack: &[u8], sp: usize) -> impl Iterator<Item = usize> + '_ {
    let skip = (sp.next_multiple_of(8) - sp).min(stack.len());
    stack[skip..]
        .chunks_exact(8)
        .map(|w| usize::from_le_bytes(w.try_into().expect("8 bytes")))
}

/// How far below `futex` the nearest of `words` points that lies within [`REACH`] of it; 0 is
/// an exact hit.
fn nearest_reference(words: impl Iterator<Item = usize>, futex: usize) -> Option<usize> {
    words
        .filter_map(|w| futex.checked_sub(w).filter(|&below| below <= REACH))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[usize]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn a_guard_points_at_the_lock_an_arc_does_not() {
        let futex = 0x7f00_0000_1000usize;
        let nearest = |b: &[u8], sp: usize| nearest_reference(stack_words(b, sp), futex);
        // An exact hit wins over one a word below.
        let s = words(&[1, futex - 8, 3, futex, 5]);
        assert_eq!(nearest(&s, 0x1000), Some(0));
        assert_eq!(nearest(&words(&[futex - 4]), 0x1000), Some(4));
        // An `Arc<Mutex>`'s pointer (16 below), and anything above the word, are not a hold.
        let arc_only = words(&[futex - 16, futex + 8, 0, usize::MAX]);
        assert_eq!(nearest(&arc_only, 0x1000), None);
        // Words are read at 8-aligned addresses even when `sp` is not.
        let mut odd = vec![0u8; 4];
        odd.extend(words(&[futex]));
        assert_eq!(nearest(&odd, 0x1004), Some(0));
        assert_eq!(nearest(&odd[..11], 0x1004), None);
        assert_eq!(nearest(&odd[..2], 0x1004), None);
    }

    #[test]
    fn std_locks_keep_their_futex_word_first() {
        // The offsets the module doc relies on: locking changes the lock's first word.
        fn first_word<L>(lock: &L) -> Vec<u8> {
            crate::sys::read_own(std::ptr::from_ref(lock) as usize, 4).unwrap()
        }
        let m = std::sync::Mutex::new([7u64; 16]);
        let before = first_word(&m);
        let g = m.lock().unwrap();
        assert_ne!(first_word(&m), before);
        drop(g);
        let m = std::sync::Mutex::new(vec![1u8]);
        let before = first_word(&m);
        let g = m.lock().unwrap();
        assert_ne!(first_word(&m), before);
        drop(g);
        let rw = std::sync::RwLock::new(String::new());
        let before = first_word(&rw);
        let g = rw.write().unwrap();
        assert_ne!(first_word(&rw), before);
        drop(g);
    }
}
