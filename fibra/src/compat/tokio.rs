//! Running a future that needs tokio's runtime from a fiber (feature `tokio-compat`).
//!
//! Crates such as reqwest, sqlx and most SDKs call `tokio::spawn`, use `tokio::time` or
//! tokio's sockets, and panic ("there is no reactor running") anywhere else. [`run`] hands
//! such a future to a shared tokio runtime and parks the calling fiber until it finishes;
//! the fiber's worker runs other fibers meanwhile.
//!
//! # The shared runtime
//! A multi-thread tokio runtime with I/O and timers, started by the first [`run`] (or
//! [`handle`]) in the process and never shut down. It has one worker thread unless
//! [`set_worker_threads`] said otherwise before it started: the futures sent here are
//! expected to be I/O-bound calls (an HTTP request, a query), and the fibers stay the
//! place for the program's own work. It is shared by every fibra runtime in the process.
//!
//! # Protocol
//! ```text
//! fiber:  1. spawn the future on tokio; arm an abort guard   2. await the JoinHandle
//!            (fibra::await_future: park until tokio's waker unparks us)
//!         3. disarm the guard; return the output (or resume the future's panic)
//! unwind (JoinHandle::cancel, shutdown) at 2: the guard's Drop aborts the tokio task, which
//!         drops the future at its next poll point on tokio's thread.
//! ```
//!
//! # Costs, and when to use which route
//! Each call pays a spawn on tokio, one wake-up of a tokio worker and one wake-up of the
//! fiber's worker (two cross-thread hand-offs). Measured with `cargo bench -p fibra --bench
//! compat --features tokio-compat` (2 cores shared with other work; 10,000 calls each, two
//! runs):
//!
//! | call                                              | p50        | p99          |
//! |---------------------------------------------------|------------|--------------|
//! | `fibra::await_future(ready future)`               | 0.04 µs    | 0.04 µs      |
//! | `run(ready future)`                               | 3.2 µs     | 7.7–15 µs    |
//! | `run(one tokio::task::yield_now)`                 | 3.7 µs     | 8.3–16 µs    |
//! | `run(ready future)`, the fiber's workers busy     | 3.3 µs     | 3.7–33 µs    |
//!
//! So the bridge adds ~3 µs to a call at the median (both sides' workers were searching for
//! work, not asleep, when woken; a sleeping worker costs a futex wake more, ~5–10 µs here),
//! and tens of µs in the tail on a loaded machine.
//!
//! So the bridge suits calls that take milliseconds anyway (a request to a remote service),
//! not a hot inner loop. Anything generic over `AsyncRead + AsyncWrite` (hyper, websockets,
//! TLS) should instead run on fibra's own sockets inside [`fibra::await_future`](crate::await_future)
//! (`futures-io`, `tokio-io`, `hyper` features): no second runtime, no hand-off
//! (see [`fibra::compat`](crate::compat)).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use ::tokio::runtime::{Builder, Handle, Runtime};
use ::tokio::task::AbortHandle;

/// Worker threads of the shared runtime when it starts (`set_worker_threads`).
static WORKERS: AtomicUsize = AtomicUsize::new(1);
/// Serialises `set_worker_threads` against the start, so a late setting is refused.
static STARTING: Mutex<()> = Mutex::new(());
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Runs `future` on the shared tokio runtime and returns its output, parking the calling
/// fiber meanwhile (on a plain thread: blocking it).
///
/// # Cancellation
/// If the fiber unwinds while it waits ([`JoinHandle::cancel`](crate::JoinHandle::cancel),
/// runtime shutdown), the tokio task is aborted: the future is dropped at its next
/// `.await` on tokio's thread.
///
/// # Panics
/// If `future` panics, the panic is resumed in the caller. If the runtime cannot start
/// (no threads), with the OS's error.
///
/// ```
/// # fibra::run(|| {
/// let v = fibra::compat::tokio::run(async {
///     tokio::time::sleep(std::time::Duration::from_millis(1)).await; // needs tokio's timer
///     tokio::spawn(async { 41 }).await.unwrap() + 1 // and tokio's spawn
/// });
/// assert_eq!(v, 42);
/// # });
/// ```
pub fn run<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = handle().spawn(future);
    let guard = AbortOnUnwind(Some(task.abort_handle()));
    let out = match crate::try_current() {
        Some(_) => crate::await_future(task),
        None => handle().block_on(task), // a plain thread: nothing to park
    };
    guard.disarm();
    match out {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("fibra::compat::tokio::run: the tokio task ended without output: {e}"),
    }
}

/// The shared runtime's handle, starting it if needed: for `tokio::runtime::Handle::enter`,
/// or to spawn detached tasks on it.
///
/// # Panics
/// If the runtime cannot start.
///
/// ```
/// let h = fibra::compat::tokio::handle();
/// assert_eq!(h.block_on(async { 7 }), 7);
/// ```
pub fn handle() -> &'static Handle {
    RUNTIME.get_or_init(start).handle()
}

/// Sets the shared runtime's worker threads (default 1). Only before it starts.
///
/// # Errors
/// [`AlreadyStarted`] once a [`run`] or [`handle`] has started it.
///
/// # Panics
/// If `n` is 0.
///
/// ```
/// // Too late in this process if a test before us started it; fine either way.
/// let _ = fibra::compat::tokio::set_worker_threads(2);
/// fibra::compat::tokio::handle();
/// assert!(fibra::compat::tokio::set_worker_threads(1).is_err());
/// ```
pub fn set_worker_threads(n: usize) -> Result<(), AlreadyStarted> {
    assert!(
        n > 0,
        "fibra::compat::tokio::set_worker_threads: at least 1 thread"
    );
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if RUNTIME.get().is_some() {
        return Err(AlreadyStarted);
    }
    WORKERS.store(n, Relaxed); // read under the same lock by `start`
    Ok(())
}

fn start() -> Runtime {
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let built = Builder::new_multi_thread()
        .worker_threads(WORKERS.load(Relaxed))
        .thread_name("fibra-tokio")
        .enable_all()
        .build();
    match built {
        Ok(rt) => rt,
        Err(e) => panic!("fibra::compat::tokio: cannot start the shared tokio runtime: {e}"),
    }
}

/// [`set_worker_threads`] came after the shared runtime started.
///
/// ```
/// let e = fibra::compat::tokio::AlreadyStarted;
/// assert!(e.to_string().contains("already started"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyStarted;

impl std::fmt::Display for AlreadyStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the shared tokio runtime has already started")
    }
}

impl std::error::Error for AlreadyStarted {}

/// Aborts the tokio task unless disarmed: the fiber unwound while waiting.
struct AbortOnUnwind(Option<AbortHandle>);

impl AbortOnUnwind {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}
