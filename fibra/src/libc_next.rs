//! The real libc functions behind an interposed one: `dlsym(RTLD_NEXT, name)`, resolved
//! once. Used by the `hooks` feature (`hooks/`) and by debug builds' blocking-call warnings
//! (`blocking_calls/`), the two layers that define libc's names in the final binary.
//!
//! Every interposed function calls its real function through a `Real`: one relaxed load of a word that a
//! constructor in `.init_array` filled before `main` (so a hook reached from a signal handler
//! never calls `dlsym`, which is not async-signal-safe). A hook reached before the
//! constructor ran (another library's constructor) resolves its function then.

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// One real function's address, 0 until resolved.
pub(crate) struct Real {
    addr: AtomicUsize,
    name: &'static CStr,
}

impl Real {
    pub(crate) const fn new(name: &'static CStr) -> Real {
        Real {
            addr: AtomicUsize::new(0),
            name,
        }
    }

    /// The function's address. Any thread, any time (also in a signal handler once
    /// `resolve_all` ran).
    #[inline(always)]
    pub(crate) fn addr(&self) -> usize {
        // Relaxed: the word is 0 or the final address (every resolver stores the same value),
        // and the code it points to was mapped by the dynamic loader before we ran.
        match self.addr.load(Relaxed) {
            0 => self.resolve(),
            a => a,
        }
    }

    #[cold]
    fn resolve(&self) -> usize {
        // SAFETY: `name` is a NUL-terminated string; RTLD_NEXT asks for the next definition
        // after this object's, i.e. libc's.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        if a == 0 {
            // No interposed function can go on without its real function. Say so without any
            // interposed call that might recurse here (the raw syscall), then abort.
            let msg =
                b"fibra: fatal: dlsym(RTLD_NEXT) found no libc function for an interposed one\n";
            // SAFETY: writes `msg.len()` bytes of a live buffer to stderr.
            unsafe { libc::syscall(libc::SYS_write, 2, msg.as_ptr(), msg.len()) };
            std::process::abort();
        }
        self.addr.store(a, Relaxed);
        a
    }
}

/// `real!(NAME: fn(args) -> ret)`: the real function `NAME` (a `Real` in `libc_next`) as a typed
/// function pointer.
macro_rules! real {
    ($name:ident : $ty:ty) => {{
        let addr = $crate::libc_next::$name.addr();
        // SAFETY: `addr` is libc's definition of the function `$name` names, whose C prototype
        // `$ty` spells (checked against the `libc` crate's declaration); function pointers and
        // `usize` have the same size.
        unsafe { std::mem::transmute::<usize, $ty>(addr) }
    }};
}

macro_rules! reals {
    ($($name:ident = $sym:literal;)*) => {
        $(pub(crate) static $name: Real = Real::new($sym);)*
        /// Resolves every real function (the constructor below).
        extern "C" fn resolve_all() {
            $($name.addr();)*
        }
    };
}

reals! {
    SOCKET = c"socket";
    ACCEPT4 = c"accept4";
    CONNECT = c"connect";
    READ = c"read";
    READV = c"readv";
    RECV = c"recv";
    RECVFROM = c"recvfrom";
    RECVMSG = c"recvmsg";
    WRITE = c"write";
    WRITEV = c"writev";
    SEND = c"send";
    SENDTO = c"sendto";
    SENDMSG = c"sendmsg";
    POLL = c"poll";
    PPOLL = c"ppoll";
    NANOSLEEP = c"nanosleep";
    CLOCK_NANOSLEEP = c"clock_nanosleep";
    USLEEP = c"usleep";
    SLEEP = c"sleep";
    GETADDRINFO = c"getaddrinfo";
    CLOSE = c"close";
    DUP = c"dup";
    DUP2 = c"dup2";
    DUP3 = c"dup3";
    FCNTL = c"fcntl";
    IOCTL = c"ioctl";
    SETSOCKOPT = c"setsockopt";
    GETSOCKNAME = c"getsockname";
    EPOLL_CREATE = c"epoll_create";
    EPOLL_CREATE1 = c"epoll_create1";
    EPOLL_WAIT = c"epoll_wait";
    EPOLL_PWAIT = c"epoll_pwait";
}

/// Not in `resolve_all`: glibc before 2.28 has no `fcntl64`, and only code built against a
/// newer one calls it.
#[cfg_attr(not(feature = "hooks"), allow(dead_code))]
pub(crate) static FCNTL64: Real = Real::new(c"fcntl64");

/// Runs `resolve_all` at load time, before `main` and before any thread of ours exists.
#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_all;
