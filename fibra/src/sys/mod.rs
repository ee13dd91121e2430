//! # sys: the only module that calls the OS
//!
//! The contract, for every platform backend:
//! - Memory: [`page_size`], [`reserve`] (address space, committed lazily on first touch),
//!   [`release`], [`discard`] (give touched pages back), [`guard_madvise`] (a guard page that costs
//!   no memory map) and [`guard_mprotect`] (the fallback that costs one), [`max_map_count`].
//! - Signals: [`install_fault_handler`] (which chains to the previous handler for faults the
//!   policy declines), [`ensure_alt_stack`], [`write_stderr`].
//! - Memory of our own process read through the kernel: [`read_own`] (no fault, no race).
//! - Threads: [`spawn_thread`] for the runtime's elastic threads (pool threads, spare workers),
//!   with a hidden switch that makes starts fail for tests (`linux/thread.rs`).
//! - Valgrind: [`valgrind`] client requests (stacks, memcheck's view of memory); no-ops unless
//!   built with `--cfg fibra_valgrind`.
//!
//! Every call returns `io::Result` (`EINTR`/`EAGAIN` retried inside) or is infallible. Nothing here
//! knows what a fiber is; policy (which guard to use, budgets, what to print) lives in `stack`.
//!
//! fibra only supports Linux, so there is one backend; a second one gets chosen here, once.

mod linux;
pub(crate) mod valgrind;

pub(crate) use linux::capture::{
    capture_signal, capture_thread, install_capture_handler, own_stack_bounds,
};
pub(crate) use linux::mem::{
    discard, force_mprotect_guards, guard_madvise, guard_madvise_many, guard_mprotect,
    max_map_count, page_size, release, reserve,
};
pub(crate) use linux::peek::read_own;
pub(crate) use linux::signal::{ensure_alt_stack, install_fault_handler, write_stderr};
pub(crate) use linux::thread::spawn_thread;
#[doc(hidden)]
pub use linux::thread::{fail_thread_starts, pending_thread_start_failures, ThreadStart};
pub(crate) use linux::unwind::{symbolise, unwind};
