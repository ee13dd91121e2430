//! `Select::ready` and its kin: wait until one of several operations could proceed, and say
//! which, without performing it.
//!
//! # Protocol
//! ```text
//! 1. In a random order (Fisher-Yates, as `select::run`), look at each operation under its
//!    channel's lock; the first that would not block is the answer.
//! 2. One signal; for each operation, under its lock: ready now → abort (claim our own
//!    signal, take the watchers back, go to 1); else queue a watcher node (`waiters.rs`).
//! 3. Wait for a token (a channel's state changed), the deadline (ours, or a timer
//!    channel's due time) or cancellation; take every watcher back; go to 1.
//! ```
//! A watcher is queued under the same lock as the look that found its operation blocked, and
//! every step that unblocks it claims it under that lock (`channel.rs`, "Readiness"), so no
//! wake-up is lost; a watcher takes nothing, so a wake-up it gets is never one a receiver or
//! sender needed. The index returned was seen ready under its lock during the call; by the
//! time the caller acts on it another party may have taken the item or the slot.
//! Rejected: returning the woken watcher's index straight away (crossbeam-channel does): a
//! partner may have taken what woke it before we look, and going back to 1 costs one lock per
//! operation, keeps the answer one seen ready, and keeps the choice uniform among the ready.

use std::time::Instant;

use super::select::{random_below, Arm, Ctx, Mode, Reg};
use super::wait::wait;
use super::waiters::{ABORTED, CANCELLED, TIMED_OUT, WAITING};
use crate::coop;
use crate::park::ParkReason;

/// Takes every watcher back when the wait ends, also when it is left by unwinding (shutdown).
struct Watches<'s, 'a> {
    arms: &'s mut [&'a mut dyn Arm],
}

impl Drop for Watches<'_, '_> {
    fn drop(&mut self) {
        for arm in self.arms.iter_mut() {
            arm.unwatch();
        }
    }
}

/// Runs a readiness select over `arms`: the index of one that would not block, or `None` if
/// `mode` gave up (non-blocking, or the deadline passed). `biased`: the first ready arm in
/// the order given, not a random one. Arms are never performed.
pub(crate) fn run(arms: &mut [&mut dyn Arm], mode: Mode, biased: bool) -> Option<usize> {
    let n = arms.len();
    let mut order: Vec<usize> = (0..n).collect();
    let deadline = match mode {
        Mode::Deadline(d) => d,
        _ => None,
    };
    loop {
        // 1. Each ready arm is equally likely to be the first ready one found (`select::run`).
        for i in 0..n {
            if !biased {
                order.swap(i, i + random_below(n - i));
            }
            if arms[order[i]].ready_now() {
                coop::consume(); // a loop of ready + try_recv must let the others run
                return Some(order[i]);
            }
        }
        match mode {
            Mode::NonBlocking => {
                coop::consume();
                return None;
            }
            Mode::Deadline(d) if d.is_some_and(|d| Instant::now() >= d) => return None,
            _ => {}
        }
        // 2. Declared before `watches`, so dropped after the watchers are taken back.
        let ctx = Ctx::new();
        let watches = Watches { arms: &mut *arms };
        let mut ready = false;
        let mut wake_at = deadline;
        for &k in order.iter() {
            if ctx.signal().state() != WAITING {
                break; // already woken through an earlier watcher
            }
            if watches.arms[k].watch(&ctx, k + 1, &mut wake_at) == Reg::Ready {
                ready = true;
                break;
            }
        }
        // 3.
        let token = if !ready {
            wait(ctx.signal(), ParkReason::Select, wake_at)
        } else if ctx.signal().claim_self(ABORTED) {
            ABORTED
        } else {
            wait(ctx.signal(), ParkReason::Select, None) // a claim beat our abort: it is done
        };
        drop(watches);
        match token {
            TIMED_OUT if deadline.is_some_and(|d| Instant::now() >= d) => return None,
            // Shutdown is unwinding this fiber: every wait fails from now on, so waiting again
            // would spin. The caller's operation on the arm returned fails as disconnected.
            CANCELLED => return order.first().copied(),
            _ => {} // woken, aborted, or a timer arm fell due: look again
        }
    }
}
