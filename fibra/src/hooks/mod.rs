//! Opt-in interposition of libc's blocking socket and sleep calls (Cargo feature `hooks`), so
//! unchanged blocking code (`std::net`, the sync `redis` crate, a C client library) parks
//! its fiber instead of its worker thread.
//!
//! # How
//! With the feature, the final binary defines `socket`, `accept`, `accept4`, `connect`,
//! `read`, `readv`, `recv`, `recvfrom`, `recvmsg`, `write`, `writev`, `send`, `sendto`,
//! `sendmsg`, `poll`, `ppoll`, `epoll_create`, `epoll_create1`, `epoll_wait`, `epoll_pwait`,
//! `nanosleep`, `clock_nanosleep`, `usleep`, `sleep`, `getaddrinfo`, `close`, `dup`, `dup2`,
//! `dup3`, `fcntl`, `fcntl64`, `ioctl`, `setsockopt` and `getsockname`. The linker binds every call to these names in the executable (Rust crates,
//! statically linked C) to them; each forwards to libc's own definition, found once with
//! `dlsym(RTLD_NEXT)` (`libc_next.rs`).
//!
//! # Sound by scope
//! Only fds made by a hooked `socket` or `accept` *inside a fiber* of a runtime with hooks on
//! are managed (`table.rs`): the kernel sees them non-blocking, their owner sees the mode it
//! set (`O_NONBLOCK`, `FIONBIO` and `SOCK_NONBLOCK` are tracked, `F_GETFL` answers with
//! them), and a call that would block parks the fiber on the worker's reactor, honouring
//! `SO_RCVTIMEO`/`SO_SNDTIMEO` (timeout: `EAGAIN`, what std's `set_read_timeout` expects).
//! Everything else (stdio, files, pipes, inherited fds, `fibra::net` sockets made outside a
//! fiber, every call from a plain thread or a blocking-pool thread) goes straight to libc
//! after one table lookup. A managed fd used from a plain thread (moved there, or used
//! after its session ended) blocks that thread in `poll(2)`, as a blocking fd would.
//! Sleeps park only inside a hooked fiber; `poll`/`ppoll` over managed fds park on the
//! reactor, over any other fd run on the blocking pool; `getaddrinfo` runs on the pool.
//! With `RuntimeBuilder::hooks_epoll(true)`, an `epoll_wait` on an instance made in a fiber
//! parks on the reactor too (`epoll.rs`); it is opt-in because of thread-locals (below).
//! `errno` is saved before a park and restored after, so other fibers of the worker never
//! leak theirs into the caller.
//!
//! # Cost
//! A call that does not block costs the table lookup (one load of a chunk pointer, one of
//! the slot's flags) and, on a managed fd, one read of `errno` and, in blocking mode, the
//! cooperative budget's count (below), on top of libc's call:
//! `cargo bench -p fibra --features hooks --bench hooks` (fastest of 401 batches of 2,000,
//! hooked minus libc's own definition, three runs on a shared 2-core VM): +3.0 ns for
//! `write` to /dev/null and +4.4 ns for `recv(MSG_PEEK)` on a plain thread; +0.0 ns and
//! +6.2–7.8 ns in a fiber, on an unmanaged fd and a managed socket (+2.6–3.2 ns before the
//! budget counted hooked calls: the count and a yield every 128 calls are the rest, what a
//! `fibra::net` call pays too). The first `EAGAIN` takes
//! the slow path (registration snapshot, one retry of the call, then the park); after that
//! the fd's calls that way take the snapshot first, and a read that found a TCP socket empty
//! lets the next one park without trying (`wait.rs`): a client's reply costs one `recv`, as
//! with `fibra::net`. A `setsockopt` of `SO_RCVTIMEO`/`SO_SNDTIMEO` to the value the kernel
//! already holds returns without the syscall (ureq 2 makes three such a request), and a TCP
//! socket's `getsockname` is answered from the table once its address is settled (ureq 2
//! asks on every response).
//!
//! # The cooperative budget
//! A blocking-mode call on a managed fd that returns without parking counts against the
//! fiber's budget (`coop.rs`), as `fibra::net`'s calls do: a client whose replies are always
//! there when it reads would otherwise hold its worker, its sleepers and its other fibers for
//! as long as it runs. Calls the caller made non-blocking never count: such code runs its own
//! event loop and may keep thread-local state across them (tokio's `block_on`). So a
//! `std::sync::Mutex` guard held across a blocking hooked call can now meet another fiber of
//! the worker that wants it even when the call does not block (see below).
//!
//! `RuntimeBuilder::hooks(false)` turns the hooks off for one runtime: its fibers' calls
//! pass to libc (and block the worker). Cargo unifies features, so any crate in the graph
//! that enables `fibra/hooks` enables it for the whole binary; the builder switch is the way
//! out.
//!
//! # Unwinding and cancellation
//! A hook is an `extern "C"` function: nothing may unwind through it. So its parks are
//! uncancellable (a `JoinHandle::cancel` request stays pending for the next fibra park; a
//! hooked I/O wait returns `ECANCELED` at once when it sees one, a hooked sleep runs to its
//! end), and each park runs inside `catch_unwind`: if shutdown force-unwinds a fiber parked in
//! a hook, the unwind stops there and the call fails with `ECANCELED` (a sleep returns early).
//! The fiber then runs on with every fibra wait and every hooked wait returning at once, so
//! ordinary code (which returns on errors) finishes; code that ignores the errors in a loop
//! holds its worker at shutdown as a CPU loop does (docs/SOUNDNESS.md §11).
//!
//! # What hooks cannot reach
//! - `std::sync` locks and condvars (`futex`), `parking_lot`: a guard held across a hooked
//!   call that parks or yields (the budget) deadlocks the worker when another fiber of it
//!   wants the lock (as Java's pinning).
//! - Raw syscalls that bypass libc: rustix's `linux_raw` backend (so `mio`/`tokio` code on
//!   it), Go-style static binaries, `syscall(SYS_read, ..)`.
//! - libc's internal calls (C stdio's `fread` on a socket, `getaddrinfo`'s own sockets) and
//!   the fortified `__read_chk`/`__recv_chk` of C built with `_FORTIFY_SOURCE`.
//! - Shared libraries resolve these names in the executable only if it exports them
//!   (`-C link-arg=-rdynamic`); Rust crates and static C libraries need nothing.
//! - An event loop that keeps thread-local state across its wait. A worker's fibers share its
//!   thread-locals, so parking inside such a loop lets another fiber of the worker see the
//!   state. tokio's `block_on` marks its thread as inside a runtime for the whole call: the
//!   sync `postgres` crate runs one per query, and with `hooks_epoll(true)` a second fiber of
//!   the worker that queries panics ("Cannot start a runtime from within a runtime";
//!   tests/hooks_postgres.rs runs 100 such clients on two workers under the default). So
//!   epoll waits park only with the opt-in; by default they block the worker, and postgres's
//!   sockets, non-blocking to tokio, never park.
//! - `epoll_pwait2`, `select`, `pselect` are not hooked; a partial `write` on a
//!   blocking managed socket returns the count written, as a signal-interrupted write would.
//!   `shutdown` needs no hook: the kernel's readiness edge wakes the fibers parked on the
//!   socket (a reader gets end of stream, a writer `EPIPE`; tests/hooks_std.rs).
//! - A managed fd shared with another process (`fork`, `SCM_RIGHTS`): a timeout that process
//!   sets is unseen here, so a set here back to the old value may skip the kernel (only
//!   `getsockopt` can tell: the fd is non-blocking underneath, where it has no effect), and
//!   a `connect(AF_UNSPEC)` there leaves this process's `getsockname` answer stale.
//!
//! Without the feature, debug builds interpose the same names to *report* blocking calls in
//! fibers, never changing them (`blocking_calls/`).

