//! Starting the runtime's elastic threads (blocking-pool threads, spare workers), with a
//! hidden fault-injection switch so tests can make a start fail.
//!
//! # Why a switch and not `RLIMIT_NPROC`
//! `pthread_create` fails with `EAGAIN` when `RLIMIT_NPROC` is reached, which is the failure
//! worth testing. But root (and `CAP_SYS_RESOURCE`/`CAP_SYS_ADMIN`) ignores that limit, and
//! test machines and CI containers often run as root, so a test cannot rely on it. Instead
//! [`fail_thread_starts`] makes the next `n` starts of one kind fail with that same `EAGAIN`
//! before any thread is created. It costs one relaxed load per thread start (a cold path:
//! creating a thread costs ~30-50 µs). Not API: tests set it in a child process of their own.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::{self, JoinHandle};

/// Which of the runtime's elastic threads is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStart {
    /// A blocking-pool thread (`spawn_blocking`, `blocking`).
    BlockingPool,
    /// A spare worker started by the monitor while a worker is stuck.
    SpareWorker,
}

/// Injected failures still to come, per [`ThreadStart`] kind.
static FAIL: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Hidden test hook: the next `n` starts of `kind` fail with `EAGAIN` (as under
/// `RLIMIT_NPROC`), process-wide. Replaces any count set before.
pub fn fail_thread_starts(kind: ThreadStart, n: usize) {
    FAIL[kind as usize].store(n, Relaxed);
}

/// Hidden test hook: injected failures of `kind` not consumed yet.
pub fn pending_thread_start_failures(kind: ThreadStart) -> usize {
    FAIL[kind as usize].load(Relaxed)
}

/// Any thread: starts a thread named `name` running `f`, or says why it could not.
pub(crate) fn spawn_thread<F>(kind: ThreadStart, name: String, f: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    // Relaxed: a test sets the count before the runtime it drives starts threads; only the
    // count matters, no other memory is published through it.
    let injected = FAIL[kind as usize]
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok();
    if injected {
        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
    }
    thread::Builder::new().name(name).spawn(f)
}
