//! `park(reason)` and `unpark`: the one way anything in fibra waits.
//!
//! Inside a fiber, `park` switches the fiber out and its worker runs others; an unpark (or a
//! [`Waker`] made for the fiber) puts it back on its home worker. On a plain OS thread the same
//! calls fall back to `std::thread::park`, so every fibra primitive also works from threads.
//!
//! Like `std::thread::park`, a park may return spuriously: callers re-check their condition in
//! a loop. A pending unpark (the `NOTIFIED` token) makes the next park return at once.
//!
//! A park is also where a fiber acts on `JoinHandle::cancel` (fiber/cancel.rs): `park`
//! unwinds the fiber if a cancel request is pending when it is called; a request that comes
//! while it is parked wakes it (a spurious return), and its caller's next park unwinds.
//! `park_uncancellable` is for the few waits whose frame must not be left early.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Wake, Waker};
use std::thread::Thread;

use crate::fiber::{switch, FiberRef, Header, Suspend};
use crate::sched::{self, context};

/// Why a fiber is parked; debugging output shows it next to the fiber.
///
/// ```
/// # fibra::run(|| {
/// use fibra::ParkReason;
/// let (tx, rx) = fibra::chan::bounded::<()>(0);
/// let inner = fibra::spawn(move || rx.recv().unwrap());
/// let outer = fibra::spawn(move || inner.join().unwrap());
/// let fiber = outer.fiber().clone();
/// while fiber.park_reason() != ParkReason::Join { fibra::yield_now(); }
/// tx.send(()).unwrap();
/// outer.join().unwrap();
/// assert_eq!(fiber.park_reason(), ParkReason::None); // finished
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ParkReason {
    /// Not parked.
    None = 0,
    /// `fibra::park()` called by user code.
    User,
    /// `fibra::sleep` / `sleep_until`.
    Sleep,
    /// `JoinHandle::join`.
    Join,
    /// `fibra::await_future(future)`, waiting for the future's waker.
    BlockOn,
    /// The end of a `fibra::scope`, waiting for its fibers.
    Scope,
    /// `fibra::sync::Mutex::lock` (or `Condvar` re-acquiring its mutex).
    MutexLock,
    /// `fibra::sync::RwLock::read`.
    RwLockRead,
    /// `fibra::sync::RwLock::write`.
    RwLockWrite,
    /// `fibra::sync::Condvar::wait`, waiting for a notification.
    Condvar,
    /// `fibra::sync::Semaphore::acquire`.
    Semaphore,
    /// `fibra::sync::Barrier::wait`.
    Barrier,
    /// `fibra::sync::WaitGroup::wait`.
    WaitGroup,
    /// `fibra::sync::OnceCell`, waiting for another fiber's initialiser.
    OnceInit,
    /// `fibra::sync::Notify::notified`.
    Notify,
    /// `fibra::chan` `send` on a full channel (or a rendezvous with no receiver).
    ChanSend,
    /// `fibra::chan` `recv` on an empty channel.
    ChanRecv,
    /// `fibra::select!`, waiting for any of its arms.
    Select,
    /// `fibra::run_blocking`, waiting for its closure to finish on a blocking-pool thread.
    Blocking,
    /// `JoinHandle::join` of a `fibra::spawn_blocking` task.
    BlockingJoin,
    /// A `fibra::net` read (or receive), waiting for its socket to become readable.
    IoRead,
    /// A `fibra::net` write (or send), waiting for its socket to become writable.
    IoWrite,
    /// A `fibra::net` listener's `accept`, waiting for a connection.
    Accept,
    /// A `fibra::net` `connect`, waiting for the handshake to finish.
    Connect,
    /// A `fibra::fs` operation, waiting for its io_uring completion.
    FileIo,
}

impl ParkReason {
    pub(crate) fn from_u8(v: u8) -> ParkReason {
        match v {
            1 => ParkReason::User,
            2 => ParkReason::Sleep,
            3 => ParkReason::Join,
            4 => ParkReason::BlockOn,
            5 => ParkReason::Scope,
            6 => ParkReason::MutexLock,
            7 => ParkReason::RwLockRead,
            8 => ParkReason::RwLockWrite,
            9 => ParkReason::Condvar,
            10 => ParkReason::Semaphore,
            11 => ParkReason::Barrier,
            12 => ParkReason::WaitGroup,
            13 => ParkReason::OnceInit,
            14 => ParkReason::Notify,
            15 => ParkReason::ChanSend,
            16 => ParkReason::ChanRecv,
            17 => ParkReason::Select,
            18 => ParkReason::Blocking,
            19 => ParkReason::BlockingJoin,
            20 => ParkReason::IoRead,
            21 => ParkReason::IoWrite,
            22 => ParkReason::Accept,
            23 => ParkReason::Connect,
            24 => ParkReason::FileIo,
            _ => ParkReason::None,
        }
    }
}

