//! One registration's readiness and the fibers waiting on it.
//!
//! # No lost readiness edges
//! Epoll is edge-triggered: an edge is reported once, so the word below remembers it until a
//! syscall proves it stale. `readiness` holds the READABLE/WRITABLE bits and a *tick* that
//! every event bumps.
//! ```text
//! I/O op (fiber):                              Reactor (owner worker, per event):
//! 1. snap = readiness (Acquire)                a. readiness: bits |= ready, tick += 1 (AcqRel RMW)
//! 2. syscall → WouldBlock                      b. lock waiters; take those whose bit is set
//! 3. clear the bit only if tick == snap.tick   c. unlock; unpark them
//!    (CAS); a changed tick means an edge came
//!    after 1: retry the syscall
//! 4. lock waiters; if the bit is set: unlock,
//!    retry; else enqueue self; unlock; park
//! ```
//! Step 3 cannot erase an edge newer than the failed syscall (the tick changed), and step 4
//! pairs with b–c through the mutex: if the reactor locks first, its step a happened before
//! and step 4 sees the bit; if the fiber locks first, the reactor finds it enqueued. A wake
//! may still be spurious (the fiber retries, sees WouldBlock, and waits again).
//!
//! # Futures wait the same way
//! A `poll_read` (the async adapters, `fibra::compat`) runs steps 1–3 and, at step 4, leaves
//! its `cx.waker()` where a fiber would enqueue itself (`register_waker`). A waker made for a
//! fiber (`fibra::await_future`'s) is turned back into that fiber and joins the same list, so
//! its wake-up is queued by the poller like a blocking reader's. Any other executor's waker
//! takes the direction's one `task` slot (a later poll replaces it: only the last waker given
//! to `poll_*` must be woken, as the `AsyncRead` contract says); the reactor wakes it after
//! releasing its table lock. Unlike a fiber's wait, such an entry outlives the poll that
//! made it (the future may be dropped without a word): it is woken or dropped at the next
//! edge, or with the socket.

use std::task::Waker;

use crate::loom::sync::atomic::{AtomicUsize, Ordering::*};
use crate::loom::sync::Mutex;

use crate::fiber::FiberRef;

/// Which way a fiber waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }

    fn closed_bit(self) -> usize {
        match self {
            Direction::Read => READ_CLOSED,
            Direction::Write => WRITE_CLOSED,
        }
    }

    /// Whether readiness word `snap` proves an attempt in this direction would say
    /// `WouldBlock`: its bit was cleared after one (or after a read that emptied the socket)
    /// and no edge has come since, or none has come yet since the registration (adding an fd
    /// to epoll reports its readiness as an edge), and the direction was never closed (a
    /// closed direction's end-of-stream or error is reported once, but lasts). Edge-triggered
    /// epoll reports any later readiness, so the caller may wait without attempting.
    pub(crate) fn known_not_ready(self, snap: usize) -> bool {
        snap & (self.bit() | self.closed_bit()) == 0
    }
}

pub(crate) const READABLE: usize = 1;
pub(crate) const WRITABLE: usize = 2;
/// Sticky: the peer closed its side or the socket has an error (EPOLLRDHUP, EPOLLHUP,
/// EPOLLERR); `clear` never removes these, so `known_not_ready` stays false for good.
pub(crate) const READ_CLOSED: usize = 4;
pub(crate) const WRITE_CLOSED: usize = 8;
const BITS: usize = READABLE | WRITABLE;
const CLOSED: usize = READ_CLOSED | WRITE_CLOSED;
const TICK_ONE: usize = 1 << 8;
const TICK: usize = !(TICK_ONE - 1);

