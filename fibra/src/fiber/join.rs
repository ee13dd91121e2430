//! `JoinHandle`: waiting for a fiber and taking its result; the packet both sides share.
//!
//! # The packet
//! Each fiber has one packet: its code until it starts, then its result until it is joined.
//! It lives *in the header's allocation* when it fits (`PacketSlot`'s inline area), else in a
//! box the slot points to; either way a spawn costs one heap allocation, or two for big
//! closures. (A separate `Arc` packet cost a malloc/free pair per fiber, which glibc makes
//! slow once thousands of fibers are outstanding and its per-thread cache overflows.)
//!
//! The packet is not owned by the header's reference count but by two *sides*, exactly as
//! the `Arc` packet was: the fiber side (a `StartRef`: held by the header until its first run,
//! `Header::take_start`, then in the coroutine's entry closure, or in a blocking `Task`) and
//! the handle side (`JoinHandle`). The
//! last side to let go drops the packet (the closure if it never ran, the result if nobody
//! took it, and a scoped fiber's bookkeeping, which `fibra::scope` waits for), on its own
//! thread, then and there: a `Fiber` handle kept for long keeps the header's memory, never
//! the packet's contents. Both sides live no longer than the header (a `StartRef` inside the
//! header or beside a `FiberRef`, a `JoinHandle` holding a `Fiber`), so the inline area is
//! valid whenever a side reaches it.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, Ordering::*};
use std::sync::Arc;

use super::handle::Fiber;
use super::header::Header;
use super::local;
use super::switch;
use crate::error::JoinError;
use crate::loom::sync::atomic::AtomicU8;
use crate::park::{self, ParkReason};
use crate::sched::context;
use crate::scope::ScopeData;

/// The fiber's code until it starts, then its result until it is joined.
pub(crate) struct Packet<T, F> {
    result: UnsafeCell<Option<Result<T, JoinError>>>,
    start: UnsafeCell<Option<F>>,
    /// Set for scoped fibers: the scope waits until every packet is gone (std's protocol).
    scope: Option<Arc<ScopeData>>,
}

/// Bytes of packet stored in the header itself (a packet with no captures and a small
/// result takes ~40; a couple of captured handles still fit).
const INLINE_SIZE: usize = 64;
/// The inline area's alignment; a packet needing more is boxed.
const INLINE_ALIGN: usize = 16;

#[repr(C, align(16))]
struct InlineArea([MaybeUninit<u8>; INLINE_SIZE]);

const _: () = assert!(mem::align_of::<InlineArea>() == INLINE_ALIGN);

/// What the fiber side and the last side need of a packet, without its types.
pub(crate) struct PacketVTable {
    /// `Start::run` on the packet at the pointer.
    run: unsafe fn(*const ()),
    /// `Start::discard` on the packet at the pointer.
    discard: unsafe fn(*const ()),
    /// Drops the packet: in place (inline) or with its box.
    drop: unsafe fn(*mut ()),
    /// The inline area holds the packet's box pointer, not the packet.
    boxed: bool,
}

/// The packet's place in the header, and the count of its sides.
pub(crate) struct PacketSlot {
    /// The packet, or (`PacketVTable::boxed`) the pointer to its box: a separate pointer
    /// field cost 16 bytes a fiber (alignment).
    inline: UnsafeCell<InlineArea>,
    /// `None`: no packet (test headers).
    vtable: Option<&'static PacketVTable>,
    /// Sides still holding the packet (2 at spawn; 1 for an already-cancelled handle).
    sides: SideCount,
}

impl PacketSlot {
    pub(crate) fn empty() -> PacketSlot {
        PacketSlot {
            inline: UnsafeCell::new(InlineArea([MaybeUninit::uninit(); INLINE_SIZE])),
            vtable: None,
            sides: SideCount::new(0),
        }
    }