/// Who is waiting, looked up once for a whole wait (a channel `send`/`recv` parks, checks for
/// cancellation and builds a waker: one thread-local read instead of one each; callgrind).
/// `!Send`: made and used by the waiting code itself.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    /// The running fiber's header, or null on a plain thread.
    fiber: *const Header,
}

impl Caller {
    /// The fiber running on this thread, or the thread itself.
    pub(crate) fn current() -> Caller {
        Caller {
            fiber: context::with_current_fiber(|f| f.map_or(std::ptr::null(), std::ptr::from_ref)),
        }
    }

    fn fiber(&self) -> Option<&Header> {
        // SAFETY: non-null only when made by the running fiber for itself (`current`), and a
        // `Caller` does not leave the code that made it (`!Send`, kept in that fiber's frames).
        // The header lives while its fiber is unfinished, which covers every use here, parks
        // included; nothing here touches thread-local data, so a resume on another thread
        // (migration opt-in) changes nothing.
        unsafe { self.fiber.as_ref() }
    }

    /// `park(reason)`, for this caller.
    pub(crate) fn park(&self, reason: ParkReason) {
        match self.fiber() {
            Some(h) => {
                // Before switching out only: a cancel request wakes a parked fiber like an
                // unpark, so the park returns; its caller re-checks what it waits for (a
                // value handed over meanwhile is taken, never lost to the unwind) and parks
                // again, which unwinds here.
                crate::fiber::cancel::check(h);
                park_fiber(h, reason);
            }
            None => std::thread::park(),
        }
    }

    /// Unwinds the calling fiber if it has a pending cancel request (fiber/cancel.rs).
    pub(crate) fn check_cancel(&self) {
        if let Some(h) = self.fiber() {
            crate::fiber::cancel::check(h);
        }
    }

    /// `park_uncancellable(reason)`, for this caller.
    pub(crate) fn park_uncancellable(&self, reason: ParkReason) {
        match self.fiber() {
            Some(h) => park_fiber(h, reason),
            None => std::thread::park(),
        }
    }

    /// True while shutdown (not the fiber's own cancellation) unwinds the calling fiber.
    pub(crate) fn shutdown_cancelling(&self) -> bool {
        self.fiber()
            .is_some_and(|h| h.state.is_shutdown_cancelling())
    }

    /// If the calling fiber is unwinding for its own cancellation, lets its parks park again
    /// until `resume_self_cancel` (a wait that must outlast what it waits for, inside a
    /// destructor: `fibra::scope`). True if it did.
    pub(crate) fn pause_self_cancel(&self) -> bool {
        self.fiber().is_some_and(|h| h.state.end_self_cancel())
    }

    /// Undoes `pause_self_cancel`.
    pub(crate) fn resume_self_cancel(&self) {
        if let Some(h) = self.fiber() {
            h.state.begin_self_cancel();
        }
    }

    /// Unwinds the calling fiber as cancelled (a scope re-raising the cancellation it held
    /// back). Returns on a plain thread, which has no cancellation.
    pub(crate) fn raise_cancel(&self) {
        if let Some(h) = self.fiber() {
            crate::fiber::cancel::raise_now(h);
        }
    }

    /// True if the calling fiber has a cancel request it has not acted on yet.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.fiber().is_some_and(|h| h.state.cancel_requested())
    }

    /// `cancelling()`, for this caller.
    pub(crate) fn cancelling(&self) -> bool {
        match self.fiber() {
            Some(h) => h.state.is_cancelling(),
            None => context::discarding(), // cold: plain threads only
        }
    }

    /// `current_waker()`, for this caller.
    pub(crate) fn waker(&self) -> Waker {
        match self.fiber() {
            Some(h) => fiber_waker(h.to_ref()),
            None => Waker::from(Arc::new(ThreadWaker(std::thread::current()))),
        }
    }

    /// The calling fiber (if any) records what it is about to wait for (`Watch::note_waiting`).
    pub(crate) fn note_waiting(&self, object: usize, holder: u64) {
        if let Some(h) = self.fiber() {
            h.watch.note_waiting(object, holder);
        }
    }
}

/// Parks the calling fiber (or thread) until an unpark; may return spuriously. Unwinds the
/// fiber instead if it has a pending cancel request (`JoinHandle::cancel`).
pub(crate) fn park(reason: ParkReason) {
    Caller::current().park(reason);
}

/// `park`, but never unwinds for a cancel request (it stays pending for a later `park`): for
/// waits whose frame must outlive what they wait for (`fibra::run_blocking`'s closure,
/// `fibra::scope`'s children). A cancel request still wakes it (spuriously).
pub(crate) fn park_uncancellable(reason: ParkReason) {
    Caller::current().park_uncancellable(reason);
}

