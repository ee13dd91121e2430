//! The fiber control block.
//!
//! # Field access
//! | field | written by | read by |
//! |---|---|---|
//! | `identity` | spawn, before publication | anyone; the overflow handler through the stack slot |
//! | `state` | atomics, see `state.rs` | anyone |
//! | `start_pending`, `coroutine`, `start_error` | the thread that owns the run: the worker that popped it (QUEUED→RUNNING), or shutdown's claimer (→CANCELLING) | same |
//! | `yielder`, `locals`, `locals_closed`, `reason` | the fiber itself, on its own stack (`locals` emptied and closed by `fiber_root`) | the fiber itself; `reason` by debugging |
//! | `home` | the worker of the first run | unpark (Acquire) |
//! | `join_waiter` | joiners and completion, under its mutex | same |
//! | `watch` | see `watch.rs` | debugging |
//! | `join_waiting` | the joiner, after storing its waker | completion (fence pairing, `wake_joiner`) |
//! | `in_excursion` | the fiber (set, before submitting a `fibra::run_blocking` job); the pool thread (cleared, Release, when the job is done) | shutdown, after its claim (Acquire) |
//! | `packet` | spawn, before publication (`join::install`); then its code by the fiber side, its result by the fiber before COMPLETE; dropped by the last side (join.rs) | the fiber side; the joiner after COMPLETE |

//!
//! # Reference counts
//! A `FiberRef` is an `Arc<Header>`. Whoever will run the fiber next holds one: a run queue, the
//! worker running it, the timer heap. A PARKED fiber's count is owned by the state itself: the
//! worker that parks it forgets its reference instead of dropping it (`park_ref`), and the
//! `unpark` that moves it PARKED → SCHEDULED adopts that count for the queue (`adopt_parked_ref`),
//! so a hand-off costs no count traffic. Shutdown's `Claim::Parked` adopts it likewise.
//!
//! The packet (code, then result) lives in the header's allocation but has counts of its own:
//! its fiber side and its handle side (join.rs). A `Fiber` handle keeps the header, never the
//! packet's contents.
//!
//! Where the last reference usually goes (a `JoinHandle` dropped on a worker, a worker
//! completing a fiber nobody joins), the allocation is kept for the worker's next spawn
//! (`SpareHeaders`); anywhere else the `Arc` frees it.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU8, Ordering::*};

use crate::loom::sync::atomic::AtomicPtr;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use super::identity::FiberIdentity;
use super::join::{PacketSlot, StartRef};
use super::local::LocalMap;
use super::state::State;
use super::switch::FiberCoroutine;
use super::watch::Watch;
use crate::park::ParkReason;
use crate::sched::Shared;

/// `home` before the first run: the fiber may be stolen by any worker.
pub(crate) const NO_HOME: u32 = u32::MAX;
/// `registry_key` before the first park.
pub(crate) const NOT_REGISTERED: u32 = u32::MAX;

pub(crate) type FiberRef = Arc<Header>;

