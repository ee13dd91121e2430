//! # fibra: stackful fibers on an M:N work-stealing scheduler, sound by default
//!
//! Write plain blocking-style code and run a hundred thousand of it on a handful of OS
//! threads:
//!
//! ```
//! use std::time::Duration;
//! let total: u64 = fibra::run(|| {
//!     let handles: Vec<_> = (0..10_000u64)
//!         .map(|i| fibra::spawn(move || { fibra::sleep(Duration::from_millis(10)); i }))
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(total, 49_995_000);
//! ```
//!
//! - **Fibers** ([`spawn`], [`Builder`], [`scope`]) are stackful: each has its own small,
//!   lazily committed stack (64 KiB virtual by default, guard-paged, pooled), so code inside
//!   one can block on [`sleep`], [`JoinHandle::join`], [`park`] or any future
//!   ([`await_future`]) and only the fiber waits. [`JoinHandle::cancel`] unwinds a fiber at
//!   its next park; a [`CancellationToken`] tells a tree of work to stop; a [`Handle`]
//!   spawns into the runtime from any thread; [`macro@main`] and [`macro@test`] start one.
//! - **The scheduler** multiplexes fibers over one worker thread per core, with per-worker
//!   run queues, a global queue, work stealing and idle workers that sleep.
//! - **Networking** ([`net`], [`os::unix::net`]) mirrors `std::net`: a read, write, accept
//!   or connect that would block parks only its fiber, and each worker polls its own
//!   `epoll` instance (through `mio`) for the sockets of the fibers it runs.
//! - **Files** ([`fs`]) mirror `std::fs`: a read served from the page cache stays one
//!   syscall on the worker; a miss parks the fiber on the worker's own io_uring (or the
//!   blocking pool where io_uring is unavailable).
//! - **Sound by default**: a fiber may be stolen by another worker only before it first
//!   runs; afterwards it stays on its OS thread, because its stack may hold `!Send` values and
//!   compiled code may keep thread-local addresses across a switch. Go-style migration is the
//!   `unsafe` opt-in [`RuntimeBuilder::migrate_started_fibers`].
//! - **Observable**: [`debug::dump`] lists every fiber with its state, wait reason, time
//!   parked, spawn location and backtrace (grouped like Go's goroutine dump) and reports
//!   mutex deadlock cycles; [`debug::metrics`] counts runs, steals, sleeps and wake-to-run
//!   latency; [`RuntimeBuilder::dump_on_signal`] dumps on `SIGQUIT`.
//! - **Failures are loud**: a panic becomes [`JoinError::Panicked`]; a stack overflow prints
//!   the fiber's id, name, spawn location and stack size, then aborts.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[macro_use]
mod macros;
// libc's own definitions of the functions `hooks` and `blocking_calls` interpose.
#[cfg(all(
    any(
        feature = "hooks",
        all(
            debug_assertions,
            target_env = "gnu",
            not(target_feature = "crt-static")
        )
    ),
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[macro_use]
mod libc_next;
mod await_future;
mod blocking;
#[cfg(all(
    debug_assertions,
    not(feature = "hooks"),
    target_os = "linux",
    target_env = "gnu",
    not(target_feature = "crt-static"),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod blocking_calls;
pub mod cancel;
pub mod chan;
pub mod compat;
pub mod coop;
pub mod debug;
mod error;
pub(crate) mod fiber;
pub mod fs;
#[cfg(all(
    feature = "hooks",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod hooks;
pub(crate) mod io;
pub(crate) mod loom;
pub mod net;
pub mod os;
mod park;
mod runtime;
pub(crate) mod sched;
mod scope;
pub(crate) mod stack;
pub mod sync;
pub(crate) mod sys;
mod time;

#[allow(deprecated)]
pub use await_future::{await_future, block_on};
#[allow(deprecated)]
pub use blocking::{blocking, run_blocking, spawn_blocking};
pub use cancel::CancellationToken;
pub use error::{BuildError, JoinError, SpawnError};
pub use fiber::{
    current, park, spawn, try_current, yield_now, AccessError, Builder, Fiber, FiberId, JoinHandle,
    LocalKey,
};
pub use park::ParkReason;
pub use runtime::{run, Handle, Runtime, RuntimeBuilder};
pub use sched::stall::{LockHolder, StallKind, StallReport};
pub use scope::{scope, Scope, ScopedJoinHandle};
#[doc(hidden)]
pub use stack::test_support as __stack_test_support;
/// Hidden hooks that make the runtime's thread starts fail, for tests (`sys/linux/thread.rs`).
/// Not API.
#[doc(hidden)]
pub mod __fault {
    pub use crate::sys::{fail_thread_starts, pending_thread_start_failures, ThreadStart};
}
pub use time::{park_timeout, sleep, sleep_until, Sleep};

