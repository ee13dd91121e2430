//! The socket hooks: creation (`socket`, `accept`, `accept4`), `connect`, the read and write
//! families, and the calls that keep the fd table right (`close`, `dup*`, `fcntl`, `ioctl`,
//! `setsockopt`).
//!
//! Each hook's `# Safety` is its libc function's: the caller passes what the C prototype and
//! the man page ask for (valid buffers of the given lengths, valid structures). The hooks
//! hand those pointers to the real function unchanged and read only the ones the man page
//! says the call reads (`FIONBIO`'s `int`, `SO_RCVTIMEO`'s `timeval`).

use std::os::fd::RawFd;
use std::time::Duration;

use libc::{c_int, c_ulong, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::table::{self, Slot};
use super::wait::{do_io, Call};
use super::{errno, in_hooked_fiber, set_errno};
use crate::io::reactor::Direction;
use crate::park::ParkReason;

/// Flags that leave a read what it is: bytes taken from the socket's receive queue (not
/// `MSG_PEEK`, `MSG_OOB`, `MSG_ERRQUEUE`).
const PLAIN_READ: c_int =
    libc::MSG_DONTWAIT | libc::MSG_WAITALL | libc::MSG_NOSIGNAL | libc::MSG_CMSG_CLOEXEC;

/// A read-family call on a managed fd: waits for readability, `SO_RCVTIMEO` as its deadline.
/// `len`: the call reads up to that many bytes into one buffer (`read`, `recv`, `recvfrom`).
fn read_io(
    fd: RawFd,
    slot: &Slot,
    flags: c_int,
    len: Option<usize>,
    op: impl FnMut() -> isize,
) -> isize {
    let call = Call {
        dir: Direction::Read,
        reason: ParkReason::IoRead,
        dontwait: flags & libc::MSG_DONTWAIT != 0,
        timeout: slot.rcv_timeout(),
        // A short plain read of a TCP socket emptied it (`wait.rs`).
        read_len: len.filter(|_| flags & !PLAIN_READ == 0 && slot.is_tcp()),
    };
    do_io(fd, slot, call, op)
}

/// A write-family call on a managed fd: waits for writability, `SO_SNDTIMEO` as its deadline.
/// (`_len`: writes empty nothing, so no drained-read shortcut.)
fn write_io(
    fd: RawFd,
    slot: &Slot,
    flags: c_int,
    _len: Option<usize>,
    op: impl FnMut() -> isize,
) -> isize {
    let call = Call {
        dir: Direction::Write,
        reason: ParkReason::IoWrite,
        dontwait: flags & libc::MSG_DONTWAIT != 0,
        timeout: slot.snd_timeout(),
        read_len: None,
    };
    do_io(fd, slot, call, op)
}

/// Hooked `socket(2)`: inside a hooked fiber, an `AF_INET`/`AF_INET6`/`AF_UNIX` socket is
/// made non-blocking underneath and managed.
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    let real = real!(SOCKET: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int);
    let ours = matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX);
    if !ours || !in_hooked_fiber() {
        // SAFETY: the caller's arguments, unchanged (module docs).
        return unsafe { real(domain, ty, protocol) };
    }
    // SAFETY: as above, plus `SOCK_NONBLOCK`, a valid type flag.
    let fd = unsafe { real(domain, ty | libc::SOCK_NONBLOCK, protocol) };
    // SOCK_TYPE_MASK is 0xf (the flags sit above it).
    let tcp = domain != libc::AF_UNIX
        && ty & 0xf == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP);
    if fd >= 0 && !table::manage(fd, ty & libc::SOCK_NONBLOCK != 0, tcp) {
        // No table memory: give the caller the mode it asked for, unmanaged.
        set_fd_nonblocking(fd, ty & libc::SOCK_NONBLOCK != 0);
    }
    fd
}

/// Hooked `accept(2)`.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments; accept(fd, a, l) is accept4(fd, a, l, 0).
    unsafe { accept4(fd, addr, len, 0) }
}

/// Hooked `accept4(2)`: on a managed listener, waits for a connection; the new fd is managed
/// if the caller is a hooked fiber.
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let real =
        real!(ACCEPT4: unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int);
    let Some(slot) = table::managed(fd) else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fd, addr, len, flags) };
    };
    let hooked = in_hooked_fiber();
    let real_flags = if hooked {
        flags | libc::SOCK_NONBLOCK
    } else {
        flags
    };
    let accept_once = || {
        // SAFETY: the caller's arguments, `SOCK_NONBLOCK` added; on EAGAIN nothing was
        // written through `addr`/`len`, so a retry passes them as the caller did.
        unsafe { real(fd, addr, len, real_flags) as isize }
    };
    let n = read_io(fd, slot, 0, None, accept_once) as c_int;
    if n >= 0 && hooked && !table::manage_accepted(slot, n, flags & libc::SOCK_NONBLOCK != 0) {
        set_fd_nonblocking(n, flags & libc::SOCK_NONBLOCK != 0);
    }
    n
}

