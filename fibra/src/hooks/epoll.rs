//! `epoll_create`/`epoll_create1` and `epoll_wait`/`epoll_pwait` inside a hooked fiber: an
//! event loop run by a library (its own epoll instance, e.g. `mio::Poll` used directly) parks
//! its fiber instead of its worker.
//!
//! Opt-in (`RuntimeBuilder::hooks_epoll`; `mod.rs` says why). An epoll instance made in a
//! fiber of such a runtime is managed (`table::manage_epoll`). A wait on it
//! that would block registers the epoll fd itself with the worker's reactor (an epoll fd is
//! pollable: it reads ready while its own ready list is not empty, and nesting one epoll in
//! another is what Linux allows for exactly this), takes the readiness snapshot, retries the
//! real call with a zero timeout and parks until the reactor reports the instance readable or
//! the caller's timeout passes: `wait.rs`'s protocol with the epoll fd as the one fd.
//! `epoll_ctl` needs no hook: adding or changing an interest never blocks, and a change that
//! makes the instance ready wakes the outer reactor by itself.
//!
//! Every other case goes to libc: a plain or pool thread, an epoll instance made outside a
//! fiber (fibra's own reactors among them), a zero timeout, and `epoll_pwait` with a signal
//! mask (a fiber cannot change its worker's mask for the wait).

use std::time::{Duration, Instant};

use libc::{c_int, epoll_event, sigset_t};

use super::table::{self, Slot};
use super::wait::{park_on, register, Woke};
use super::{epoll_fiber, errno, must_stop, set_errno};
use crate::fiber::FiberRef;
use crate::io::reactor::Direction;
use crate::park::ParkReason;

type RealWait = unsafe extern "C" fn(c_int, *mut epoll_event, c_int, c_int) -> c_int;

/// Hooked `epoll_create1(2)`: in a fiber of a runtime with hooks and `hooks_epoll` on, the
/// new instance is managed.
#[no_mangle]
pub unsafe extern "C" fn epoll_create1(flags: c_int) -> c_int {
    let real = real!(EPOLL_CREATE1: unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: the caller's argument, unchanged.
    let fd = unsafe { real(flags) };
    manage_if_hooked(fd)
}

/// Hooked `epoll_create(2)`: as `epoll_create1`.
#[no_mangle]
pub unsafe extern "C" fn epoll_create(size: c_int) -> c_int {
    let real = real!(EPOLL_CREATE: unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: the caller's argument, unchanged.
    let fd = unsafe { real(size) };
    manage_if_hooked(fd)
}

/// Manages `fd` if the caller is a fiber of a runtime with `hooks_epoll(true)`; without the
/// opt-in the instance stays libc's in every respect.
fn manage_if_hooked(fd: c_int) -> c_int {
    // Without table memory the instance stays unmanaged: its waits block the worker, as
    // they would without the hooks.
    if fd >= 0 && epoll_fiber().is_some() {
        table::manage_epoll(fd);
    }
    fd
}

/// Hooked `epoll_wait(2)`.
#[no_mangle]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: c_int,
) -> c_int {
    let real = real!(EPOLL_WAIT: RealWait);
    match waiter(epfd, timeout != 0) {
        // SAFETY: the caller's arguments, unchanged.
        None => unsafe { real(epfd, events, maxevents, timeout) },
        // SAFETY: as above; each retry runs with a zero timeout.
        Some((fiber, slot)) => wait_fiber(&fiber, epfd, slot, deadline(timeout), || unsafe {
            real(epfd, events, maxevents, 0)
        }),
    }
}

/// Hooked `epoll_pwait(2)`: without a signal mask, as `epoll_wait`.
#[no_mangle]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut epoll_event,
    maxevents: c_int,
    timeout: c_int,
    sigmask: *const sigset_t,
) -> c_int {
    let real = real!(EPOLL_PWAIT: unsafe extern "C" fn(c_int, *mut epoll_event, c_int, c_int, *const sigset_t) -> c_int);
    match waiter(epfd, timeout != 0 && sigmask.is_null()) {
        // SAFETY: the caller's arguments, unchanged.
        None => unsafe { real(epfd, events, maxevents, timeout, sigmask) },
        // SAFETY: as above (`sigmask` is null here); each retry runs with a zero timeout.
        Some((fiber, slot)) => wait_fiber(&fiber, epfd, slot, deadline(timeout), || unsafe {
            real(epfd, events, maxevents, 0, sigmask)
        }),
    }
}

/// The calling fiber and the instance's slot when this wait may park: `may_block`, a managed
/// epoll instance, a hooked fiber of a runtime with `hooks_epoll(true)`. The table lookup comes first: it is the whole cost for
/// every instance the hooks do not manage (fibra's own reactors poll through here).
#[inline]
fn waiter(epfd: c_int, may_block: bool) -> Option<(FiberRef, &'static Slot)> {
    if !may_block {
        return None;
    }
    let slot = table::managed(epfd).filter(|s| s.is_epoll())?;
    Some((epoll_fiber()?, slot))
}

/// `epoll_wait`'s timeout in ms as a deadline; `None` (no deadline) for a negative one.
fn deadline(timeout: c_int) -> Option<Instant> {
    let ms = u64::try_from(timeout).ok()?;
    Instant::now().checked_add(Duration::from_millis(ms))
}

/// Parks `fiber` until `try_wait` (the real wait with a zero timeout) finds events or fails,
/// or `deadline` passes (0 events). `errno` is the caller's unless the call fails.
fn wait_fiber(
    fiber: &FiberRef,
    epfd: c_int,
    slot: &Slot,
    deadline: Option<Instant>,
    mut try_wait: impl FnMut() -> c_int,
) -> c_int {
    let saved = errno();
    loop {
        // Step 1: the registration's readiness before the attempt.
        let Some(reg) = slot.registration() else {
            // Registering reports the instance's current readiness as an edge: nothing is
            // missed between here and the snapshot taken on the next round.
            if let Err(e) = register(epfd, slot) {
                set_errno(e);
                return -1;
            }
            continue;
        };
        let snap = reg.io.snapshot();
        let n = try_wait();
        if n != 0 {
            if n > 0 {
                set_errno(saved);
            }
            return n; // events, or the real call's error (EBADF, EINVAL, EINTR) with its errno
        }
        if must_stop() {
            set_errno(libc::ECANCELED);
            return -1;
        }
        // Step 3: clear readability unless an edge came during the attempt.
        if !reg.io.clear(snap, Direction::Read) {
            continue;
        }
        match park_on(
            fiber,
            &[(&reg.io, Direction::Read)],
            ParkReason::IoRead,
            deadline,
        ) {
            Ok(Woke::Retry) => {}
            Ok(Woke::TimedOut) => {
                set_errno(saved);
                return 0;
            }
            Err(e) => {
                set_errno(e);
                return -1;
            }
        }
    }
}
