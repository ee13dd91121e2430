//! The worker thread's own io_uring: where a read that missed the page cache waits.
//!
//! # One ring per worker thread, made by this layer
//! The ring is a thread-local, created the first time a fiber on that worker needs it
//! (`SINGLE_ISSUER | DEFER_TASKRUN`: only this thread submits, and completions are posted
//! only when this thread asks, so nothing runs behind its back). Its eventfd is registered
//! with the worker's reactor like any socket (`io::source`), so a worker sleeping in
//! `epoll_wait` wakes when the kernel queues completion work. A fiber that has run is pinned
//! to its thread (sched/mod.rs), so it finds its ring again after a park; under the migration
//! opt-in this path is not used at all (the blocking pool serves misses instead). A thread
//! that drives a slot of a later session makes a new ring (the old one is drained first).
//!
//! # Who reaps: one fiber at a time
//! Completions are collected by `io_uring_enter(GETEVENTS)` on the ring's thread, so some
//! fiber of that thread must do it. The first fiber that has to wait becomes the *reaper*:
//! it waits for the eventfd's readiness, enters the ring, records every completion and wakes
//! those fibers. The others park on their own operation. When the reaper's own operation is
//! done (or it is unwound) it steps down and wakes one waiting fiber, which takes over.
//! Rejected: every waiter waits on the eventfd (each edge would wake all of a worker's
//! 1,024 readers to find one completion); a callback inside the reactor's poll (the monitor
//! thread polls a stuck worker's reactor, and no other thread may enter a SINGLE_ISSUER ring).
//! ```text
//! waiter:  1. res set? → done       reaper: a. snap = eventfd readiness
//!          2. reaper? → park            b. enter(GETEVENTS); record CQEs; wake their fibers
//!          3. else become reaper        c. own res set? → step down, wake one waiter
//!                                       d. else wait for an eventfd edge newer than snap
//! ```
//! The kernel signals the eventfd whenever completion work is queued for this thread; step a
//! comes before b, so an edge after b's enter defeats d's wait (`reactor/scheduled.rs`).
//!
//! # One enter per submission
//! Each operation is submitted by its own `io_uring_enter`, at once: a read that misses
//! starts its disk I/O inside that enter, and the sooner it starts the more reads the disk
//! has in flight. Rejected: batching the entries of one worker turn (the first fiber to push
//! yields, the fibers that run meanwhile push theirs, then one enter submits all). It took
//! ~0.25 syscalls per cold read instead of ~1.2 and 10–30 % less CPU per read (one virtio
//! notification, a VM exit, per batch instead of per read), but each read's I/O started
//! after the rest of the turn had run, and the lab's cold 64-unit row (on a 1 GiB file) ran
//! ~5 % slower in paired rounds (docs/lab/FS.md).
//!
//! # Completed at submission: the page cache had it
//! A read the kernel finds cached completes inside the enter that submits it; one that goes to
//! the disk completes in a later enter (now and then a fast disk's read finishes within the
//! same one: 79 of 2,048 cold reads in `fs_api`'s test). [`Completion::at_submit`] tells the
//! caller which (the read path uses it to go back to `RWF_NOWAIT` for that file: `route.rs`;
//! a wrong "cached" costs one failed attempt).
//!
//! # A buffer in flight belongs to the ring
//! An operation's buffer is a heap `Vec` that its slot in the ring's table owns from submission
//! until its completion is reaped, never the caller's slice (data is copied in or out
//! afterwards). A fiber unwound mid-wait (cancellation, shutdown) marks its slot *orphaned*:
//! the reaper frees the buffer when the completion arrives. Dropping the ring (the thread
//! exits, or a new session replaces it) first asks the kernel to cancel whatever is in flight
//! and then waits for every completion, so the kernel never writes into freed memory; if the
//! ring cannot be entered any more the buffers are leaked rather than freed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::task::Waker;

use io_uring::{opcode, squeue, types, IoUring};

use crate::io::reactor::Direction;
use crate::io::source::Source;
use crate::park::{self, ParkReason};