pub(crate) struct Header {
    pub(crate) identity: FiberIdentity,
    pub(crate) state: State,
    /// The runtime session this fiber belongs to (keeps its queues alive for late wakers).
    pub(crate) shared: Arc<Shared>,
    pub(crate) home: AtomicU32,
    /// The header still holds the fiber side of its packet (until the first run takes it,
    /// `take_start`; it then lives on the coroutine's stack). A flag, not the `StartRef`
    /// itself, which would only point back at this header: 16 bytes less a fiber.
    start_pending: Cell<bool>,
    /// Created at the first run, on the worker that runs it, so stack pages are first touched
    /// (and page-faulted) in parallel by the workers and a stack is taken from the runner's
    /// warm cache, not the spawner's.
    pub(crate) coroutine: UnsafeCell<Option<FiberCoroutine>>,
    /// Why the fiber never ran, when its first run found no stack.
    pub(crate) start_error: UnsafeCell<Option<Box<crate::SpawnError>>>,
    /// Set on the fiber's own stack when it first runs (see `switch.rs`).
    pub(crate) yielder: Cell<*const ()>,
    pub(crate) locals: UnsafeCell<LocalMap>,
    /// Set when `locals` is destroyed for good (`local::destroy`). Here, not in `LocalMap`,
    /// so it takes padding beside `reason` rather than 8 more bytes a fiber.
    pub(crate) locals_closed: Cell<bool>,
    pub(crate) reason: AtomicU8,
    /// Bumped when a timed wait is armed and when it ends; a timer entry armed with an older
    /// value is stale and fires nothing (see `time/timers.rs`).
    pub(crate) timer_gen: AtomicU32,
    /// Scoped fibers spawned by this one and not yet finished; shutdown unwinds a fiber only
    /// once this is zero, so borrowed data outlives every fiber borrowing it.
    pub(crate) scoped_children: AtomicU32,
    /// Slot in the home worker's registry (for shutdown and dumps).
    pub(crate) registry_key: AtomicU32,
    /// A `fibra::run_blocking` closure of this fiber is still running on the pool (or queued for
    /// it). Shutdown unwinds the fiber only once this is false: unwinding it earlier would
    /// block the worker in the excursion's guard until the closure ends, and the closure may
    /// be waiting for a fiber pinned to that very worker (blocking/excursion.rs).
    pub(crate) in_excursion: AtomicBool,
    pub(crate) join_waiter: Mutex<Option<Waker>>,
    /// Set once a joiner stored its waker, so completion skips the lock when nobody waits.
    pub(crate) join_waiting: AtomicBool,
    /// Link in its home worker's inbox (sched/inbox.rs) while queued there.
    pub(crate) inbox_next: AtomicPtr<Header>,
    /// What `fibra::debug` reads: parked-since, mutex waited for, backtrace capture.
    pub(crate) watch: Watch,
    /// The fiber's code, then its result (join.rs). Declared last: dropping the fields above
    /// (`start`, `coroutine`) may release its fiber side.
    pub(crate) packet: PacketSlot,
}

// SAFETY: the `UnsafeCell`/`Cell` fields are only touched by the single thread that owns the
// fiber's run at that moment (table above; ownership passes through the state word's
// Acquire/Release transitions), so sharing `&Header` between threads is sound.
unsafe impl Sync for Header {}
// SAFETY: as above; the coroutine is `!Send` in corosensei because its stack may hold `!Send`
// values, and fibra only resumes it on its home thread (or, with the unsafe migration opt-in,
// on the thread the user promised is fine). `locals` holds `!Send` values too: they are
// created on the fiber's stack and all dropped there by `fiber_root` before the fiber
// completes (`local::destroy`, which closes the map), so a header that reaches another thread
// holds none (`LocalMap`'s drop checks).
unsafe impl Send for Header {}

impl Header {
    /// A header to fill in (its packet: `join::install`) before it goes into its `Arc`.
    /// Every header lives in an `Arc` (`to_ref` relies on it).
    #[inline]
    pub(crate) fn new(identity: FiberIdentity, shared: Arc<Shared>) -> Header {
        Header {
            identity,
            state: State::new(),
            shared,
            home: AtomicU32::new(NO_HOME),
            start_pending: Cell::new(false),
            coroutine: UnsafeCell::new(None),
            start_error: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            locals: UnsafeCell::new(LocalMap::default()),
            locals_closed: Cell::new(false),
            reason: AtomicU8::new(ParkReason::None as u8),
            timer_gen: AtomicU32::new(0),
            scoped_children: AtomicU32::new(0),
            registry_key: AtomicU32::new(NOT_REGISTERED),
            in_excursion: AtomicBool::new(false),
            join_waiter: Mutex::new(None),
            join_waiting: AtomicBool::new(false),
            inbox_next: AtomicPtr::new(std::ptr::null_mut()),
            watch: Watch::new(),
            packet: PacketSlot::empty(),
        }
    }

    /// Hands the fiber side of the packet (installed by `join::install`) to the header, until
    /// `take_start`. Before the header is shared.
    pub(crate) fn set_start_pending(&mut self) {
        self.start_pending.set(true);
    }