/// Hooked `connect(2)`: on a managed socket in blocking mode, a non-blocking connect, a wait
/// for writability (up to `SO_SNDTIMEO`, then `EINPROGRESS` as Linux does), and `SO_ERROR` as
/// the result.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let real = real!(CONNECT: unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int);
    let managed = table::managed(fd);
    // A connect may change the local address `getsockname` keeps: forgotten before and after.
    let forget = || managed.inspect(|s| s.forget_local_addr());
    forget();
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real(fd, addr, len) };
    forget();
    let Some(slot) = managed else {
        return r;
    };
    if r == 0 || errno() != libc::EINPROGRESS || slot.nonblocking() {
        return r;
    }
    let saved = errno();
    let poll = real!(POLL: unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int);
    let writable = || {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: a pollfd array of length 1, live for the call; timeout 0 never blocks.
        match unsafe { poll(&mut pfd, 1, 0) } {
            0 => {
                set_errno(libc::EAGAIN);
                -1
            }
            n => n as isize,
        }
    };
    let call = Call {
        dir: Direction::Write,
        reason: ParkReason::Connect,
        dontwait: false,
        timeout: slot.snd_timeout(),
        read_len: None,
    };
    let w = do_io(fd, slot, call, writable);
    if w < 0 {
        if errno() == libc::EAGAIN {
            set_errno(libc::EINPROGRESS); // SO_SNDTIMEO passed (connect(2))
        }
        return -1;
    }
    let mut err: c_int = 0;
    let mut err_len = size_of::<c_int>() as socklen_t;
    // SAFETY: `err` and `err_len` are live and sized as SO_ERROR asks.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut err_len,
        )
    };
    match (got, err) {
        (0, 0) => {
            set_errno(saved);
            0
        }
        (0, e) => {
            set_errno(e);
            -1
        }
        _ => -1,
    }
}

macro_rules! io_hook {
    ($(#[$doc:meta])* $name:ident, $real:ident, $kind:ident,
     ($($arg:ident: $ty:ty),*), flags: $flags:expr, len: $len:expr) => {
        $(#[$doc])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, $($arg: $ty),*) -> ssize_t {
            let real = real!($real: unsafe extern "C" fn(c_int, $($ty),*) -> ssize_t);
            match table::managed(fd) {
                // SAFETY: the caller's arguments, unchanged (module docs).
                None => unsafe { real(fd, $($arg),*) },
                // SAFETY: as above; a call that failed with EAGAIN consumed nothing, so the
                // retry passes the same arguments.
                Some(slot) => $kind(fd, slot, $flags, $len, || unsafe { real(fd, $($arg),*) }),
            }
        }
    };
}

io_hook!(/// Hooked `read(2)`.
    read, READ, read_io, (buf: *mut c_void, count: size_t), flags: 0, len: Some(count));
io_hook!(/// Hooked `readv(2)`.
    readv, READV, read_io, (iov: *const iovec, n: c_int), flags: 0, len: None);
io_hook!(/// Hooked `recv(2)`.
    recv, RECV, read_io, (buf: *mut c_void, len: size_t, flags: c_int), flags: flags, len: Some(len));
io_hook!(/// Hooked `recvfrom(2)`.
    recvfrom, RECVFROM, read_io,
    (buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t),
    flags: flags, len: Some(len));
io_hook!(/// Hooked `recvmsg(2)`.
    recvmsg, RECVMSG, read_io, (msg: *mut msghdr, flags: c_int), flags: flags, len: None);
io_hook!(/// Hooked `write(2)`.
    write, WRITE, write_io, (buf: *const c_void, count: size_t), flags: 0, len: None);
io_hook!(/// Hooked `writev(2)`.
    writev, WRITEV, write_io, (iov: *const iovec, n: c_int), flags: 0, len: None);
io_hook!(/// Hooked `send(2)`.
    send, SEND, write_io, (buf: *const c_void, len: size_t, flags: c_int), flags: flags, len: None);
io_hook!(/// Hooked `sendto(2)`.
    sendto, SENDTO, write_io,
    (buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t),
    flags: flags, len: None);
io_hook!(/// Hooked `sendmsg(2)`.
    sendmsg, SENDMSG, write_io, (msg: *const msghdr, flags: c_int), flags: flags, len: None);

/// Hooked `close(2)`: a managed fd leaves the table (and its reactor) before libc closes it.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let real = real!(CLOSE: unsafe extern "C" fn(c_int) -> c_int);
    table::unmanage(fd);
    // SAFETY: the caller's argument, unchanged.
    unsafe { real(fd) }
}

