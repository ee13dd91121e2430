//! The reactor: one `mio::Poll` (edge-triggered epoll) per worker slot.
//!
//! # Why one poller per worker
//! A fiber that has run is pinned to its home worker (sched/mod.rs). Its sockets register
//! with the poller of the worker it runs on when it first has to wait, so the readiness event
//! is found by the very thread that must resume the fiber: no cross-thread hand-off, no shared
//! `epoll` fd bouncing between cores, no lock contention on one registration table (Photon and
//! glommio work this way; Go needs a global poller only because goroutines migrate). A socket
//! later used from another worker (moved through a channel, a `try_clone` read elsewhere) still
//! works: its events arrive on the registering worker, which unparks the fiber through the
//! usual cross-thread path (the fiber's home inbox). A slot that holds registrations is never
//! retired (spare.rs), so they are always polled.
//!
//! # Who polls
//! Only the slot's owner thread polls (`poll`): without blocking when it runs out of local
//! work and every 61 ticks while busy (worker.rs), and blocking, with its next timer as the
//! timeout, as its idle sleep (the `Sleeper`'s blocking primitive; `Sleeper::wake` breaks it
//! through the slot's `mio::Waker`). Registration and deregistration happen on any thread
//! (`mio::Registry` is thread-safe; the table is behind a mutex).
//!
//! Cost: `epoll_wait` takes its timeout in whole milliseconds (mio rounds up), so a timer due
//! while its worker is idle fires up to ~1 ms late, where the condvar sleep this replaced was
//! exact to the futex's precision. Go's netpoller has the same granularity. A worker with no
//! registrations skips the non-blocking polls entirely, so CPU-only workloads pay nothing else.
//!
//! # The alternative: one shared poller (`RuntimeBuilder::shared_poller`)
//! Every socket registers with one `epoll` that whichever worker is free polls (Go's
//! netpoller); readiness for a fiber pinned elsewhere goes to its home through the inbox. The
//! shared poller's fd sits in each slot's poller (nested epoll), so a sleeping worker wakes for
//! its events, and `exclusive.rs` lets one worker poll it at a time without ever stranding an
//! event. Measured with the lab (`run io --full --peers fibra,tokio --reps 3`, wrk on the same
//! 2 cores, medians), per-worker vs shared: 78,316 vs 76,505 req/s and p99 7.66 vs 6.99 ms at
//! 100 connections; 56,555 vs 57,478 req/s and p99 27.8 vs 31.0 ms at 1,000 (tokio + hyper in
//! the same run: 67,636 and 50,821 req/s, p99 5.22 and 53.6 ms). The differences are inside
//! the runs' spread. Per-worker stays the default: events need no cross-thread hand-off, a
//! worker's sleep is one `epoll_wait` on its own fd, and no worker waits on another's poll.
//! Neither fixes fibra's p99 at 100 connections: a pinned fiber waits for its own thread
//! whoever notices its readiness, and wrk preempts that thread (tokio can poll the task from
//! the other worker).
//!
//! # Tokens and fd reuse
//! A token is `generation << 32 | index` into the table. Removing an entry bumps its
//! generation, so an event still queued for a closed fd (whose number the kernel may already
//! have handed to a new socket registered at the same index) matches no live registration and
//! wakes nobody.

mod exclusive;
mod scheduled;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::fiber::FiberRef;
pub(crate) use scheduled::{Direction, ScheduledIo};
use scheduled::{READABLE, READ_CLOSED, WRITABLE, WRITE_CLOSED};

/// The token of the slot's `mio::Waker` (no table index reaches it).
const WAKE_TOKEN: Token = Token(usize::MAX);
/// The token of the shared poller's epoll fd inside a slot's poller (`watch`).
const SHARED_TOKEN: Token = Token(usize::MAX - 1);

/// Events taken per `epoll_wait`: more stay queued in the kernel for the next poll.
const EVENTS_PER_POLL: usize = 1024;