/// Runs `main`'s body as the root fiber of a new [`Runtime`]: the same as building one and
/// calling [`Runtime::run`] with the body. Optional arguments: `workers = N` (default: one
/// per core) and `stack_size = BYTES` (default [`DEFAULT_STACK_SIZE`]), as on
/// [`RuntimeBuilder`]. The function returns what the body returns (`T: Send`), so
/// `-> Result<(), E>` works when `E: Send`.
///
/// ```
/// #[fibra::main(workers = 2, stack_size = 131072)]
/// fn main() {
///     let h = fibra::spawn(|| fibra::current().name().is_none());
///     assert!(h.join().unwrap());
///     assert_eq!(fibra::current().name(), Some("main")); // the body is the root fiber
/// }
/// ```
///
/// A mistake is a compile error that says what is accepted:
/// ```compile_fail
/// #[fibra::main(wrokers = 2)] // unknown argument `wrokers`: expected `workers = N` or ...
/// fn main() {}
/// ```
/// ```compile_fail
/// #[fibra::main(workers = 0)] // `workers` must be at least 1
/// fn main() {}
/// ```
/// ```compile_fail
/// #[fibra::main]
/// async fn main() {} // remove `async`: the body runs as a fiber, in blocking style
/// ```
pub use fibra_macros::main;

/// A `#[test]` whose body runs as the root fiber of a new [`Runtime`], as with
/// [`macro@main`]; the same optional `workers = N` and `stack_size = BYTES`. Other attributes
/// (`#[should_panic]`, `#[ignore]`) stay on the test; a panic in the body fails it.
///
/// ```
/// #[fibra::test(workers = 1)]
/// fn sleeps_in_a_fiber() {
///     fibra::sleep(std::time::Duration::from_millis(1));
/// }
/// # fn main() {} // doctests do not run #[test] functions; the test suite does
/// ```
/// ```compile_fail
/// #[fibra::test]
/// #[test] // #[fibra::test] already makes the function a test
/// fn twice() {}
/// # fn main() {}
/// ```
/// ```compile_fail
/// #[fibra::test(stack_size = 1 << 20, stack_size = 1 << 21)] // `stack_size` given twice
/// fn twice() {}
/// # fn main() {}
/// ```
pub use fibra_macros::test;

/// The smallest fiber stack fibra accepts, in bytes. A panic with `RUST_BACKTRACE=1` needs
/// ~22 KiB of stack, so stacks this small suit only leaf fibers that never panic.
///
/// ```
/// # fibra::run(|| {
/// use fibra::{Builder, SpawnError, MIN_STACK_SIZE};
/// let leaf = Builder::new().stack_size(MIN_STACK_SIZE).spawn(|| 6 * 7).unwrap();
/// assert_eq!(leaf.join().unwrap(), 42);
/// let too_small = Builder::new().stack_size(MIN_STACK_SIZE - 1).spawn(|| ());
/// assert!(matches!(too_small, Err(SpawnError::StackTooSmall { .. })));
/// # });
/// ```
pub const MIN_STACK_SIZE: usize = stack::MIN_STACK_SIZE;
/// The largest fiber stack fibra accepts, in bytes: 1 GiB, as Go caps a goroutine's stack.
/// Above it, [`Builder::spawn`] returns [`SpawnError::StackTooLarge`] and
/// [`RuntimeBuilder::build`] returns [`BuildError::StackTooLarge`]. Stacks are address space
/// reserved without memory (only touched pages cost any), but each size class reserves 8
/// stacks at a time, so a 1 GiB stack takes 8 GiB of address space.
///
/// ```
/// # fibra::run(|| {
/// use fibra::{Builder, SpawnError, MAX_STACK_SIZE};
/// let deep = Builder::new().stack_size(MAX_STACK_SIZE).spawn(|| 6 * 7).unwrap();
/// assert_eq!(deep.join().unwrap(), 42);
/// let too_large = Builder::new().stack_size(MAX_STACK_SIZE + 1).spawn(|| ());
/// assert!(matches!(too_large, Err(SpawnError::StackTooLarge { max: MAX_STACK_SIZE, .. })));
/// # });
/// ```
pub const MAX_STACK_SIZE: usize = stack::MAX_STACK_SIZE;
/// The default fiber stack size, in bytes (virtual; only touched pages are resident).
///
/// ```
/// assert_eq!(fibra::DEFAULT_STACK_SIZE, 64 * 1024);
/// assert!(fibra::DEFAULT_STACK_SIZE >= fibra::MIN_STACK_SIZE);
/// // Pass it to a builder to keep the default explicitly.
/// let rt = fibra::Runtime::builder().stack_size(fibra::DEFAULT_STACK_SIZE).build().unwrap();
/// assert_eq!(rt.run(|| fibra::spawn(|| 1).join().unwrap()), 1);
/// ```
pub const DEFAULT_STACK_SIZE: usize = stack::DEFAULT_STACK_SIZE;