/// Hooked `dup(2)`: a duplicate of a managed fd is managed.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let real = real!(DUP: unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: the caller's argument, unchanged.
    let new = unsafe { real(fd) };
    copy_if_managed(fd, new);
    new
}

/// Hooked `dup2(2)`: `new` leaves the table before libc closes it; it is managed afterwards
/// if `old` is.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let real = real!(DUP2: unsafe extern "C" fn(c_int, c_int) -> c_int);
    if old != new {
        table::unmanage(new);
    }
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real(old, new) };
    if old != new {
        copy_if_managed(old, r);
    }
    r
}

/// Hooked `dup3(2)`: as `dup2`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let real = real!(DUP3: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int);
    if old != new {
        table::unmanage(new);
    }
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real(old, new, flags) };
    copy_if_managed(old, r);
    r
}

fn copy_if_managed(old: RawFd, new: RawFd) {
    if new >= 0 {
        if let Some(slot) = table::managed(old) {
            table::copy(slot, new);
        }
    }
}

type Fcntl = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;

/// Hooked `fcntl(2)`: `F_GETFL`/`F_SETFL` show and set the caller's `O_NONBLOCK` on a
/// managed fd (the fd stays non-blocking); `F_DUPFD`/`F_DUPFD_CLOEXEC` duplicate like `dup`.
///
/// C declares it variadic; on the x86-64 and AArch64 Linux ABIs its one optional argument
/// (an `int` or a pointer) arrives in the register of a third word argument, which is how it
/// is declared here and passed on.
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let real = real!(FCNTL: Fcntl);
    // SAFETY: the caller's arguments (module docs; the variadic argument as above).
    unsafe { fcntl_with(real, fd, cmd, arg) }
}

/// Hooked `fcntl64` (what C built with 64-bit file offsets on glibc ≥ 2.28 calls): as `fcntl`.
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let real = real!(FCNTL64: Fcntl);
    // SAFETY: as in `fcntl`.
    unsafe { fcntl_with(real, fd, cmd, arg) }
}

/// # Safety
/// `fcntl(2)`'s contract for `fd`, `cmd`, `arg`.
unsafe fn fcntl_with(real: Fcntl, fd: c_int, cmd: c_int, arg: usize) -> c_int {
    let Some(slot) = table::managed(fd) else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fd, cmd, arg) };
    };
    match cmd {
        libc::F_GETFL => {
            // SAFETY: F_GETFL takes no argument.
            let fl = unsafe { real(fd, cmd) };
            if fl < 0 {
                return fl;
            }
            let mode = if slot.nonblocking() {
                libc::O_NONBLOCK
            } else {
                0
            };
            (fl & !libc::O_NONBLOCK) | mode
        }
        libc::F_SETFL => {
            let fl = arg as c_int;
            // SAFETY: F_SETFL takes an int: the caller's, with O_NONBLOCK kept on.
            let r = unsafe { real(fd, cmd, fl | libc::O_NONBLOCK) };
            if r == 0 {
                slot.set_nonblocking(fl & libc::O_NONBLOCK != 0);
            }
            r
        }
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            // SAFETY: an int argument, the caller's.
            let new = unsafe { real(fd, cmd, arg as c_int) };
            copy_if_managed(fd, new);
            new
        }
        // SAFETY: the caller's arguments, unchanged.
        _ => unsafe { real(fd, cmd, arg) },
    }
}

/// Hooked `ioctl(2)`: `FIONBIO` on a managed fd sets the caller's mode only (the fd stays
/// non-blocking). Variadic in C; declared as `fcntl` is.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int {
    let real = real!(IOCTL: unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int);
    match table::managed(fd) {
        Some(slot) if request == libc::FIONBIO => {
            if arg == 0 {
                set_errno(libc::EFAULT);
                return -1;
            }
            // SAFETY: FIONBIO's argument points to an int (ioctl_list(2)); checked non-null.
            let on = unsafe { *(arg as *const c_int) } != 0;
            slot.set_nonblocking(on);
            0
        }
        // SAFETY: the caller's arguments, unchanged.
        _ => unsafe { real(fd, request, arg) },
    }
}