#[derive(Default)]
struct Waiters {
    readers: Vec<FiberRef>,
    writers: Vec<FiberRef>,
    /// The wakers of futures polled by other executors, per direction (`register_waker`).
    read_task: Option<Waker>,
    write_task: Option<Waker>,
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut Vec<FiberRef> {
        match dir {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }

    fn task(&mut self, dir: Direction) -> &mut Option<Waker> {
        match dir {
            Direction::Read => &mut self.read_task,
            Direction::Write => &mut self.write_task,
        }
    }
}

/// Shared by the socket that owns the registration and the reactor that dispatches its events.
pub(crate) struct ScheduledIo {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    pub(crate) fn new() -> ScheduledIo {
        ScheduledIo {
            readiness: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// Step 1: the readiness word before an attempt. Acquire pairs with the reactor's RMW, so
    /// the syscall after it sees what the kernel reported.
    pub(crate) fn snapshot(&self) -> usize {
        self.readiness.load(Acquire)
    }

    /// Step 3: after `WouldBlock`, forget `dir`'s readiness unless an event arrived since
    /// `snap`. Returns false when the caller must retry its syscall instead of waiting.
    pub(crate) fn clear(&self, snap: usize, dir: Direction) -> bool {
        self.readiness
            .fetch_update(AcqRel, Acquire, |cur| {
                (cur & TICK == snap & TICK).then_some(cur & !dir.bit())
            })
            .is_ok()
    }

    /// Owner worker (step a–b): records an event and moves the fibers it releases to `woken`
    /// and other executors' wakers to `tasks` (the caller wakes them once unlocked).
    pub(crate) fn set_ready(
        &self,
        ready: usize,
        woken: &mut Vec<FiberRef>,
        tasks: &mut Vec<Waker>,
    ) {
        let ready = ready & (BITS | CLOSED);
        // AcqRel RMW: pairs with `clear`'s CAS and with `snapshot`.
        self.readiness
            .fetch_update(AcqRel, Acquire, |cur| {
                Some((cur & TICK).wrapping_add(TICK_ONE) | (cur & (BITS | CLOSED)) | ready)
            })
            .ok();
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if ready & READABLE != 0 {
            woken.append(&mut w.readers);
            tasks.extend(w.read_task.take());
        }
        if ready & WRITABLE != 0 {
            woken.append(&mut w.writers);
            tasks.extend(w.write_task.take());
        }
    }

    /// Step 4: enqueues `fiber` unless `dir` is ready. Returns false if it is ready.
    pub(crate) fn enqueue(&self, dir: Direction, fiber: &FiberRef) -> bool {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // The lock orders this load after any `set_ready` that locked before us.
        if self.readiness.load(Acquire) & dir.bit() != 0 {
            return false;
        }
        let list = w.list(dir);
        if !list.iter().any(|f| std::sync::Arc::ptr_eq(f, fiber)) {
            list.push(fiber.clone());
        }
        true
    }

    /// Step 4 for a future: leaves `waker` to be woken at `dir`'s next edge unless `dir` is
    /// ready. Returns false if it is ready (the caller retries its operation).
    pub(crate) fn register_waker(&self, dir: Direction, waker: &Waker) -> bool {
        let fiber = crate::park::waker_fiber(waker);
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // The lock orders this load after any `set_ready` that locked before us.
        if self.readiness.load(Acquire) & dir.bit() != 0 {
            return false;
        }
        match fiber {
            Some(fiber) => {
                let list = w.list(dir);
                if !list.iter().any(|f| std::sync::Arc::ptr_eq(f, &fiber)) {
                    list.push(fiber);
                }
            }
            None => match w.task(dir) {
                Some(old) if old.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            },
        }
        true
    }

    /// The wait is over (ready, timed out, cancelled or unwound): drop our entry if the
    /// reactor did not take it. Keeps no fiber reference alive past its wait (no cycle
    /// fiber → session → reactor → fiber).
    pub(crate) fn dequeue(&self, dir: Direction, fiber: &FiberRef) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.list(dir).retain(|f| !std::sync::Arc::ptr_eq(f, fiber));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The readiness protocol with the shortcuts `io/source.rs` takes on it: a read that
    //! empties the socket clears the bit (`forget_if_drained`), and an attempt is skipped
    //! while `known_not_ready` holds. The reader below runs `Source::poll_io_draining`'s
    //! steps on a model socket (`data`, what a read would get); the writer is the kernel
    //! queueing bytes, then the reactor reporting the edge (`set_ready`) and waking.
    use super::*;
    use crate::loom::sync::atomic::AtomicBool;
    use crate::loom::sync::Arc;
    use crate::loom::thread;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, SeqCst);
        }
    }

