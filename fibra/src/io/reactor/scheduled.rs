//! One registration's readiness and the fibers waiting on it.
//!
//! # No lost readiness edges
//! Epoll is edge-triggered: an edge is reported once, so the word below remembers it until a
//! syscall proves it stale. `readiness` holds the READABLE/WRITABLE bits and a *tick* that
//! every event bumps.
//! ```text
//! I/O op (fiber):                              Reactor (owner worker, per event):
//! 1. snap = readiness (Acquire)                a. readiness: bits |= ready, tick += 1 (AcqRel RMW)
//! 2. syscall → WouldBlock                      b. lock waiters; take those whose bit is set
//! 3. clear the bit only if tick == snap.tick   c. unlock; unpark them
//!    (CAS); a changed tick means an edge came
//!    after 1: retry the syscall
//! 4. lock waiters; if the bit is set: unlock,
//!    retry; else enqueue self; unlock; park
//! ```
//! Step 3 cannot erase an edge newer than the failed syscall (the tick changed), and step 4
//! pairs with b–c through the mutex: if the reactor locks first, its step a happened before
//! and step 4 sees the bit; if the fiber locks first, the reactor finds it enqueued. A wake
//! may still be spurious (the fiber retries, sees WouldBlock, and waits again).

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Mutex;

use crate::fiber::FiberRef;

/// Which way a fiber waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

pub(crate) const READABLE: usize = 1;
pub(crate) const WRITABLE: usize = 2;
const BITS: usize = READABLE | WRITABLE;
const TICK_ONE: usize = 1 << 8;
const TICK: usize = !(TICK_ONE - 1);

#[derive(Default)]
struct Waiters {
    readers: Vec<FiberRef>,
    writers: Vec<FiberRef>,
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut Vec<FiberRef> {
        match dir {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

/// Shared by the socket that owns the registration and the reactor that dispatches its events.
pub(crate) struct ScheduledIo {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    pub(crate) fn new() -> ScheduledIo {
        ScheduledIo {
            readiness: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// Step 1: the readiness word before an attempt. Acquire pairs with the reactor's RMW, so
    /// the syscall after it sees what the kernel reported.
    pub(crate) fn snapshot(&self) -> usize {
        self.readiness.load(Acquire)
    }

    /// Step 3: after `WouldBlock`, forget `dir`'s readiness unless an event arrived since
    /// `snap`. Returns false when the caller must retry its syscall instead of waiting.
    pub(crate) fn clear(&self, snap: usize, dir: Direction) -> bool {
        self.readiness
            .fetch_update(AcqRel, Acquire, |cur| {
                (cur & TICK == snap & TICK).then_some(cur & !dir.bit())
            })
            .is_ok()
    }

    /// Owner worker (step a–b): records an event and moves the fibers it releases to `woken`.
    pub(crate) fn set_ready(&self, ready: usize, woken: &mut Vec<FiberRef>) {
        let ready = ready & BITS;
        // AcqRel RMW: pairs with `clear`'s CAS and with `snapshot`.
        self.readiness
            .fetch_update(AcqRel, Acquire, |cur| {
                Some((cur & TICK).wrapping_add(TICK_ONE) | (cur & BITS) | ready)
            })
            .ok();
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if ready & READABLE != 0 {
            woken.append(&mut w.readers);
        }
        if ready & WRITABLE != 0 {
            woken.append(&mut w.writers);
        }
    }

    /// Step 4: enqueues `fiber` unless `dir` is ready. Returns false if it is ready.
    pub(crate) fn enqueue(&self, dir: Direction, fiber: &FiberRef) -> bool {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // The lock orders this load after any `set_ready` that locked before us.
        if self.readiness.load(Acquire) & dir.bit() != 0 {
            return false;
        }
        let list = w.list(dir);
        if !list.iter().any(|f| std::sync::Arc::ptr_eq(f, fiber)) {
            list.push(fiber.clone());
        }
        true
    }

    /// The wait is over (ready, timed out, cancelled or unwound): drop our entry if the
    /// reactor did not take it. Keeps no fiber reference alive past its wait (no cycle
    /// fiber → session → reactor → fiber).
    pub(crate) fn dequeue(&self, dir: Direction, fiber: &FiberRef) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.list(dir).retain(|f| !std::sync::Arc::ptr_eq(f, fiber));
    }
}