/// Hooked `setsockopt(2)`: `SO_RCVTIMEO`/`SO_SNDTIMEO` on a managed fd are also kept as the
/// deadlines of its hooked waits (the kernel's copy has no effect on a non-blocking fd).
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    let real = real!(SETSOCKOPT: unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int);
    let timeo = level == libc::SOL_SOCKET && matches!(name, libc::SO_RCVTIMEO | libc::SO_SNDTIMEO);
    // Not an epoll instance's slot: the kernel says ENOTSOCK to it.
    let slot = table::managed(fd).filter(|s| timeo && !s.is_epoll());
    let fits = !value.is_null() && (len as usize) >= size_of::<libc::timeval>();
    let (Some(slot), true) = (slot, fits) else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fd, level, name, value, len) };
    };
    let rcv = name == libc::SO_RCVTIMEO;
    // SAFETY: non-null and `len` ≥ a `timeval`'s size; the caller passes a readable value of
    // `len` bytes (setsockopt(2)).
    let tv = unsafe { value.cast::<libc::timeval>().read_unaligned() };
    // A set the kernel would accept (it says EDOM for a bad tv_usec) of the value it holds
    // changes nothing: ureq 2 resets both timeouts after every request and sets the read one
    // again before every response, 3 syscalls a GET, on a fd that is non-blocking underneath
    // where the kernel's copy has no effect.
    let valid = tv.tv_sec >= 0 && (0..1_000_000).contains(&tv.tv_usec);
    if valid && slot.holds_timeout(rcv, timeval_duration(tv)) {
        return 0;
    }
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real(fd, level, name, value, len) };
    if r == 0 {
        let d = timeval_duration(tv);
        if rcv {
            slot.set_rcv_timeout(d);
        } else {
            slot.set_snd_timeout(d);
        }
    }
    r
}

/// `SO_RCVTIMEO`'s `timeval` (one the kernel accepted) as the hooks' deadline: `None` for
/// zero (no timeout), as for a negative `tv_sec`.
fn timeval_duration(tv: libc::timeval) -> Option<Duration> {
    let d = Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1_000);
    (!d.is_zero()).then_some(d)
}

/// Hooked `getsockname(2)`: a managed TCP socket's local address, once settled, is answered
/// from the table (ureq 2 asks for it on every response). Settled: a port and a specific
/// address, which only a `connect` changes afterwards (`AF_UNSPEC` disconnects and a failed
/// connect reset it; `bind` fails once bound; a peer's reset leaves it), and `connect` forgets
/// it. A buffer too short gets the address truncated and its full length, as from the kernel.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    let real =
        real!(GETSOCKNAME: unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int);
    // Not a duplicated fd: a connect through the other one would not forget it here.
    let slot = table::managed(fd).filter(|s| s.is_tcp() && !s.is_shared());
    let (Some(slot), false, false) = (slot, addr.is_null(), len.is_null()) else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(fd, addr, len) };
    };
    // SAFETY: non-null; the caller passes a readable and writable length (getsockname(2)).
    let room = unsafe { len.read_unaligned() } as usize;
    if let Some((bytes, n)) = slot.local_addr() {
        // SAFETY: the caller's buffer holds `room` bytes (getsockname(2)): we write at most
        // that many, then the full length, as the kernel does.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr.cast::<u8>(), n.min(room));
            len.write_unaligned(n as socklen_t);
        }
        return 0;
    }
    let epoch = slot.local_epoch();
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real(fd, addr, len) };
    // SAFETY: as above; after a success the kernel wrote the address's length there.
    let n = unsafe { len.read_unaligned() } as usize;
    if r == 0 && n <= room && n <= table::LOCAL_MAX {
        // SAFETY: the kernel wrote `n` bytes (≤ the caller's `room`) of address at `addr`.
        let got = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), n) };
        if settled(got) {
            slot.set_local_addr(got, epoch);
        }
    }
    r
}

/// A TCP socket's local address that nothing but a `connect` changes any more: an IPv4 or
/// IPv6 address with a port and a specific (not wildcard) address.
fn settled(addr: &[u8]) -> bool {
    let family = match addr.get(..2) {
        Some(f) => libc::sa_family_t::from_ne_bytes([f[0], f[1]]) as c_int,
        None => return false,
    };
    // The port follows the family in both layouts; the address follows the port
    // (`sockaddr_in`) or the flow info (`sockaddr_in6`).
    let port = addr.get(2..4).is_some_and(|p| p != [0, 0]);
    let specific =
        |at: std::ops::Range<usize>| addr.get(at).is_some_and(|a| a.iter().any(|&b| b != 0));
    match family {
        libc::AF_INET if addr.len() >= size_of::<libc::sockaddr_in>() => port && specific(4..8),
        libc::AF_INET6 if addr.len() >= size_of::<libc::sockaddr_in6>() => port && specific(8..24),
        _ => false,
    }
}

/// An fd the table could not take: set the mode its creator asked for.
fn set_fd_nonblocking(fd: RawFd, on: bool) {
    let real = real!(FCNTL: Fcntl);
    // SAFETY: F_GETFL/F_SETFL on an fd we were just handed.
    unsafe {
        let fl = real(fd, libc::F_GETFL);
        if fl >= 0 {
            let fl = if on {
                fl | libc::O_NONBLOCK
            } else {
                fl & !libc::O_NONBLOCK
            };
            real(fd, libc::F_SETFL, fl);
        }
    }
}