    /// The fiber side of the packet, if the header still holds it (the fiber never ran).
    ///
    /// # Safety
    /// The caller owns the fiber's run (field table: `start_pending`), and drops the returned
    /// `StartRef` before its last reference to this header (or moves it into the coroutine
    /// this header owns).
    pub(crate) unsafe fn take_start(&self) -> Option<StartRef> {
        if !self.start_pending.replace(false) {
            return None;
        }
        // SAFETY: `set_start_pending` was called after the packet was installed with its
        // fiber side, and the flag, now cleared, made this the one `StartRef`; it lives no
        // longer than the header (the caller's promise).
        Some(unsafe { StartRef::new(self) })
    }

    /// A new counted reference to this header.
    pub(crate) fn to_ref(&self) -> FiberRef {
        let ptr: *const Header = self;
        // SAFETY: headers are only ever used inside an `Arc` (`new`), and `&self` proves
        // that Arc still holds a count, so adding one and adopting it is sound.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// The worker gives its reference to the PARKED state (after `AfterPark::Parked`).
    pub(crate) fn park_ref(fiber: FiberRef) {
        std::mem::forget(fiber);
    }

    /// Takes the PARKED state's count, after `AfterUnpark::Schedule` or `Claim::Parked`.
    ///
    /// # Safety
    /// The caller's transition out of PARKED succeeded just now, so the count parked with
    /// `park_ref` is still there and nobody else adopts it.
    pub(crate) unsafe fn adopt_parked_ref(&self) -> FiberRef {
        // SAFETY: `park_ref` forgot exactly one `Arc` to this header, which the caller's
        // successful transition entitles it to adopt.
        unsafe { Arc::from_raw(self as *const Header) }
    }

    /// The worker index this fiber is pinned to, or `None` before its first run.
    pub(crate) fn home(&self) -> Option<usize> {
        // Acquire pairs with the Release store in `Worker::run` (first run).
        match self.home.load(Acquire) {
            NO_HOME => None,
            h => Some(h as usize),
        }
    }

    /// A `spawn_blocking` task's header (no stack; blocking/mod.rs).
    pub(crate) fn is_blocking_task(&self) -> bool {
        self.identity.stack_size == crate::blocking::TASK_MARK
    }

    pub(crate) fn park_reason(&self) -> ParkReason {
        ParkReason::from_u8(self.reason.load(Relaxed))
    }

    /// Completion: wakes a joiner. Any thread, once, after `transition_to_complete`.
    pub(crate) fn wake_joiner(&self) {
        // The SeqCst fences pair (Dekker): either the joiner's re-check after storing its
        // waker sees COMPLETE, or this load sees `join_waiting`.
        fence(SeqCst);
        if !self.join_waiting.load(Relaxed) {
            return;
        }
        let waker = self
            .join_waiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Header {
    fn drop(&mut self) {
        // A fiber that never ran (and was never discarded) still holds its packet's fiber
        // side here; release it through `&mut self` before the fields go.
        if self.start_pending.replace(false) {
            // SAFETY: the flag was set, so the packet's fiber side is still here, and
            // clearing it made this the one `StartRef`, released at once through `&mut self`.
            let start = unsafe { StartRef::new(self) };
            start.release_in(self);
        }
        // A started, unfinished coroutine must be unwound on its home thread (shutdown does
        // that); dropping it here could run its destructors on any thread.
        if let Some(co) = self.coroutine.get_mut() {
            if co.started() && !co.done() {
                fatal!(
                    "fiber::header: fiber {} dropped while suspended",
                    self.identity.id
                );
            }
        }
    }
}

impl crate::sched::Linked for Header {
    fn inbox_next(&self) -> &AtomicPtr<Header> {
        &self.inbox_next
    }
}

/// The allocations of finished fibers' headers, kept by a worker for its next spawns (Go keeps
/// dead goroutines' `g`s likewise). With thousands of fibers outstanding, glibc's per-thread
/// cache overflows and every header malloc/free took its slow path (~300 instructions a
/// fiber); a spare costs a few dozen. Only the memory is kept: a header's contents (its
/// session, name, waker) are dropped when it is recycled, as they would be by the `Arc`.
pub(crate) struct SpareHeaders(RefCell<Vec<Arc<MaybeUninit<Header>>>>);

impl SpareHeaders {
    /// At most this many spares per worker (~340 bytes each); idle workers drop them all.
    const CAP: usize = if cfg!(loom) { 4 } else { 16 * 1024 };

    pub(crate) fn new() -> SpareHeaders {
        SpareHeaders(RefCell::new(Vec::new()))
    }

    /// A header built in place (`Header::new`, then `fill`, e.g. `join::install`) in a spare
    /// allocation if there is one, else in a new one. In place, because building it on the
    /// stack and moving it in cost a 336-byte `memcpy` a spawn (~65 of ~1,300 instructions a
    /// spawn-and-join, callgrind).
    #[inline]
    pub(crate) fn make(
        &self,
        identity: FiberIdentity,
        shared: Arc<Shared>,
        fill: impl FnOnce(&mut Header),
    ) -> FiberRef {
        let spare = self.0.borrow_mut().pop();
        let mut spare = spare.unwrap_or_else(Arc::new_uninit);
        let Some(slot) = Arc::get_mut(&mut spare) else {
            fatal!("fiber::header: a spare header is shared");
        };
        fill(slot.write(Header::new(identity, shared)));
        let raw = Arc::into_raw(spare).cast::<Header>();
        // SAFETY: the allocation came from an `Arc<MaybeUninit<Header>>`, whose value has
        // `Header`'s size and alignment (what `Arc::from_raw` asks of a cast), and holds an
        // initialised header (written just above). If `fill` panics, `spare` (a
        // `MaybeUninit`) frees the memory and leaks the header's fields, which is safe.
        unsafe { Arc::from_raw(raw) }
    }

    /// Drops `fiber`; if it was the last reference, keeps the allocation for `make`.
    pub(crate) fn recycle(&self, fiber: FiberRef) {
        let raw = Arc::into_raw(fiber).cast::<MaybeUninit<Header>>();
        // SAFETY: same size and alignment (see `make`); the value stays initialised until the
        // `assume_init_drop` below, and is otherwise given back as a `FiberRef`.
        let mut spare = unsafe { Arc::from_raw(raw) };
        let Some(slot) = Arc::get_mut(&mut spare) else {
            // Others hold it: just give back our count, as a header reference.
            let raw = Arc::into_raw(spare).cast::<Header>();
            // SAFETY: as in `make`; the header is initialised (we did not drop it).
            drop(unsafe { Arc::from_raw(raw) });
            return;
        };
        // SAFETY: `get_mut` proved ours is the only reference (headers have no `Weak`s, and
        // every raw pointer that can make a new reference owns a count), so nobody can reach
        // the header again; it is initialised and dropped once, here. If its drop panics,
        // `spare` (a `MaybeUninit`) just frees the memory.
        unsafe { slot.assume_init_drop() };
        // Not borrowed while dropping: a header's drop may run user code (a never-run
        // closure) that drops another `JoinHandle` and comes back here.
        if let Ok(mut spares) = self.0.try_borrow_mut() {
            if spares.len() < Self::CAP {
                spares.push(spare);
            }
        }
    }

    /// Frees every spare (an idle worker gives the memory back to the allocator).
    pub(crate) fn clear(&self) {
        let spares = std::mem::take(&mut *self.0.borrow_mut());
        drop(spares);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every fiber carries on the heap, printed for `examples/sleeper_memory.rs`'s
    /// accounting; the bounds catch a field that grows the header past its malloc size class.
    #[test]
    fn header_sizes() {
        use std::mem::size_of;
        let rows = [
            ("Header", size_of::<Header>()),
            ("ArcInner<Header>", size_of::<Header>() + 16),
            ("FiberIdentity", size_of::<FiberIdentity>()),
            ("State", size_of::<State>()),
            (
                "Option<FiberCoroutine>",
                size_of::<Option<FiberCoroutine>>(),
            ),
            ("LocalMap", size_of::<LocalMap>()),
            ("Mutex<Option<Waker>>", size_of::<Mutex<Option<Waker>>>()),
            ("Watch", size_of::<Watch>()),
            ("PacketSlot", size_of::<PacketSlot>()),
        ];
        for (name, size) in rows {
            println!("{name}: {size} B");
        }
        // 320 bytes with the `Arc`'s counts (a 336-byte malloc chunk): keep it there.
        assert!(size_of::<Header>() + 16 <= 320);
    }
}
