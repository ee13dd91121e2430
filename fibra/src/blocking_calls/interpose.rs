//! Debug builds without `hooks`: libc's blocking socket, sleep, `poll` and lookup calls,
//! defined in the final binary (symbol interposition, as `hooks/` does), each looking at the
//! call (`super::socket_call`, `super::blocking_call`) and then calling libc's own definition
//! with the caller's arguments, unchanged.
//!
//! Each function's `# Safety` is its libc function's: the caller passes what the C prototype
//! and the man page ask for; the pointers go to libc untouched, and only `ppoll`'s timeout
//! is read here.

use libc::{addrinfo, c_char, c_int, c_uint, c_void, clockid_t, iovec, msghdr, nfds_t, pollfd};
use libc::{sigset_t, size_t, sockaddr, socklen_t, ssize_t, timespec};

use super::{blocking_call, socket_call, Kind};

/// `name(fd, args..) -> ret = REAL, flags`: a socket call that is looked at, then passed on.
macro_rules! watched_socket_calls {
    ($($name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)*) -> $ret:ty = $real:ident, $flags:expr;)*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)*) -> $ret {
                socket_call(stringify!($name), $fd, $flags);
                let real = real!($real: unsafe extern "C" fn(c_int $(, $ty)*) -> $ret);
                // SAFETY: the caller's arguments, unchanged (module docs).
                unsafe { real($fd $(, $arg)*) }
            }
        )*
    };
}

watched_socket_calls! {
    read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t = READ, 0;
    readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t = READV, 0;
    recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t = RECV, flags;
    recvfrom(
        fd: c_int,
        buf: *mut c_void,
        n: size_t,
        flags: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t
    ) -> ssize_t = RECVFROM, flags;
    recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t = RECVMSG, flags;
    write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t = WRITE, 0;
    writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t = WRITEV, 0;
    send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t = SEND, flags;
    sendto(
        fd: c_int,
        buf: *const c_void,
        n: size_t,
        flags: c_int,
        addr: *const sockaddr,
        len: socklen_t
    ) -> ssize_t = SENDTO, flags;
    sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t = SENDMSG, flags;
    accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int
        = ACCEPT4, 0;
    connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int = CONNECT, 0;
}

/// `accept(2)` is `accept4` with no flags.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments (module docs).
    unsafe { accept4(fd, addr, len, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    blocking_call("nanosleep", Kind::Sleep);
    let real = real!(NANOSLEEP: unsafe extern "C" fn(*const timespec, *mut timespec) -> c_int);
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(req, rem) }
}

#[no_mangle]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    blocking_call("clock_nanosleep", Kind::Sleep);
    let real = real!(CLOCK_NANOSLEEP: unsafe extern "C" fn(clockid_t, c_int, *const timespec, *mut timespec) -> c_int);
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(clock, flags, req, rem) }
}

#[no_mangle]
pub unsafe extern "C" fn usleep(us: c_uint) -> c_int {
    blocking_call("usleep", Kind::Sleep);
    let real = real!(USLEEP: unsafe extern "C" fn(c_uint) -> c_int);
    // SAFETY: the caller's argument, unchanged.
    unsafe { real(us) }
}

#[no_mangle]
pub unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    blocking_call("sleep", Kind::Sleep);
    let real = real!(SLEEP: unsafe extern "C" fn(c_uint) -> c_uint);
    // SAFETY: the caller's argument, unchanged.
    unsafe { real(secs) }
}

#[no_mangle]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    if timeout != 0 {
        blocking_call("poll", Kind::Poll);
    }
    let real = real!(POLL: unsafe extern "C" fn(*mut pollfd, nfds_t, c_int) -> c_int);
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(fds, nfds, timeout) }
}

#[no_mangle]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    // SAFETY: a non-null `timeout` points to a readable timespec (ppoll(2)).
    let zero = !timeout.is_null() && unsafe { (*timeout).tv_sec == 0 && (*timeout).tv_nsec == 0 };
    if !zero {
        blocking_call("ppoll", Kind::Poll);
    }
    let real = real!(PPOLL: unsafe extern "C" fn(*mut pollfd, nfds_t, *const timespec, *const sigset_t) -> c_int);
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(fds, nfds, timeout, sigmask) }
}

#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    blocking_call("getaddrinfo", Kind::Lookup);
    let real = real!(GETADDRINFO: unsafe extern "C" fn(*const c_char, *const c_char, *const addrinfo, *mut *mut addrinfo) -> c_int);
    // SAFETY: the caller's arguments, unchanged.
    unsafe { real(node, service, hints, res) }
}