#[inline]
fn park_fiber(h: &Header, reason: ParkReason) {
    // During shutdown's unwinding nothing will ever unpark us: return and let the caller's
    // loop see that (joins and sleeps check `is_cancelling`). A fiber unwinding for its own
    // cancel request behaves the same, so its unwinding never switches out (shutdown can
    // then never claim it midway).
    if h.state.take_notified() || h.state.is_cancelling() {
        // A dump's wake-up may have left this token: answer its backtrace request now.
        h.watch.serve_capture(h.identity.id);
        h.watch.park_ended();
        return;
    }
    h.reason.store(reason as u8, Relaxed);
    // Parked-since, for dumps: one relaxed load of the session's coarse clock.
    let now_ms = h.shared.clock.now_ms();
    h.watch.parked_at.store(now_ms, Relaxed);
    switch::suspend(h, Suspend::Park);
    // A dump woke us to capture our stack: answer, then park again unseen by the caller
    // (no wake-up is lost: fiber/watch.rs, "Capture hand-shake").
    while h.watch.serve_capture(h.identity.id) {
        switch::suspend(h, Suspend::Park);
    }
    h.watch.park_ended();
    h.reason.store(ParkReason::None as u8, Relaxed);
}

/// True when the calling fiber is being unwound, by shutdown or by its own cancellation, or the
/// calling thread drops a never-run fiber's closure for the runtime (`context::Discarding`):
/// waits must not block then.
pub(crate) fn cancelling() -> bool {
    Caller::current().cancelling()
}

/// Any thread: makes a parked fiber runnable, or leaves it a token.
pub(crate) fn unpark(fiber: &Header) {
    if fiber.state.unpark() == crate::fiber::AfterUnpark::Schedule {
        // 1 fiber in 64: a wake-to-run latency sample.
        sched::stats::stamp_wake(fiber);
        // SAFETY: our PARKED → SCHEDULED transition just succeeded.
        sched::schedule_woken(unsafe { fiber.adopt_parked_ref() });
    }
}

/// Any thread, holding a counted reference (a timer entry's, a waiter list's): unparks the
/// fiber and returns that reference for the caller to queue if the unpark made it runnable;
/// the parked state's own count is released.
pub(crate) fn unpark_owned(fiber: FiberRef) -> Option<FiberRef> {
    if fiber.state.unpark() != crate::fiber::AfterUnpark::Schedule {
        return None;
    }
    // SAFETY: our PARKED → SCHEDULED transition just succeeded.
    drop(unsafe { fiber.adopt_parked_ref() });
    Some(fiber)
}

/// A waker for whoever is calling: the current fiber, or else the current thread.
pub(crate) fn current_waker() -> Waker {
    Caller::current().waker()
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A `Waker` whose `wake` unparks the fiber. Cloning it is one ref-count increment.
pub(crate) fn fiber_waker(fiber: FiberRef) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(fiber).cast(), &FIBER_WAKER_VTABLE);
    // SAFETY: the vtable functions below treat the data pointer as an `Arc<Header>` that owns
    // one ref-count, which is what `Arc::into_raw` just produced.
    unsafe { Waker::from_raw(raw) }
}

/// The fiber a [`fiber_waker`] wakes, with a count of its own; `None` for any other waker.
/// Lets a registration that a future made on a fiber (`fibra::await_future`) join the same
/// waiter lists as a blocking wait, so its wake-up is queued on the poller's worker like any
/// unparked fiber's (io/reactor/scheduled.rs).
pub(crate) fn waker_fiber(waker: &Waker) -> Option<FiberRef> {
    if !std::ptr::eq(waker.vtable(), &FIBER_WAKER_VTABLE) {
        return None;
    }
    let data = waker.data().cast::<Header>();
    // SAFETY: a waker with this vtable was built by `fiber_waker` (or cloned from one), so
    // `data` came from `Arc::<Header>::into_raw` and owns a count that keeps it alive while
    // `waker` lives; we add a count for the `FiberRef` we return.
    unsafe {
        Arc::increment_strong_count(data);
        Some(Arc::from_raw(data))
    }
}

static FIBER_WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

// Each function below receives the data pointer of a waker built by `fiber_waker`: a pointer
// from `Arc::<Header>::into_raw` owning one ref-count ("the waker's count").

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` owns a count (see above), so the Arc is alive; we add one for the clone.
    unsafe { Arc::increment_strong_count(data.cast::<Header>()) };
    RawWaker::new(data, &FIBER_WAKER_VTABLE)
}

unsafe fn waker_wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker, so we take over its count.
    let fiber = unsafe { Arc::from_raw(data.cast::<Header>()) };
    unpark(&fiber);
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    // SAFETY: the waker keeps its count; `ManuallyDrop` leaves it untouched.
    let fiber = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Header>()) });
    unpark(&fiber);
}

unsafe fn waker_drop(data: *const ()) {
    // SAFETY: dropping the waker releases its count.
    drop(unsafe { Arc::from_raw(data.cast::<Header>()) });
}
