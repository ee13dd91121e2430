//! Debug builds: a blocking socket, sleep, `poll` or name-lookup call made inside a fiber is
//! counted and reported once per call site, so the `std::net` socket or `thread::sleep` that
//! stalls a worker is found before it reaches production.
//!
//! # How
//! Without the `hooks` feature, a debug build (`debug_assertions`) defines libc's blocking
//! entry points as `hooks` does (`interpose.rs`), but each only *looks* before calling libc's
//! own definition unchanged: it never parks, never changes a mode, and gives the caller the
//! `errno` libc set. With `hooks` this module is not built (those calls park the fiber
//! instead); release builds do not build it either, nor do static or non-glibc builds
//! (`dlsym(RTLD_NEXT)` finds libc's definitions only in a dynamically linked glibc program).
//!
//! A call is reported when it runs in a fiber of a runtime with
//! `RuntimeBuilder::warn_blocking_calls(true)` (the default) and it can block: a read, write,
//! `accept` or `connect` on a socket in blocking mode (one `fcntl(F_GETFL)` and one `fstat`
//! tell; `MSG_DONTWAIT` calls and fds 0–2 are skipped), any sleep, `poll`/`ppoll` with a
//! timeout, and `getaddrinfo`. `fibra::net` sockets are non-blocking, so their calls are never
//! reported; calls on plain threads and blocking-pool threads cost one thread-local read.
//!
//! The call site is the first frame of the caller's stack outside std, core, alloc, libc and
//! this module (`sites.rs`): a stack not seen before is symbolised off the worker, and each
//! site is printed to stderr once, at the latest when its session ends;
//! `fibra::debug::blocking_calls` lists every site with its count. A call whose site is in
//! fibra itself is one of its deliberate short waits (a cancelled fiber's `Condvar` wait) and
//! is neither counted nor reported. A walk takes about 7 KiB of the fiber's stack (debug
//! build), so a call with under 12 KiB left is not walked but counted under one site that
//! says so: the watch must not overflow a stack that suffices without it.
//!
//! Not async-signal-safe on the reporting path (it allocates and locks): a signal handler
//! that makes a blocking socket call or sleeps while interrupting a fiber may deadlock in a
//! debug build. `RuntimeBuilder::warn_blocking_calls(false)` turns the watch off.

mod interpose;
mod sites;

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use libc::c_int;

use crate::sched::{context, Shared};

pub(crate) use sites::list;

/// Sessions whose runtime said `warn_blocking_calls(false)`, and how many there are (0 is the
/// common case: one relaxed load).
static QUIET: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static QUIET_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A session's watch setting, for as long as it runs (`Runtime::run`).
pub(crate) struct Session {
    quiet: Option<usize>,
}

impl Session {
    /// Before the session's workers start.
    pub(crate) fn enter(shared: &Arc<Shared>, warn: bool) -> Session {
        sites::session_started();
        if warn {
            return Session { quiet: None };
        }
        let me = Arc::as_ptr(shared) as usize;
        QUIET.lock().unwrap_or_else(|e| e.into_inner()).push(me);
        QUIET_COUNT.fetch_add(1, Relaxed);
        Session { quiet: Some(me) }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The session's fibers are done: report what they did before `run` returns.
        sites::session_ended();
        let Some(me) = self.quiet else { return };
        let mut list = QUIET.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = list.iter().position(|&s| s == me) {
            list.swap_remove(i);
            QUIET_COUNT.fetch_sub(1, Relaxed);
        }
    }
}

fn watched(shared: &Arc<Shared>) -> bool {
    // Relaxed: a session is listed before its workers start (which orders it before its
    // fibers run) and unlisted after its last fiber ended.
    QUIET_COUNT.load(Relaxed) == 0 || {
        let me = Arc::as_ptr(shared) as usize;
        !QUIET
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&me)
    }
}

thread_local! {
    /// Set while this thread reports: the symboliser's own file reads must not be looked at.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// True when the caller runs in a watched fiber and is not already reporting.
#[inline]
fn in_watched_fiber() -> bool {
    context::with_current_fiber(|h| h.is_some_and(|h| watched(&h.shared)))
        && !REPORTING.with(Cell::get)
}

/// What made a call blocking, for the report.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// A socket in blocking mode.
    Socket(c_int),
    Sleep,
    Poll,
    Lookup,
}

/// A read, write, `accept` or `connect` on `fd` (`flags`: the call's `MSG_*` flags, 0 if it
/// has none).
#[inline]
pub(crate) fn socket_call(call: &'static str, fd: c_int, flags: c_int) {
    if fd > 2 && flags & libc::MSG_DONTWAIT == 0 && in_watched_fiber() {
        socket_call_slow(call, fd);
    }
}

#[cold]
fn socket_call_slow(call: &'static str, fd: c_int) {
    keeping_errno(|| {
        if is_blocking_socket(fd) {
            sites::record(call, Kind::Socket(fd));
        }
    });
}

/// A call that blocks whatever its arguments (a sleep, `poll` with a timeout, a lookup).
#[inline]
pub(crate) fn blocking_call(call: &'static str, kind: Kind) {
    if in_watched_fiber() {
        keeping_errno(|| sites::record(call, kind));
    }
}

fn is_blocking_socket(fd: c_int) -> bool {
    // SAFETY: F_GETFL reads the fd's status flags; an invalid fd fails with EBADF.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 || fl & libc::O_NONBLOCK != 0 {
        return false;
    }
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable storage for one `stat`, which fstat fills on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let mode = unsafe { st.assume_init() }.st_mode;
    mode & libc::S_IFMT == libc::S_IFSOCK
}

/// Runs `f` with `REPORTING` set, and gives the caller back the `errno` it had. A panic in
/// `f` is swallowed: it would otherwise abort the process at the interposed `extern "C"`
/// function, and the watch must never change what the call does.
fn keeping_errno(f: impl FnOnce()) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    REPORTING.with(|r| r.set(true));
    struct Reset(*mut c_int, c_int);
    impl Drop for Reset {
        fn drop(&mut self) {
            REPORTING.with(|r| r.set(false));
            // SAFETY: the pointer is this thread's errno (above).
            unsafe { *self.0 = self.1 };
        }
    }
    let _reset = Reset(errno, saved);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
}