pub(crate) struct Reactor {
    /// A slot's poller: its owner thread only; the shared poller: the one worker `poll_shared`
    /// lets in. So the mutex is never contended: it only lets `&self` poll.
    poll: Mutex<(Poll, Events)>,
    registry: Registry,
    table: Mutex<Table>,
    /// Live registrations: a worker skips its non-blocking polls while this is 0.
    live: AtomicUsize,
    /// False once the session ended: nobody polls this reactor any more.
    open: AtomicBool,
    /// `epoll_wait` calls, and the fiber wake-ups their events released (for
    /// `fibra::debug::metrics`; the owner polls, and the monitor while the owner is stuck).
    polls: AtomicU64,
    released: AtomicU64,
    /// The shared poller only: who polls it now (`exclusive.rs`).
    shared_polls: exclusive::Exclusive,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

struct Entry {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

impl Table {
    fn get(&self, token: Token) -> Option<&Arc<ScheduledIo>> {
        let (index, generation) = (token.0 as u32 as usize, (token.0 >> 32) as u32);
        let e = self.entries.get(index)?;
        (e.generation == generation).then_some(e.io.as_ref()?)
    }
}

impl Reactor {
    /// A reactor and the waker that breaks its owner's blocking poll.
    pub(crate) fn new() -> io::Result<(Reactor, mio::Waker)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(&registry, WAKE_TOKEN)?;
        let reactor = Reactor {
            poll: Mutex::new((poll, Events::with_capacity(EVENTS_PER_POLL))),
            registry,
            table: Mutex::new(Table::default()),
            live: AtomicUsize::new(0),
            open: AtomicBool::new(true),
            polls: AtomicU64::new(0),
            released: AtomicU64::new(0),
            shared_polls: exclusive::Exclusive::new(),
        };
        Ok((reactor, waker))
    }

    /// Makes this (a slot's) poller report when `shared` has events, so a worker sleeping in it
    /// wakes to poll the shared one. Nested epoll, edge-triggered: each new event in `shared`
    /// is one edge here.
    pub(crate) fn watch(&self, shared: &Reactor) -> io::Result<()> {
        let fd = shared.lock_poll().0.as_raw_fd();
        self.registry
            .register(&mut SourceFd(&fd), SHARED_TOKEN, Interest::READABLE)
    }

    /// Any thread: registers `fd` edge-triggered for both directions.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<(Token, Arc<ScheduledIo>)> {
        let io = Arc::new(ScheduledIo::new());
        let token = {
            let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let index = match t.free.pop() {
                Some(i) => i,
                None => {
                    let Ok(i) = u32::try_from(t.entries.len()) else {
                        return Err(io::Error::other("fibra: too many registered sockets"));
                    };
                    t.entries.push(Entry {
                        generation: 0,
                        io: None,
                    });
                    i
                }
            };
            let e = &mut t.entries[index as usize];
            e.io = Some(io.clone());
            Token(((e.generation as usize) << 32) | index as usize)
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.registry.register(&mut SourceFd(&fd), token, interest) {
            self.remove(token);
            return Err(e);
        }
        self.live.fetch_add(1, Relaxed);
        Ok((token, io))
    }

    /// Any thread, before `fd` is closed: removes the registration.
    pub(crate) fn deregister(&self, fd: RawFd, token: Token) {
        // An error here means the fd is no longer registered: nothing to undo.
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        self.remove(token);
        self.live.fetch_sub(1, Relaxed);
    }

    fn remove(&self, token: Token) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let index = token.0 as u32;
        if let Some(e) = t.entries.get_mut(index as usize) {
            e.io = None;
            e.generation = e.generation.wrapping_add(1);
            t.free.push(index);
        }
    }

    /// Are there registrations (events worth a non-blocking poll)?
    pub(crate) fn has_registrations(&self) -> bool {
        self.live.load(Relaxed) != 0
    }

    /// Polls without blocking (skipped while nothing is registered: a syscall saved) and hands
    /// `runnable` each fiber the events made runnable, unparked and with its reference owned.
    /// The owner worker polls so while it has work; the monitor, for a stuck worker.
    pub(crate) fn poll_now(&self, runnable: impl FnMut(FiberRef)) {
        if !self.has_registrations() {
            return;
        }
        let mut released = Vec::new();
        self.poll(Some(Duration::ZERO), &mut released);
        released
            .into_iter()
            .filter_map(crate::park::unpark_owned)
            .for_each(runnable);
    }

    /// The shared poller, any worker: polls without blocking unless another worker is polling
    /// it, and hands `runnable` the fibers released (as `poll_now`).
    ///
    /// No event is stranded while every worker sleeps: `exclusive.rs` (with its loom model).
    pub(crate) fn poll_shared(&self, mut runnable: impl FnMut(FiberRef)) {
        if !self.has_registrations() {
            return;
        }
        let mut released = Vec::new();
        // `Exclusive` lets one worker in at a time, so the lock is never contended.
        self.shared_polls.poll(|| {
            self.poll_locked(&mut self.lock_poll(), Some(Duration::ZERO), &mut released);
        });
        released
            .into_iter()
            .filter_map(crate::park::unpark_owned)
            .for_each(&mut runnable);
    }

