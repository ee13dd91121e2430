//! Synchronisation that parks fibers, not threads.
//!
//! A `std::sync::Mutex` blocks the whole worker OS thread, and every fiber queued on it. The
//! primitives here park only the waiting *fiber*; on a plain OS thread they block the thread,
//! so one primitive can be shared by fibers, threads and several runtimes.
//!
//! | primitive | waits for | fast path |
//! |---|---|---|
//! | [`Mutex`] | exclusive access | one CAS to lock, one to unlock |
//! | [`RwLock`] | shared or exclusive access; writers are not starved | one CAS |
//! | [`Condvar`] | a notification, releasing a [`MutexGuard`] meanwhile | — |
//! | [`Semaphore`] | one of N permits (borrowed, or owned through an `Arc`) | one CAS |
//! | [`Barrier`] | N parties to arrive | — |
//! | [`WaitGroup`] | a counter to reach zero (Go's `sync.WaitGroup`) | one atomic op per `done` |
//! | [`OnceCell`], [`Lazy`] | a one-time initialiser run by another fiber | one load |
//! | [`Notify`] | a `notify_one`/`notify_waiters` call (tokio's `Notify`) | — |
//!
//! # Shared rules
//! - **Every blocking call has a timeout variant** (`lock_timeout`, `acquire_timeout`,
//!   `wait_timeout`, ...), and every wait shows a distinct [`ParkReason`](crate::ParkReason)
//!   (`MutexLock`, `RwLockRead`, `Condvar`, ...) in debugging output.
//! - **Fair under contention.** Waiters queue FIFO. `Semaphore` hands a permit straight to the
//!   oldest waiter, and `RwLock` queues readers behind a waiting writer. `Mutex` and `RwLock`'s
//!   writers let running fibers take a free lock ahead of the queue ("barging", as Go's and
//!   parking_lot's do) but count it: the oldest waiter is handed the lock after 128 barges, so
//!   no fiber waits behind more than 128 + N − 1 acquisitions (see
//!   [`Mutex`'s fairness](Mutex#fairness)); `RwLock`'s readers never barge.
//! - **No poisoning.** At shutdown fibra unwinds every parked fiber; a lock held by one of them
//!   is released by its guard's destructor and stays usable.
//! - **`const` constructors.** Every `new` is a `const fn`, so each primitive can be a
//!   `static`, as std's can (`static M: Mutex<u32> = Mutex::new(0);`).
//! - **Unwind safety.** Every primitive is `UnwindSafe` and `RefUnwindSafe` (`OnceCell` and
//!   `Lazy` when their contents are, on std's bounds): a panic never leaves a primitive's own
//!   state broken, since no user code runs under the internal locks and a panicking holder's
//!   guard releases what it held. Without poisoning, a critical section that panics leaves the
//!   *data* as it was at that point; see [`Mutex`'s unwind safety](Mutex#unwind-safety).
//! - **Shutdown.** A fiber being unwound cannot park. A blocking call it makes (from a
//!   destructor) is retried without parking for up to a second, then panics with an
//!   explanation; `try_*` and `*_timeout` calls return failure instead. A fiber unwound while
//!   parked gives back anything handed to it meanwhile (a lock, a permit, a notification).
//!
//! # How waiting works
//! Every wait is a `Waiter` (a selection word claimed once, by a notifier's token, by its own
//! timeout, or by cancellation) in the primitive's FIFO `WaitList`, guarded by the primitive's
//! own short internal lock together with the state it waits for; see `waiter.rs` and
//! `wait.rs`. Uncontended paths never touch the list.

mod barrier;
pub(crate) mod change;
mod condvar;
mod lazy;
mod mutex;
mod notify;
mod once;
mod rwlock;
mod semaphore;
mod wait;
mod wait_group;
pub(crate) mod waiter;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use lazy::Lazy;
pub use mutex::{Mutex, MutexGuard};
pub use notify::Notify;
pub use once::OnceCell;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
pub use wait_group::WaitGroup;
