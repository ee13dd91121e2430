//! `poll` and `ppoll` inside a hooked fiber.
//!
//! When every fd in the set is managed, the fiber waits on the reactor for each fd's
//! directions (enqueued on all of them at once, `wait::park_on`) and re-polls with a zero
//! timeout after each wake-up. A set with any other fd (a pipe, an eventfd, a file) cannot
//! be waited for on the reactor, so the real call runs on the blocking pool while the fiber
//! parks. An empty set is a sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::{c_int, nfds_t, pollfd, sigset_t, timespec};

use super::table::{self, Registration};
use super::wait::{park_on, register, Woke};
use super::{errno, hooked_fiber, must_stop, park_guarded, set_errno};
use crate::fiber::FiberRef;
use crate::io::reactor::Direction;
use crate::park::ParkReason;

type RealPoll = unsafe extern "C" fn(*mut pollfd, nfds_t, c_int) -> c_int;

/// Hooked `poll(2)`.
#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    let real = real!(POLL: RealPoll);
    let fiber = if timeout == 0 { None } else { hooked_fiber() };
    let Some(fiber) = fiber else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fds, nfds, timeout) };
    };
    let deadline = u64::try_from(timeout)
        .ok()
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    // SAFETY: the caller passes `nfds` pollfds at `fds` (poll(2)).
    unsafe { poll_fiber(&fiber, fds, nfds, deadline) }
}

/// Hooked `ppoll(2)`. With a signal mask it goes to libc (a fiber cannot change its
/// worker's mask for the wait).
#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    let fiber = if sigmask.is_null() {
        hooked_fiber()
    } else {
        None
    };
    let Some(fiber) = fiber else {
        let real = real!(PPOLL: unsafe extern "C" fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int);
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fds, nfds, timeout, sigmask) };
    };
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: non-null: the caller passes a readable timespec (ppoll(2)).
        let ts = unsafe { timeout.read() };
        if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
            set_errno(libc::EINVAL);
            return -1;
        }
        Instant::now().checked_add(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    };
    // SAFETY: as in `poll`.
    unsafe { poll_fiber(&fiber, fds, nfds, deadline) }
}

/// # Safety
/// `fds` points to `nfds` pollfds the caller lets us read and write.
unsafe fn poll_fiber(
    fiber: &FiberRef,
    fds: *mut pollfd,
    nfds: nfds_t,
    deadline: Option<Instant>,
) -> c_int {
    let real = real!(POLL: RealPoll);
    if nfds == 0 {
        return sleep_until(deadline);
    }
    let Ok(n) = usize::try_from(nfds) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    let all_managed = {
        // SAFETY: the caller's `nfds` pollfds (function docs); a shared view while we only read.
        let set = unsafe { std::slice::from_raw_parts(fds, n) };
        set.iter()
            .all(|p| p.fd < 0 || table::managed(p.fd).is_some())
    };
    if !all_managed {
        return on_pool(fds, nfds, deadline);
    }
    let saved = errno();
    loop {
        // Step 1 for every fd: its registration's readiness before the attempt.
        let regs = {
            // SAFETY: as above.
            let set = unsafe { std::slice::from_raw_parts(fds, n) };
            match registrations(set) {
                Ok(Some(r)) => r,
                Ok(None) => continue, // one was just registered: take the snapshots again
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            }
        };
        // SAFETY: the caller's pollfds; timeout 0 never blocks.
        let ready = unsafe { real(fds, nfds, 0) };
        if ready != 0 {
            if ready > 0 {
                set_errno(saved);
            }
            return ready;
        }
        if must_stop() {
            set_errno(libc::ECANCELED);
            return -1;
        }
        // Step 3: clear what the attempt found not ready, unless an edge came meanwhile.
        let mut waits = Vec::with_capacity(regs.len() * 2);
        let mut retry = false;
        for (reg, snap, dirs) in &regs {
            for dir in dirs.iter().flatten() {
                retry |= !reg.io.clear(*snap, *dir);
                waits.push((&*reg.io, *dir));
            }
        }
        if retry {
            continue;
        }
        match park_on(fiber, &waits, ParkReason::IoRead, deadline) {
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

type Waits = Vec<(Arc<Registration>, usize, [Option<Direction>; 2])>;

/// Each pollfd's registration, snapshot and directions; `Ok(None)` after registering one.
fn registrations(set: &[pollfd]) -> Result<Option<Waits>, c_int> {
    let mut out = Vec::with_capacity(set.len());
    for p in set.iter().filter(|p| p.fd >= 0) {
        let Some(slot) = table::managed(p.fd) else {
            continue; // closed meanwhile: the zero-timeout poll reports POLLNVAL
        };
        let Some(reg) = slot.registration() else {
            register(p.fd, slot)?;
            return Ok(None);
        };
        let snap = reg.io.snapshot();
        let read = p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0;
        let write = p.events & libc::POLLOUT != 0;
        // Errors and hang-ups are reported whatever was asked: with neither direction,
        // wait for the events epoll reports them with (readable).
        let dirs = [
            (read || !write).then_some(Direction::Read),
            write.then_some(Direction::Write),
        ];
        out.push((reg, snap, dirs));
    }
    Ok(Some(out))
}

/// The set holds fds the reactor does not know: the real poll runs on the blocking pool.
fn on_pool(fds: *mut pollfd, nfds: nfds_t, deadline: Option<Instant>) -> c_int {
    struct Set(*mut pollfd);
    // SAFETY: the pointer is only used by the pool thread while the fiber, which owns the
    // caller's frame, waits for it (`run_blocking` returns after the closure).
    unsafe impl Send for Set {}
    let set = Set(fds);
    let timeout = super::wait::poll_timeout(deadline).unwrap_or_default();
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        crate::run_blocking(move || {
            let set = set;
            let real = real!(POLL: RealPoll);
            // SAFETY: the caller's pollfds (`poll_fiber`'s contract), alive while we run.
            let r = unsafe { real(set.0, nfds, timeout) };
            (r, errno())
        })
    }));
    match done {
        Ok((r, e)) => {
            if r < 0 {
                set_errno(e);
            }
            r
        }
        Err(_) => {
            set_errno(libc::ECANCELED);
            -1
        }
    }
}

/// `poll` with no fds: a sleep (for ever without a deadline, until shutdown unwinds us).
fn sleep_until(deadline: Option<Instant>) -> c_int {
    let saved = errno();
    while deadline.is_none_or(|d| Instant::now() < d) && !crate::park::cancelling() {
        if park_guarded(ParkReason::Sleep, deadline).is_err() {
            break;
        }
    }
    set_errno(saved);
    0
}