    /// Stores `packet`, held by `sides` sides. Before the header is shared (`&mut`).
    fn install<T: Send, F: FnOnce() -> T + Send>(&mut self, packet: Packet<T, F>, sides: u8) {
        assert!(self.vtable.is_none(), "a header has one packet");
        if fits_inline::<Packet<T, F>>() {
            // SAFETY: the area is large and aligned enough (checked just now) and empty.
            unsafe { self.inline.get().cast::<Packet<T, F>>().write(packet) };
            self.vtable = Some(&<Packet<T, F> as Start>::INLINE);
        } else {
            let boxed: *mut () = Box::into_raw(Box::new(packet)).cast();
            // SAFETY: the area is empty, and large and aligned enough for a pointer.
            unsafe { self.inline.get().cast::<*mut ()>().write(boxed) };
            self.vtable = Some(&<Packet<T, F> as Start>::BOXED);
        }
        self.sides = SideCount::new(sides);
    }

    /// Where the packet is.
    fn data(&self) -> *mut () {
        if self.vtable().boxed {
            // SAFETY: a boxed packet's `install` wrote its pointer there, and nothing else
            // writes the area while a side holds the packet.
            unsafe { self.inline.get().cast::<*mut ()>().read() }
        } else {
            self.inline.get().cast()
        }
    }

    fn vtable(&self) -> &'static PacketVTable {
        match self.vtable {
            Some(v) => v,
            None => fatal!("fiber::join: a packet side on a header without a packet"),
        }
    }

    /// One side is done with the packet; the last one drops it, here and now.
    ///
    /// # Safety
    /// The caller is a side that has not released yet (`StartRef`, `JoinHandle`), and it no
    /// longer touches the packet.
    unsafe fn release(&self) {
        if self.sides.release() {
            // SAFETY: every other side has released (`SideCount::release` returned true,
            // with the Acquire that orders their accesses before this), so nobody else
            // touches the packet; it was installed (a side exists) and is dropped once.
            unsafe { (self.vtable().drop)(self.data()) }
        }
    }
}

impl Drop for PacketSlot {
    fn drop(&mut self) {
        if self.vtable.is_some() && self.sides.get_mut() != 0 {
            // Both sides live no longer than the header (module docs), so this is a bug: stop
            // rather than free the packet under a side that may still use it.
            fatal!("fiber::join: header dropped while its packet is held");
        }
    }
}

/// The count of a packet's sides: like `Arc`'s strong count, Release on every decrement and
/// Acquire for the last, so the last side sees everything the others did with the packet.
pub(crate) struct SideCount(AtomicU8);

impl SideCount {
    pub(crate) fn new(sides: u8) -> SideCount {
        SideCount(AtomicU8::new(sides))
    }

    /// True for the last side.
    pub(crate) fn release(&self) -> bool {
        if self.0.fetch_sub(1, Release) != 1 {
            return false;
        }
        crate::loom::sync::atomic::fence(Acquire);
        true
    }

    fn get_mut(&mut self) -> u8 {
        // `with_mut` exists under loom only; a load is the same under `&mut`.
        self.0.load(Relaxed)
    }
}

fn fits_inline<P>() -> bool {
    mem::size_of::<P>() <= INLINE_SIZE && mem::align_of::<P>() <= INLINE_ALIGN
}

/// The fiber side's hold on its packet: held by the header until the first run, then in the
/// coroutine's entry closure (or in a blocking `Task`). Dropping it releases the side.
pub(crate) struct StartRef {
    header: *const Header,
}

// SAFETY: the packet's code and result are `Send` (`spawn_raw`'s and `spawn_blocking`'s
// bounds), and the side count is atomic; the header pointer is valid as long as the StartRef
// lives (`StartRef::new`'s contract), whichever thread holds it.
unsafe impl Send for StartRef {}

impl StartRef {
    /// # Safety
    /// `header` carries a packet with a fiber side not yet taken (one `StartRef` per packet),
    /// and the `StartRef` lives no longer than the header: inside it, or dropped before the
    /// last `FiberRef` beside it.
    pub(crate) unsafe fn new(header: *const Header) -> StartRef {
        StartRef { header }
    }

