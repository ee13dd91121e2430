//! The sleep hooks: inside a hooked fiber, `nanosleep`, `clock_nanosleep`, `usleep` and
//! `sleep` park the fiber on its worker's timers; everywhere else they are libc's.
//!
//! A sleep runs to its deadline: a `JoinHandle::cancel` request waits for the next fibra park
//! (the hook cannot unwind, and returning early would turn a sleep loop into a busy loop).
//! During shutdown's unwinding it returns at once, as `fibra::sleep` does.

use std::time::{Duration, Instant};

use libc::{c_int, c_uint, clockid_t, timespec};

use super::{errno, in_hooked_fiber, park_guarded, set_errno};
use crate::park::{self, ParkReason};

/// Parks the calling (hooked) fiber for `dur`; `errno` is the caller's afterwards.
fn sleep_fiber(dur: Duration) {
    let saved = errno();
    let deadline = Instant::now().checked_add(dur);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) || park::cancelling() {
            break;
        }
        if park_guarded(ParkReason::Sleep, deadline).is_err() {
            break; // shutdown unwinds this fiber: the sleep ends early
        }
    }
    set_errno(saved);
}

/// A `timespec` as a duration, or the errno a sleep reports for it.
fn duration(ts: *const timespec) -> Result<Duration, c_int> {
    if ts.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null, and the caller passes a readable timespec (nanosleep(2)).
    let ts = unsafe { ts.read() };
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Hooked `nanosleep(2)`.
#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    if !in_hooked_fiber() {
        let real = real!(NANOSLEEP: unsafe extern "C" fn(*const timespec, *mut timespec) -> c_int);
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(req, rem) };
    }
    match duration(req) {
        Ok(d) => {
            sleep_fiber(d);
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// Hooked `clock_nanosleep(2)`: `CLOCK_REALTIME`, `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME`,
/// relative or `TIMER_ABSTIME`; CPU-time clocks go to libc.
#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let ours = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    );
    if !ours || !in_hooked_fiber() {
        let real = real!(CLOCK_NANOSLEEP: unsafe extern "C" fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int);
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(clock, flags, req, rem) };
    }
    let d = match duration(req) {
        Ok(d) => d,
        Err(e) => return e, // clock_nanosleep returns the error number
    };
    let d = if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a live timespec; `clock` is one of the three above.
        unsafe { libc::clock_gettime(clock, &mut now) };
        d.saturating_sub(Duration::new(now.tv_sec.max(0) as u64, now.tv_nsec as u32))
    } else {
        d
    };
    sleep_fiber(d);
    0
}

/// Hooked `usleep(3)`.
#[no_mangle]
pub unsafe extern "C" fn usleep(us: c_uint) -> c_int {
    if !in_hooked_fiber() {
        let real = real!(USLEEP: unsafe extern "C" fn(c_uint) -> c_int);
        // SAFETY: the caller's argument, unchanged.
        return unsafe { real(us) };
    }
    sleep_fiber(Duration::from_micros(us.into()));
    0
}

/// Hooked `sleep(3)`.
#[no_mangle]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    if !in_hooked_fiber() {
        let real = real!(SLEEP: unsafe extern "C" fn(c_uint) -> c_uint);
        // SAFETY: the caller's argument, unchanged.
        return unsafe { real(secs) };
    }
    sleep_fiber(Duration::from_secs(secs.into()));
    0
}