mod dns;
mod epoll;
mod poll;
mod sleep;
mod socket;
mod table;
mod wait;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::fiber::FiberRef;
use crate::park::{self, ParkReason};
use crate::sched::{context, Shared};

/// Sessions whose runtime said `hooks(false)` (their `Shared` addresses), and how many there
/// are: 0 (one relaxed load) on every hooked call unless some runtime turned hooks off.
static OFF: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static OFF_COUNT: AtomicUsize = AtomicUsize::new(0);

fn enabled(shared: &Arc<Shared>) -> bool {
    // Relaxed: a session is added before its first fiber runs (the worker threads start
    // after, which orders it) and removed after its last one ended.
    OFF_COUNT.load(Relaxed) == 0 || !off_list_has(Arc::as_ptr(shared) as usize)
}

#[cold]
fn off_list_has(session: usize) -> bool {
    OFF.lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&session)
}

/// Sessions whose runtime said `hooks_epoll(true)`: read only by an `epoll_wait` on an
/// instance made in a fiber, about to block (`epoll.rs`).
static EPOLL_ON: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn epoll_enabled(shared: &Arc<Shared>) -> bool {
    let me = Arc::as_ptr(shared) as usize;
    EPOLL_ON
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&me)
}

/// A session's hook settings other than the default, for as long as it runs
/// (`Runtime::run`): listed in `OFF` (`hooks(false)`) or `EPOLL_ON` (`hooks_epoll(true)`).
pub(crate) struct Session {
    me: usize,
    off: bool,
    epoll: bool,
}