    fn slot(&self) -> &PacketSlot {
        // SAFETY: the header outlives this StartRef (`new`'s contract).
        unsafe { &(*self.header).packet }
    }

    /// Runs the fiber's code on its own stack, once (see `Start::run`).
    pub(crate) fn run(&self) {
        let slot = self.slot();
        // SAFETY: the fiber side holds the packet (it is alive), and `run` is only reached by
        // the owner of the fiber's run (see `Start`).
        unsafe { (slot.vtable().run)(slot.data()) }
    }

    /// Drops the code of a fiber that will never run; a no-op after `run`. Waits in its
    /// destructors give up (`context::Discarding`): this runs outside any fiber, on a thread
    /// the runtime needs.
    pub(crate) fn discard(&self) {
        let _waits_give_up = context::Discarding::begin();
        let slot = self.slot();
        // SAFETY: as in `run`.
        unsafe { (slot.vtable().discard)(slot.data()) }
    }
}

impl StartRef {
    /// Releases the side through the header being dropped (its own `&mut`), not the stored
    /// pointer.
    pub(crate) fn release_in(self, header: &mut Header) {
        debug_assert!(std::ptr::eq(self.header, header));
        mem::forget(self);
        // SAFETY: this is the fiber side (forgotten above, so released once, here).
        unsafe { header.packet.release() }
    }
}

impl Drop for StartRef {
    fn drop(&mut self) {
        // SAFETY: this is the fiber side, released once (here); it is done with the packet.
        unsafe { self.slot().release() }
    }
}

/// The bottom frame of every fiber's stack: runs the fiber's code, then lets go of what the
/// fiber owns, on its own stack and thread, whether the code returned, panicked or is being
/// unwound by shutdown:
/// 1. its side of the packet: a detached fiber's result (or panic payload) is dropped here,
///    and a panic in that drop aborts (`drop_or_abort`), so nothing unwinds out of the stack;
/// 2. its fiber-locals, last, because the result's destructor may still use them; drained
///    until none is left, then closed (`local::destroy`), so none can outlive the fiber and
///    be dropped by whichever thread frees the header.
///
/// A cancellation (`switch::Cancelled`) that unwinds the code or the result's destructor ends
/// here, after both steps; the root then returns normally.
pub(crate) fn fiber_root(start: StartRef) {
    let header = start.header;
    // `Start::run` catches the code's panics; only a cancellation comes out.
    let ran = panic::catch_unwind(AssertUnwindSafe(|| start.run()));
    // A cancellation may also come out of the result's destructor (`Packet::drop`).
    let released = panic::catch_unwind(AssertUnwindSafe(move || drop(start)));
    // SAFETY: we run on the fiber's own stack (the root frame), where `locals` is touched, and
    // the header outlives the coroutine (`new_coroutine`).
    unsafe { local::destroy(&*header) };
    for outcome in [ran, released] {
        if let Err(payload) = outcome {
            if !switch::is_cancellation(&*payload) {
                fatal!("fiber::join: a panic other than a cancellation reached a fiber's root");
            }
            // The cancellation ends here: the root returns, and corosensei's forced unwind
            // (if that is what started it) is done.
        }
    }
}

/// Puts `packet` into the header about to be published, for the fiber and a handle.
pub(crate) fn install<T: Send, F: FnOnce() -> T + Send>(header: &mut Header, packet: Packet<T, F>) {
    header.packet.install(packet, 2);
}

/// Puts `packet` into a header whose fiber will never exist: only a handle holds it.
pub(crate) fn install_handle_only<T: Send, F: FnOnce() -> T + Send>(
    header: &mut Header,
    packet: Packet<T, F>,
) {
    header.packet.install(packet, 1);
}

// SAFETY: `start` is taken once, by the worker that owns the fiber's first run (or shutdown's
// claimer), before any other access; `result` is written once by the fiber before its state
// becomes COMPLETE (Release) and read by the single joiner after observing COMPLETE (Acquire).
// `T: Send`, `F: Send` let both cross threads.
unsafe impl<T: Send, F: Send> Sync for Packet<T, F> {}