    /// One poll of a stream read: `Some(n)` when it read, `None` when it left its waker.
    fn poll_read(
        io: &ScheduledIo,
        data: &AtomicUsize,
        closed: &AtomicBool,
        waker: &Waker,
    ) -> Option<usize> {
        loop {
            let snap = io.snapshot();
            if !Direction::Read.known_not_ready(snap) {
                let n = data.swap(0, SeqCst); // read(2) takes everything queued: a short read
                if n > 0 || closed.load(SeqCst) {
                    if n > 0 {
                        io.clear(snap, Direction::Read); // drained (`forget_if_drained`)
                    }
                    return Some(n);
                }
                // WouldBlock
            }
            if !io.clear(snap, Direction::Read) {
                continue;
            }
            if io.register_waker(Direction::Read, waker) {
                return None;
            }
        }
    }

    fn writer(io: Arc<ScheduledIo>, data: Arc<AtomicUsize>, closed: Arc<AtomicBool>, close: bool) {
        if close {
            closed.store(true, SeqCst); // the peer's FIN: reads return 0 from now on
        } else {
            data.fetch_add(1, SeqCst);
        }
        let ready = if close {
            READABLE | READ_CLOSED
        } else {
            READABLE
        };
        let (mut woken, mut tasks) = (Vec::new(), Vec::new());
        io.set_ready(ready, &mut woken, &mut tasks);
        tasks.into_iter().for_each(Waker::wake);
    }

    /// Whatever the interleaving, a reader that drained the socket and then left its waker
    /// is woken for bytes (or an end of stream) that arrive later, and a read after the
    /// wake-up gets them: no edge is lost to the shortcut.
    fn no_lost_wakeup(close: bool) {
        loom::model(move || {
            let io = Arc::new(ScheduledIo::new());
            let data = Arc::new(AtomicUsize::new(1)); // one byte queued, its edge reported
            let closed = Arc::new(AtomicBool::new(false));
            io.set_ready(READABLE, &mut Vec::new(), &mut Vec::new());
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let t = {
                let (io, data, closed) = (io.clone(), data.clone(), closed.clone());
                thread::spawn(move || writer(io, data, closed, close))
            };
            let mut got = Vec::new();
            while let Some(n) = poll_read(&io, &data, &closed, &waker) {
                got.push(n);
                if n == 0 {
                    break; // end of stream
                }
            }
            t.join().unwrap();
            let done = if close {
                got.last() == Some(&0)
            } else {
                got.iter().sum::<usize>() == 2
            };
            if !done {
                assert!(
                    flag.0.load(SeqCst),
                    "the reader waits, and nothing will wake it"
                );
                let n = poll_read(&io, &data, &closed, &waker);
                assert_eq!(
                    n,
                    Some(if close { 0 } else { 1 }),
                    "woken, but the read found nothing"
                );
            }
        });
    }

    /// The last bytes and the end of stream came in one edge: the read that empties the
    /// socket must not make the next one wait (the closed bit is sticky).
    #[test]
    fn loom_end_of_stream_reported_with_the_last_bytes() {
        loom::model(|| {
            let io = ScheduledIo::new();
            let data = AtomicUsize::new(1);
            let closed = AtomicBool::new(true);
            io.set_ready(READABLE | READ_CLOSED, &mut Vec::new(), &mut Vec::new());
            let waker = Waker::from(std::sync::Arc::new(Flag(AtomicBool::new(false))));
            assert_eq!(poll_read(&io, &data, &closed, &waker), Some(1));
            assert_eq!(
                poll_read(&io, &data, &closed, &waker),
                Some(0),
                "the end of stream must be read, not waited for"
            );
        });
    }

    #[test]
    fn loom_drained_read_then_more_bytes() {
        no_lost_wakeup(false);
    }

    #[test]
    fn loom_drained_read_then_end_of_stream() {
        no_lost_wakeup(true);
    }
}