/// Submission queue entries. A worker with more operations in flight than this submits the
/// queue before pushing more; completions never drop (`IORING_FEAT_NODROP`, 5.5+).
const ENTRIES: u32 = 256;
/// The user data of the drop-time "cancel everything" request (no slot has this index).
const CANCEL_ALL: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS`: with `DEFER_TASKRUN`, runs the thread's queued completion work.
const GETEVENTS: u32 = 1;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;
/// Whether this process can set up a ring (decided by the first attempt; Relaxed: a racing
/// second attempt decides the same).
static AVAILABLE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// The test hook (`fibra::fs::__force_pool`): behave as if io_uring were unavailable.
static FORCED_OFF: AtomicBool = AtomicBool::new(false);

/// Operation buffers owned by rings in this process (submitted, not yet freed): a test checks
/// it returns to 0 once the threads of a session have exited.
static LIVE: AtomicUsize = AtomicUsize::new(0);

pub(super) fn live_buffers() -> usize {
    LIVE.load(Relaxed)
}

pub(super) fn force_off(off: bool) {
    FORCED_OFF.store(off, Relaxed);
}

/// Is io_uring usable in this process (as far as known so far)?
pub(super) fn available() -> bool {
    !FORCED_OFF.load(Relaxed) && AVAILABLE.load(Relaxed) != NO
}

/// Setup errors that mean "never in this process": no syscall (old kernel, seccomp), not
/// permitted (`kernel.io_uring_disabled`), or a flag this kernel lacks (DEFER_TASKRUN: 6.1).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL)
    )
}

thread_local! {
    static RING: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
}

struct Op {
    /// Owned by the slot until the completion is reaped (module docs).
    buf: Vec<u8>,
    res: Option<i32>,
    waker: Option<Waker>,
    /// The fiber left (unwound): the reaper frees the slot at completion.
    orphan: bool,
    /// `State::enters` when the entry was pushed: a completion drained after the very next
    /// enter came at submission (module docs).
    pushed_at: u64,
    at_submit: bool,
}

#[derive(Default)]
struct State {
    ops: Vec<Option<Op>>,
    free: Vec<u32>,
    in_flight: usize,
    /// A fiber is reaping (waiting on the eventfd).
    reaping: bool,
    /// Parked operations, oldest first: who takes over reaping (entries may be stale).
    waiting: VecDeque<u32>,
    /// Enters of the ring so far (each followed by a drain).
    enters: u64,
}

impl State {
    fn insert(&mut self, op: Op) -> u32 {
        self.in_flight += 1;
        LIVE.fetch_add(1, Relaxed);
        match self.free.pop() {
            Some(i) => {
                self.ops[i as usize] = Some(op);
                i
            }
            None => {
                self.ops.push(Some(op));
                (self.ops.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, i: u32) -> Option<Op> {
        let op = self.ops.get_mut(i as usize)?.take()?;
        self.free.push(i);
        LIVE.fetch_sub(1, Relaxed);
        Some(op)
    }

    /// Records one completion; returns the waker to call (after the borrow ends).
    fn complete(&mut self, i: u64, res: i32) -> Option<Waker> {
        if i == CANCEL_ALL {
            return None;
        }
        let Some(Some(op)) = self.ops.get_mut(i as usize) else {
            fatal!("fs::uring: a completion for slot {i}, which holds no operation");
        };
        if op.res.is_some() {
            fatal!("fs::uring: two completions for slot {i}");
        }
        self.in_flight -= 1;
        if op.orphan {
            self.remove(i as u32); // its buffer is free at last
            return None;
        }
        op.res = Some(res);
        op.at_submit = op.pushed_at + 1 == self.enters;
        op.waker.take()
    }
}

/// A worker thread's ring.
pub(super) struct Ring {
    uring: RefCell<IoUring>,
    state: RefCell<State>,
    eventfd: Source<OwnedFd>,
    /// The session and slot it serves (`io::WorkerIo::session`).
    session: usize,
}

fn shutting_down() -> io::Error {
    io::Error::other("fibra: the runtime is shutting down")
}

impl Ring {
    /// The calling worker thread's ring, made on first use; None where the pool must serve
    /// (io_uring unavailable or forced off, not on a worker, migration on, or unwinding).
    pub(super) fn current() -> Option<Rc<Ring>> {
        if !available() || park::cancelling() {
            return None;
        }
        let w = crate::io::worker_io()?;
        if !w.pinned {
            return None;
        }
        RING.try_with(|cell| {
            if let Some(r) = &*cell.borrow() {
                if r.session == w.session {
                    return Some(r.clone());
                }
            }
            // A ring of an ended session (or none): drop it (draining it) and make one.
            let old = cell.borrow_mut().take();
            drop(old);
            match Ring::new(w.session) {
                Ok(r) => {
                    AVAILABLE.store(YES, Relaxed);
                    let r = Rc::new(r);
                    *cell.borrow_mut() = Some(r.clone());
                    Some(r)
                }
                Err(e) => {
                    if unsupported(&e) {
                        AVAILABLE.store(NO, Relaxed);
                    }
                    None
                }
            }
        })
        .ok()
        .flatten()
    }

    fn new(session: usize) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .dontfork()
            .build(ENTRIES)?;
        // SAFETY: plain syscall with no pointer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `eventfd` just returned this fd and nothing else owns it.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        uring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Ring {
            uring: RefCell::new(uring),
            state: RefCell::new(State::default()),
            eventfd: Source::new(eventfd),
            session,
        })
    }

    /// Submits the entry `make` builds around `buf`'s heap memory (its spare capacity for a
    /// read, its contents for a write), parks until the completion, and returns it with the
    /// buffer. `make` must only point the entry at `buf`'s heap allocation.
    pub(super) fn execute(
        &self,
        mut buf: Vec<u8>,
        make: impl FnOnce(&mut Vec<u8>) -> squeue::Entry,
    ) -> io::Result<Completion> {
        let entry = make(&mut buf);
        // Moving the Vec into the slot does not move its heap allocation, which `entry` names.
        let idx = {
            let mut st = self.state.borrow_mut();
            let pushed_at = st.enters;
            st.insert(Op {
                buf,
                res: None,
                waker: None,
                orphan: false,
                pushed_at,
                at_submit: false,
            })
        };
        let guard = OpGuard { ring: self, idx };
        self.submit(entry.user_data(u64::from(idx)))?;
        self.wait(idx)?;
        std::mem::forget(guard);
        let op = self.state.borrow_mut().remove(idx);
        match op {
            Some(Op {
                buf,
                res: Some(res),
                at_submit,
                ..
            }) => Ok(Completion {
                res,
                buf,
                at_submit,
            }),
            _ => fatal!("fs::uring: slot {idx} done without a result"),
        }
    }

    /// Pushes `entry` and enters the ring (submitting, and collecting what is done).
    fn submit(&self, entry: squeue::Entry) -> io::Result<()> {
        let mut ring = self.uring.borrow_mut();
        loop {
            // SAFETY: the entry points only at a buffer its slot owns until the completion is
            // reaped (`execute`; module docs, "A buffer in flight belongs to the ring"), and
            // at an fd the kernel resolves when it consumes the entry, in the enter below.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                break;
            }
            // The queue is full: submit it to make room.
            self.enter_and_drain(&mut ring)?;
        }
        self.enter_and_drain(&mut ring)
    }

    /// Enters the ring (submitting whatever is queued, running completion work), then records
    /// what completed.
    fn reap(&self) -> io::Result<()> {
        self.enter_and_drain(&mut self.uring.borrow_mut())
    }

    fn enter_and_drain(&self, ring: &mut IoUring) -> io::Result<()> {
        let r = enter(ring, 0);
        self.state.borrow_mut().enters += 1;
        self.drain(ring);
        r
    }

    fn drain(&self, ring: &mut IoUring) {
        let mut wake = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            for cqe in ring.completion() {
                wake.extend(st.complete(cqe.user_data(), cqe.result()));
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    fn done(&self, idx: u32) -> bool {
        matches!(&self.state.borrow().ops[idx as usize], Some(op) if op.res.is_some())
    }

    /// Parks until slot `idx` has its completion (module docs, "Who reaps").
    fn wait(&self, idx: u32) -> io::Result<()> {
        loop {
            if self.done(idx) {
                return Ok(());
            }
            if park::cancelling() {
                return Err(shutting_down());
            }
            let mut st = self.state.borrow_mut();
            if !st.reaping {
                st.reaping = true;
                drop(st);
                let _reaper = ReaperGuard(self);
                loop {
                    let snap = self.eventfd.snapshot();
                    self.reap()?;
                    if self.done(idx) {
                        return Ok(());
                    }
                    self.eventfd
                        .wait(Direction::Read, ParkReason::FileIo, snap, None)?;
                }
            }
            if let Some(op) = st.ops[idx as usize].as_mut() {
                op.waker = Some(park::current_waker());
            }
            st.waiting.push_back(idx);
            drop(st);
            park::park(ParkReason::FileIo);
        }
    }

    /// The reaper steps down: wakes the oldest parked operation's fiber to take over.
    fn hand_off(&self) {
        let waker = {
            let mut st = self.state.borrow_mut();
            st.reaping = false;
            let mut found = None;
            while let Some(i) = st.waiting.pop_front() {
                if let Some(Some(op)) = st.ops.get_mut(i as usize) {
                    if op.res.is_none() && !op.orphan {
                        if let Some(w) = op.waker.take() {
                            found = Some(w);
                            break;
                        }
                    }
                }
            }
            found
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// What an operation returned: the kernel's result, the buffer, and whether it completed in
/// the enter that submitted it (module docs, "Completed at submission").
pub(super) struct Completion {
    pub(super) res: i32,
    pub(super) buf: Vec<u8>,
    pub(super) at_submit: bool,
}

/// `io_uring_enter(submit everything queued, min_complete = 0, GETEVENTS)`; EINTR, EAGAIN
/// and EBUSY (completion backlog) are not errors: whatever was not taken stays queued.
fn enter(ring: &mut IoUring, min_complete: u32) -> io::Result<()> {
    let to_submit = ring.submission().len() as u32;
    loop {
        // SAFETY: no argument pointer is passed (`None`); the entries submitted satisfy
        // `Ring::submit`'s contract.
        let r = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(to_submit, min_complete, GETEVENTS, None)
        };
        match r {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Marks the slot orphaned if its fiber leaves before the completion (module docs).
struct OpGuard<'a> {
    ring: &'a Ring,
    idx: u32,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.ring.state.borrow_mut();
        let done = match st.ops.get_mut(self.idx as usize) {
            Some(Some(op)) if op.res.is_none() => {
                op.orphan = true;
                op.waker = None;
                false
            }
            _ => true,
        };
        if done {
            st.remove(self.idx);
        }
    }
}

struct ReaperGuard<'a>(&'a Ring);

impl Drop for ReaperGuard<'_> {
    fn drop(&mut self) {
        self.0.hand_off();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let ring = self.uring.get_mut();
        let st = self.state.get_mut();
        if st.in_flight == 0 {
            let freed = st.ops.iter().filter(|o| o.is_some()).count();
            LIVE.fetch_sub(freed, Relaxed);
            return;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL_ALL);
        // SAFETY: a cancel request points at no memory.
        let _ = unsafe { ring.submission().push(&cancel) };
        while st.in_flight > 0 {
            if let Err(e) = enter(ring, 1) {
                // Cannot wait for the kernel: leak the buffers rather than free memory it may
                // still write to (module docs).
                let _ = writeln!(
                    io::stderr(),
                    "fibra: fs: cannot drain a worker's io_uring ({e}); leaking {} buffers",
                    st.in_flight
                );
                std::mem::forget(std::mem::take(&mut st.ops));
                return;
            }
            for cqe in ring.completion() {
                if cqe.user_data() != CANCEL_ALL {
                    let Some(Some(op)) = st.ops.get_mut(cqe.user_data() as usize) else {
                        continue;
                    };
                    if op.res.is_none() {
                        op.res = Some(cqe.result());
                        st.in_flight -= 1;
                    }
                }
            }
        }
        let freed = st.ops.iter().filter(|o| o.is_some()).count();
        LIVE.fetch_sub(freed, Relaxed);
    }
}

/// What `Ring::execute` needs to read into an owned buffer of `len` bytes at `off` (None:
/// the file position, which the read advances).
pub(super) fn read_entry(
    fd: RawFd,
    len: u32,
    off: Option<u64>,
) -> impl FnOnce(&mut Vec<u8>) -> squeue::Entry {
    move |buf| {
        buf.reserve_exact(len as usize);
        opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), len)
            .offset(off.unwrap_or(u64::MAX))
            .build()
    }
}

/// Writes `buf`'s contents at `off` (None: the file position, or the end in append mode).
pub(super) fn write_entry(
    fd: RawFd,
    off: Option<u64>,
) -> impl FnOnce(&mut Vec<u8>) -> squeue::Entry {
    move |buf| {
        opcode::Write::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .offset(off.unwrap_or(u64::MAX))
            .build()
    }
}

/// `fsync` (`datasync`: `fdatasync`).
pub(super) fn fsync_entry(fd: RawFd, datasync: bool) -> impl FnOnce(&mut Vec<u8>) -> squeue::Entry {
    move |_| {
        let flags = if datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(fd)).flags(flags).build()
    }
}
