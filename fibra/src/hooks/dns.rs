//! `getaddrinfo` inside a hooked fiber runs on the blocking pool: glibc's resolver makes its
//! own sockets through internal calls no hook sees, so it would block the worker.

use libc::{addrinfo, c_char, c_int};

use super::in_hooked_fiber;

type RealGetaddrinfo = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const addrinfo,
    *mut *mut addrinfo,
) -> c_int;

/// Hooked `getaddrinfo(3)`.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let real = real!(GETADDRINFO: RealGetaddrinfo);
    if !in_hooked_fiber() {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(node, service, hints, res) };
    }
    struct Args(
        *const c_char,
        *const c_char,
        *const addrinfo,
        *mut *mut addrinfo,
    );
    // SAFETY: the pointers are used only by the pool thread while the fiber, whose caller
    // owns what they point to, waits for it (`run_blocking` returns after the closure).
    unsafe impl Send for Args {}
    let args = Args(node, service, hints, res);
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        crate::run_blocking(move || {
            let a = args;
            // SAFETY: the caller's arguments, unchanged, on another thread (getaddrinfo is
            // thread-safe).
            let r = unsafe { real(a.0, a.1, a.2, a.3) };
            (r, super::errno())
        })
    }));
    match done {
        Ok((r, e)) => {
            if r == libc::EAI_SYSTEM {
                super::set_errno(e);
            }
            r
        }
        Err(_) => {
            super::set_errno(libc::ECANCELED);
            libc::EAI_SYSTEM
        }
    }
}