/// The code side of a packet, as the worker that starts the fiber sees it.
pub(crate) trait Start: Send + Sync + Sized {
    /// Runs the fiber's code on its own stack. Called once, on the fiber's stack.
    fn run(&self);
    /// Drops the code of a fiber that will never run (shutdown); a no-op after `run`.
    fn discard(&self);

    /// The vtable of an inline packet of this type.
    const INLINE: PacketVTable = PacketVTable {
        run: Self::run_erased,
        discard: Self::discard_erased,
        drop: Self::drop_inline,
        boxed: false,
    };
    /// The vtable of a boxed packet of this type.
    const BOXED: PacketVTable = PacketVTable {
        run: Self::run_erased,
        discard: Self::discard_erased,
        drop: Self::drop_boxed,
        boxed: true,
    };

    /// # Safety
    /// `p` points to a live `Self`.
    unsafe fn run_erased(p: *const ()) {
        // SAFETY: the caller's promise.
        unsafe { (*p.cast::<Self>()).run() }
    }

    /// # Safety
    /// `p` points to a live `Self`.
    unsafe fn discard_erased(p: *const ()) {
        // SAFETY: the caller's promise.
        unsafe { (*p.cast::<Self>()).discard() }
    }

    /// # Safety
    /// `p` points to a live `Self` in a header's inline area, which nobody uses again.
    unsafe fn drop_inline(p: *mut ()) {
        // SAFETY: the caller's promise.
        unsafe { p.cast::<Self>().drop_in_place() }
    }

    /// # Safety
    /// `p` came from `Box::<Self>::into_raw` and nobody uses it again.
    unsafe fn drop_boxed(p: *mut ()) {
        // SAFETY: the caller's promise.
        drop(unsafe { Box::from_raw(p.cast::<Self>()) })
    }
}

impl<T, F> Packet<T, F> {
    pub(crate) fn new(start: Option<F>, scope: Option<Arc<ScopeData>>) -> Packet<T, F> {
        Packet {
            result: UnsafeCell::new(None),
            start: UnsafeCell::new(start),
            scope,
        }
    }

    /// The fiber itself, once, before it completes.
    fn set(&self, value: Result<T, JoinError>) {
        // SAFETY: only the fiber writes, before COMPLETE is published; nobody reads until then.
        unsafe { *self.result.get() = Some(value) };
    }

    /// The joiner, after completion: the result, if the fiber left one.
    ///
    /// # Safety
    /// `p` points to a live `Packet<T, F>` whose fiber is COMPLETE, observed with Acquire,
    /// and the caller is its only handle.
    unsafe fn take_erased(p: *const ()) -> Option<Result<T, JoinError>> {
        // SAFETY: the writer is done (COMPLETE observed) and the sole handle is the only
        // reader; the packet is alive (the caller's promise).
        unsafe { (*(*p.cast::<Self>()).result.get()).take() }
    }

    fn take_start(&self) -> Option<F> {
        // SAFETY: only the owner of the fiber's first run (or its shutdown claimer) calls
        // this, once, and nothing else touches `start` (see the Sync impl).
        unsafe { (*self.start.get()).take() }
    }
}

impl<T: Send, F: FnOnce() -> T + Send> Start for Packet<T, F> {
    fn run(&self) {
        let Some(f) = self.take_start() else { return };
        let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => Ok(v),
            // Its own cancellation (`JoinHandle::cancel`, fiber/cancel.rs): the unwind ends
            // here; dropping the payload ends the CANCELLING state (its parks park again).
            Err(payload) if super::cancel::is_payload(&*payload) => {
                drop(payload);
                Err(JoinError::Cancelled)
            }
            // Shutdown's (`switch::Cancelled`): it ends at the root (`fiber_root`).
            Err(payload) if switch::is_shutdown_cancellation(&*payload) => {
                self.set(Err(JoinError::Cancelled));
                // Let the cancellation finish unwinding: it ends at the root (`fiber_root`).
                panic::resume_unwind(payload)
            }
            Err(payload) => Err(JoinError::Panicked(payload)),
        };
        self.set(result);
    }

    fn discard(&self) {
        // Never on a fiber's stack (shutdown, the pool, a first run without a stack), so no
        // cancellation can come out; carried on all the same.
        if let Err(cancelled) = drop_or_abort(self.take_start(), "a fiber's closure (it never ran)")
        {
            panic::resume_unwind(cancelled);
        }
    }
}