    fn lock_poll(&self) -> std::sync::MutexGuard<'_, (Poll, Events)> {
        self.poll.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Owner thread: waits up to `timeout` (None: until an event or the waker), records the
    /// events and returns the fibers they release (the caller unparks them).
    pub(crate) fn poll(&self, timeout: Option<Duration>, woken: &mut Vec<FiberRef>) {
        self.poll_locked(&mut self.lock_poll(), timeout, woken);
    }

    fn poll_locked(
        &self,
        guard: &mut (Poll, Events),
        timeout: Option<Duration>,
        woken: &mut Vec<FiberRef>,
    ) {
        let before = woken.len();
        let (poll, events) = guard;
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                fatal!("io::reactor::poll: epoll_wait failed: {e}");
            }
            return;
        }
        // A syscall was just paid: an uncontended read-modify-write is noise beside it.
        self.polls.fetch_add(1, Relaxed);
        if events.is_empty() {
            return; // the common case of a searching worker's poll: no table lock
        }
        // Other executors' wakers, woken below once the table is unlocked (a waker runs
        // foreign code). Allocates only if there are some.
        let mut tasks = Vec::new();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for ev in events.iter() {
            if ev.token() == WAKE_TOKEN || ev.token() == SHARED_TOKEN {
                continue; // the caller polls the shared poller after this (worker.rs)
            }
            let Some(io) = table.get(ev.token()) else {
                continue; // deregistered since (a stale token: see "Tokens and fd reuse")
            };
            let mut ready = 0;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                ready |= READABLE;
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                ready |= WRITABLE;
            }
            if ev.is_read_closed() || ev.is_error() {
                ready |= READ_CLOSED;
            }
            if ev.is_write_closed() || ev.is_error() {
                ready |= WRITE_CLOSED;
            }
            io.set_ready(ready, woken, &mut tasks);
        }
        drop(table);
        self.released
            .fetch_add((woken.len() - before + tasks.len()) as u64, Relaxed);
        tasks.into_iter().for_each(std::task::Waker::wake);
    }

    /// `(epoll_wait calls, fiber wake-ups released)` so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.polls.load(Relaxed), self.released.load(Relaxed))
    }

    /// Is a session still polling this reactor? A socket registered in an ended session
    /// must not park on it (nobody would ever wake it).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Relaxed)
    }

    /// After the session: closes the reactor to waits and drops what the table holds.
    pub(crate) fn clear(&self) {
        self.open.store(false, Relaxed);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for e in t.entries.iter_mut() {
            e.io = None;
        }
    }
}

impl crate::sched::Unblock for mio::Waker {
    fn unblock(&self) {
        if let Err(e) = self.wake() {
            fatal!("io::reactor: cannot wake a worker's poller: {e}");
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// fd reuse: a token of a removed registration matches nothing, even when the same fd
    /// number is registered again at the same index.
    #[test]
    fn a_stale_token_matches_no_registration() {
        let (r, _waker) = Reactor::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let (old, _) = r.register(a.as_raw_fd()).unwrap();
        r.deregister(a.as_raw_fd(), old);
        let (new, io) = r.register(a.as_raw_fd()).unwrap();
        assert_eq!(old.0 as u32, new.0 as u32, "the index is reused");
        assert_ne!(old, new, "with a new generation");
        let t = r.table.lock().unwrap();
        assert!(t.get(old).is_none());
        assert!(Arc::ptr_eq(t.get(new).unwrap(), &io));
    }

    /// An event sets the readiness bit and bumps the tick, so a `clear` based on an older
    /// snapshot fails (the caller retries instead of sleeping through the edge).
    #[test]
    fn an_edge_after_the_snapshot_defeats_clear() {
        let (r, _waker) = Reactor::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (_, io) = r.register(a.as_raw_fd()).unwrap();
        let mut woken = Vec::new();
        r.poll(Some(Duration::ZERO), &mut woken); // the registration's initial edge
        let snap = io.snapshot();
        b.write_all(b"x").unwrap();
        r.poll(Some(Duration::ZERO), &mut woken);
        assert!(
            !io.clear(snap, Direction::Read),
            "a newer edge must not be erased"
        );
        assert!(io.clear(io.snapshot(), Direction::Read));
        assert_eq!(io.snapshot() & READABLE, 0);
        assert!(woken.is_empty());
    }
}