impl Session {
    /// Before the session's workers start.
    pub(crate) fn enter(shared: &Arc<Shared>, hooks: bool, epoll: bool) -> Session {
        let me = Arc::as_ptr(shared) as usize;
        let (off, epoll) = (!hooks, hooks && epoll);
        if off {
            OFF.lock().unwrap_or_else(|e| e.into_inner()).push(me);
            OFF_COUNT.fetch_add(1, Relaxed);
        }
        if epoll {
            EPOLL_ON.lock().unwrap_or_else(|e| e.into_inner()).push(me);
        }
        Session { me, off, epoll }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        fn remove(list: &Mutex<Vec<usize>>, me: usize) -> bool {
            let mut l = list.lock().unwrap_or_else(|e| e.into_inner());
            let at = l.iter().position(|&s| s == me);
            at.map(|i| l.swap_remove(i)).is_some()
        }
        if self.off && remove(&OFF, self.me) {
            OFF_COUNT.fetch_sub(1, Relaxed);
        }
        if self.epoll {
            remove(&EPOLL_ON, self.me);
        }
    }
}

/// True when the caller runs in a fiber of a runtime with hooks on.
#[inline]
fn in_hooked_fiber() -> bool {
    context::with_current_fiber(|h| h.is_some_and(|h| enabled(&h.shared)))
}

/// The calling fiber, if it runs on a runtime with hooks on.
fn hooked_fiber() -> Option<FiberRef> {
    context::with_current_fiber(|h| h.filter(|h| enabled(&h.shared)).map(|h| h.to_ref()))
}

/// The calling fiber, if it runs on a runtime with hooks and `hooks_epoll` on.
fn epoll_fiber() -> Option<FiberRef> {
    context::with_current_fiber(|h| {
        h.filter(|h| enabled(&h.shared) && epoll_enabled(&h.shared))
            .map(|h| h.to_ref())
    })
}

/// True when a hooked wait must not wait: the fiber is being unwound (shutdown, or its own
/// cancellation in progress) or has a cancel request pending.
fn must_stop() -> bool {
    let me = park::Caller::current();
    me.cancelling() || me.cancel_requested()
}

/// Parks the calling fiber (uncancellable) until an unpark or `deadline`. An unwind that
/// reaches this park (shutdown's forced unwind) is stopped here: `Err(ECANCELED)`.
fn park_guarded(reason: ParkReason, deadline: Option<Instant>) -> Result<(), i32> {
    let parked = catch_unwind(AssertUnwindSafe(|| match deadline {
        Some(d) => crate::time::park_until_with(reason, d, park::park_uncancellable),
        None => park::park_uncancellable(reason),
    }));
    // The payload (corosensei's forced-unwind marker) is dropped here; the fiber goes on as
    // one being unwound (every wait returns at once) until its code returns.
    parked.map_err(|_payload| libc::ECANCELED)
}

/// Counts a hooked call on a managed fd that returned without parking against the fiber's
/// cooperative budget (`coop.rs`), as `fibra::net`'s calls count: a client whose replies are
/// always there by the time it reads never parks, and without this it would hold its worker
/// (and the worker's sleepers and other fibers) for as long as it runs. When the budget is
/// spent the fiber yields; the caller's `errno` is kept across the yield, and an unwind that
/// reaches it (shutdown's) stops here: the call's result, already taken effect, is returned.
#[inline]
fn consume_budget() {
    if crate::coop::spend() {
        yield_guarded();
    }
}

#[cold]
#[inline(never)]
fn yield_guarded() {
    let saved = errno();
    // The payload (a forced unwind's marker) is dropped: the fiber goes on as one being
    // unwound, as after `park_guarded`.
    let _ = catch_unwind(crate::yield_now);
    set_errno(saved);
}

fn errno() -> i32 {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}