impl<T, F> Drop for Packet<T, F> {
    fn drop(&mut self) {
        let unhandled_panic = matches!(self.result.get_mut(), Some(Err(JoinError::Panicked(_))));
        // Both before the scope hears of it: a scoped fiber's closure and result may borrow
        // what `fibra::scope` protects, which is only until `decrement_running`.
        let start = drop_some_or_abort(
            self.start.get_mut().take(),
            "a fiber's closure (it never ran)",
        );
        let result = drop_some_or_abort(self.result.get_mut().take(), "a fiber's result");
        if let Some(scope) = &self.scope {
            scope.decrement_running(unhandled_panic);
        }
        // A cancellation that cut a destructor short goes on from here: in user code (a
        // `JoinHandle` dropped in the fiber) it unwinds that code too; at the fiber's root it
        // ends there.
        if let Err(cancelled) = start.and(result) {
            panic::resume_unwind(cancelled);
        }
    }
}

/// `drop_or_abort` for what is there: a joined packet's result and a started fiber's closure
/// are already gone, and the unwind guard around dropping `None` cost ~35 instructions of a
/// ~1,150-instruction spawn-and-join (callgrind, lab `churn`).
#[inline]
fn drop_some_or_abort<V>(value: Option<V>, what: &str) -> Result<(), Box<dyn Any + Send>> {
    match value {
        None => Ok(()),
        Some(v) => drop_or_abort(v, what),
    }
}

/// Drops a value the runtime drops on the user's behalf (a fiber's closure, result or panic
/// payload, a fiber-local); aborts if that panics, as std does for a thread's result ("thread
/// result panicked on drop"). Unwinding on would leave the place that dropped it (a fiber's
/// root frame, a worker's shutdown pass, a `JoinHandle`'s drop inside a destructor) half
/// done: past a stack switch it is undefined, and anywhere a worker runs it strands that
/// worker's fibers.
///
/// One unwind is expected: a cancellation (`switch::Cancelled`) of a fiber parked inside the
/// destructor (a detached result that sends on a channel, say). It cuts that destructor
/// short, as it does every frame it unwinds, and comes back for the caller to carry on once
/// its own clean-up is done.
#[must_use = "a cancellation must be carried on"]
pub(crate) fn drop_or_abort<V>(value: V, what: &str) -> Result<(), Box<dyn Any + Send>> {
    match panic::catch_unwind(AssertUnwindSafe(move || drop(value))) {
        Ok(()) => Ok(()),
        Err(payload) if switch::is_cancellation(&*payload) => Err(payload),
        Err(_) => crate::macros::abort_with(format_args!(
            "{what} panicked on drop; aborting (std does the same for a thread's result)"
        )),
    }
}

/// Waits until `fiber` completes. Returns false if the caller is itself being unwound by
/// shutdown and gave up waiting.
pub(crate) fn wait_complete(fiber: &Header) -> bool {
    if fiber.state.is_complete() {
        crate::coop::consume(); // finished without parking: counts against the budget
        return true;
    }
    let joining_self = crate::sched::context::with_current_fiber(|me| {
        me.is_some_and(|me| std::ptr::eq(me, fiber))
    });
    assert!(
        !joining_self,
        "a fiber cannot join itself (it would wait forever)"
    );
    *fiber.join_waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(park::current_waker());
    fiber.join_waiting.store(true, Relaxed);
    fence(SeqCst); // pairs with the fence in `Header::wake_joiner`
    while !fiber.state.is_complete() {
        if park::cancelling() {
            return false;
        }
        park::park(if fiber.is_blocking_task() {
            ParkReason::BlockingJoin
        } else {
            ParkReason::Join
        });
    }
    true
}

/// An owned permission to join a fiber: returned by [`spawn`](crate::spawn).
/// Dropping it detaches the fiber (it keeps running; its result is dropped).
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded(1);
/// drop(fibra::spawn(move || tx.send("still ran").unwrap())); // detached, not cancelled
/// assert_eq!(rx.recv().unwrap(), "still ran");
/// # });
/// ```
pub struct JoinHandle<T> {
    /// Taken in `drop` (to recycle the header's allocation).
    fiber: ManuallyDrop<Fiber>,
    /// `Packet::<T, F>::take_erased` for the fiber's `F`.
    take: unsafe fn(*const ()) -> Option<Result<T, JoinError>>,
}

impl<T> JoinHandle<T> {
    /// The handle side of `fiber`'s packet, a `Packet<T, F>` put there by `install`.
    ///
    /// # Safety
    /// The packet's handle side is not taken yet (one handle per packet) and its type is
    /// `Packet<T, F>`.
    pub(crate) unsafe fn new<F: FnOnce() -> T + Send>(fiber: Fiber) -> JoinHandle<T>
    where
        T: Send,
    {
        JoinHandle {
            fiber: ManuallyDrop::new(fiber),
            take: Packet::<T, F>::take_erased,
        }
    }

    /// Waits for the fiber to finish and returns its value. From a fiber this parks the fiber;
    /// from a plain thread it blocks the thread.
    ///
    /// # Errors
    /// [`JoinError::Panicked`] with the payload if the fiber panicked;
    /// [`JoinError::Cancelled`] if it was [cancelled](Self::cancel) or the runtime shut down
    /// before it finished.
    ///
    /// # Panics
    /// If a fiber tries to join itself.
    ///
    /// # Memory ordering
    /// Everything the fiber did happens-before `join` returns.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| 6 * 7);
    /// assert_eq!(h.join().unwrap(), 42);
    /// let bad = fibra::spawn(|| panic!("boom"));
    /// assert!(matches!(bad.join(), Err(fibra::JoinError::Panicked(_))));
    /// # });
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        if !wait_complete(&self.fiber.0) {
            return Err(JoinError::Cancelled);
        }
        let slot = &self.fiber.0.packet;
        // SAFETY: `take` matches the packet's type (`new`), the handle side keeps it alive,
        // COMPLETE was observed with Acquire and `join` consumes the only handle.
        match unsafe { (self.take)(slot.data()) } {
            Some(result) => result,
            // SAFETY: written before COMPLETE, which `wait_complete` observed with Acquire;
            // only this (sole) handle reads it.
            None => match unsafe { (*self.fiber.0.start_error.get()).take() } {
                Some(e) => Err(JoinError::NoStack(*e)),
                None => Err(JoinError::Cancelled),
            },
        }
    }

    /// The result of a fiber already seen COMPLETE (`wait_complete`), if it left one, else
    /// why it never ran (`NoStack`), if it did not.
    pub(crate) fn take_completed(self) -> Option<Result<T, JoinError>> {
        assert!(
            self.fiber.0.state.is_complete(),
            "take_completed before completion"
        );
        // SAFETY: as in `join`: COMPLETE observed with Acquire (just now), sole handle.
        let result = unsafe { (self.take)(self.fiber.0.packet.data()) };
        if result.is_some() {
            return result;
        }
        // SAFETY: as in `join`: written before COMPLETE, which was observed with Acquire;
        // only this (sole) handle reads it.
        let start_error = unsafe { (*self.fiber.0.start_error.get()).take() };
        start_error.map(|e| Err(JoinError::NoStack(*e)))
    }

    /// True once the fiber has finished; `join` then returns without waiting.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| ());
    /// while !h.is_finished() { fibra::yield_now(); }
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.fiber.is_finished()
    }

    /// Asks the fiber to stop: it unwinds at its next park (its destructors run, as when
    /// the runtime shuts down), and [`join`](Self::join) returns
    /// [`JoinError::Cancelled`]. Any thread may call it, any number of times.
    ///
    /// - A fiber parked now (in `recv`, `sleep`, `lock`, `join`, I/O, ...) is woken and
    ///   unwinds from that wait. One that runs unwinds at its next park; one that never
    ///   parks again is not interrupted (there is no preemption) and finishes normally.
    /// - A fiber that has not started yet never runs: its closure is dropped.
    /// - A finished fiber is unaffected; `join` returns its result. A cancel racing with the
    ///   fiber's end gives either its result or `Cancelled`.
    /// - While it unwinds, the fiber's waits return at once, as during shutdown: a `join`
    ///   in a destructor reports `Cancelled`, a channel operation a disconnection.
    /// - [`run_blocking`](crate::run_blocking) and [`scope`](crate::scope) are not cut short: the
    ///   fiber first waits for the closure (which may borrow its frame) or for the scope's
    ///   fibers, which the scope cancels in turn.
    /// - The unwind is a panic payload of fibra's (raised with `resume_unwind`, so no panic
    ///   message is printed). Code that catches it with `catch_unwind` should resume it, as
    ///   with any panic it does not own; dropping it ends the cancellation, and the fiber
    ///   goes on as if it had not been cancelled.
    ///
    /// A `spawn_blocking` task is not a fiber and has no parks: cancelling it does nothing.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded::<u32>(0);
    /// let waiter = fibra::spawn(move || rx.recv()); // parks: nobody sends
    /// fibra::yield_now();
    /// waiter.cancel();
    /// assert!(matches!(waiter.join(), Err(fibra::JoinError::Cancelled)));
    /// assert!(tx.send(1).is_err()); // the receiver was dropped by the unwinding
    /// # });
    /// ```
    pub fn cancel(&self) {
        if !self.fiber.0.is_blocking_task() {
            super::cancel::request(&self.fiber.0);
        }
    }

    /// The fiber this handle joins.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::Builder::new().name("conn-7").spawn(|| ()).unwrap();
    /// assert_eq!(h.fiber().name(), Some("conn-7"));
    /// # });
    /// ```
    pub fn fiber(&self) -> &Fiber {
        &self.fiber
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        // SAFETY: this is the handle side, released once (here); the header outlives it
        // (our `Fiber` is dropped after this).
        unsafe { self.fiber.0.packet.release() };
        // SAFETY: taken once, here, and not used again.
        let Fiber(header) = unsafe { ManuallyDrop::take(&mut self.fiber) };
        // The joiner usually holds the last reference: keep the allocation for a next spawn.
        context::with_worker(|w| match w {
            Some(w) => w.spare_headers.recycle(header),
            None => drop(header),
        });
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("fiber", &self.fiber)
            .finish()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::SideCount;
    use crate::loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// The packet's two sides release on two threads: exactly one is last, and it sees what
    /// the other wrote to the packet (the result) before releasing.
    #[test]
    fn last_side_drops_once_and_sees_the_other() {
        loom::model(|| {
            let sides = Arc::new((SideCount::new(2), UnsafeCell::new(0u32)));
            let other = {
                let sides = sides.clone();
                thread::spawn(move || {
                    // SAFETY: before this side's release, only this side touches the value.
                    sides.1.with_mut(|v| unsafe { *v = 7 });
                    if sides.0.release() {
                        // SAFETY: the last side: the other one released, nobody else touches it.
                        assert_eq!(sides.1.with(|v| unsafe { *v }), 7);
                        1
                    } else {
                        0
                    }
                })
            };
            let here = if sides.0.release() {
                // SAFETY: as above.
                assert_eq!(sides.1.with(|v| unsafe { *v }), 7);
                1
            } else {
                0
            };
            assert_eq!(here + other.join().unwrap(), 1, "exactly one last side");
        });
    }
}
