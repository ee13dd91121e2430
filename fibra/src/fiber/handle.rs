//! `Fiber`, the public handle to a fiber, and the calls about the current one.

use std::fmt;
use std::num::NonZeroU64;
use std::panic::Location;
use std::task::Waker;

use super::header::FiberRef;
use super::switch::{self, Suspend};
use crate::park::{self, ParkReason};
use crate::sched::context;

/// A fiber's unique id within the process. Never reused.
///
/// ```
/// # fibra::run(|| {
/// use std::collections::HashSet;
/// let ids: HashSet<fibra::FiberId> = (0..4).map(|_| fibra::spawn(|| ()).fiber().id()).collect();
/// assert_eq!(ids.len(), 4); // even once those fibers are gone, their ids stay theirs
/// assert!(!ids.contains(&fibra::current().id()));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FiberId(NonZeroU64);

impl FiberId {
    pub(crate) fn new(id: u64) -> FiberId {
        FiberId(NonZeroU64::new(id).expect("fiber ids start at 1"))
    }

    /// The id as a number (as printed in reports).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let id = fibra::current().id();
    /// assert!(id.as_u64() >= 1);
    /// assert_eq!(id.as_u64().to_string(), id.to_string());
    /// # });
    /// ```
    pub fn as_u64(&self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for FiberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A handle to a fiber, like `std::thread::Thread`: cheap to clone, `Send + Sync`.
///
/// ```
/// # fibra::run(|| {
/// let h = fibra::Builder::new().name("worker-1").spawn(|| fibra::current()).unwrap();
/// let inner = h.join().unwrap();
/// assert_eq!(inner.name(), Some("worker-1"));
/// # });
/// ```
#[derive(Clone)]
pub struct Fiber(pub(crate) FiberRef);

impl Fiber {
    /// The fiber's id.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| fibra::current().id()); // as the fiber sees itself
    /// let id = h.fiber().id(); // as its handle sees it
    /// assert_eq!(h.join().unwrap(), id);
    /// assert_ne!(id, fibra::current().id());
    /// # });
    /// ```
    pub fn id(&self) -> FiberId {
        FiberId::new(self.0.identity.id)
    }

    /// The name given with [`Builder::name`](crate::Builder::name), if any.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let named = fibra::Builder::new().name("conn-7").spawn(|| ()).unwrap();
    /// assert_eq!(named.fiber().name(), Some("conn-7"));
    /// assert_eq!(fibra::spawn(|| ()).fiber().name(), None);
    /// assert_eq!(fibra::current().name(), Some("main")); // the root fiber's name
    /// # });
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.0.identity.name.as_deref()
    }

    /// Where the fiber was spawned.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (h, line) = (fibra::spawn(|| ()), line!());
    /// let at = h.fiber().spawn_location();
    /// assert_eq!((at.file(), at.line()), (file!(), line));
    /// # });
    /// ```
    pub fn spawn_location(&self) -> &'static Location<'static> {
        self.0.identity.location
    }

    /// Makes the fiber runnable if it is parked in [`park`]; otherwise its next `park` returns
    /// at once (a token, as with `std::thread::Thread::unpark`). Any thread may call it.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let flag = Arc::new(AtomicBool::new(false));
    /// let f2 = flag.clone();
    /// let parked = fibra::spawn(move || { while !f2.load(Ordering::Acquire) { fibra::park(); } });
    /// flag.store(true, Ordering::Release);
    /// parked.fiber().unpark();
    /// parked.join().unwrap();
    /// # });
    /// ```
    pub fn unpark(&self) {
        park::unpark(&self.0);
    }

    /// A [`Waker`] that unparks this fiber: hand it to any future or callback.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let done = std::sync::Arc::new(AtomicBool::new(false));
    /// let (d2, waker) = (done.clone(), fibra::current().waker());
    /// fibra::spawn(move || { d2.store(true, Ordering::Release); waker.wake(); });
    /// while !done.load(Ordering::Acquire) { fibra::park(); } // the wake ends our park
    /// # });
    /// ```
    pub fn waker(&self) -> Waker {
        park::fiber_waker(self.0.clone())
    }

    /// True once the fiber has finished (returned, panicked, or was unwound at shutdown).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| ());
    /// let fiber = h.fiber().clone();
    /// h.join().unwrap();
    /// assert!(fiber.is_finished());
    /// assert!(!fibra::current().is_finished());
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.0.state.is_complete()
    }

    /// Why the fiber is parked now ([`ParkReason::None`] when it is not).
    ///
    /// ```
    /// # fibra::run(|| {
    /// use fibra::ParkReason;
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// let h = fibra::spawn(move || rx.recv().unwrap());
    /// while h.fiber().park_reason() != ParkReason::ChanRecv { fibra::yield_now(); }
    /// assert_eq!(fibra::current().park_reason(), ParkReason::None); // running
    /// tx.send(5).unwrap();
    /// assert_eq!(h.join().unwrap(), 5);
    /// # });
    /// ```
    pub fn park_reason(&self) -> ParkReason {
        self.0.park_reason()
    }
}

impl fmt::Debug for Fiber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fiber")
            .field("id", &self.0.identity.id)
            .field("name", &self.name())
            .field("state", &self.0.state.describe())
            .field("spawned_at", &format_args!("{}", self.spawn_location()))
            .finish()
    }
}

/// The fiber running this code.
///
/// # Panics
/// Outside a fiber (on a plain OS thread); use [`try_current`] there.
///
/// ```
/// # fibra::run(|| {
/// let me = fibra::current();
/// println!("fiber {} ({:?})", me.id(), me.name());
/// # });
/// ```
pub fn current() -> Fiber {
    try_current().expect("fibra::current() called outside a fiber: run it inside fibra::run(|| ...) or a spawned fiber")
}

/// The fiber running this code, or `None` on a plain OS thread.
///
/// ```
/// assert!(fibra::try_current().is_none());
/// fibra::run(|| assert!(fibra::try_current().is_some()));
/// ```
pub fn try_current() -> Option<Fiber> {
    context::with_current_fiber(|f| f.map(|h| Fiber(h.to_ref())))
}

/// Parks the calling fiber until [`Fiber::unpark`] (or its waker) is called. May return
/// spuriously, so call it in a loop that checks a condition. On a plain OS thread this is
/// `std::thread::park`.
///
/// # Memory ordering
/// Everything the unparking side wrote before `unpark` is visible after `park` returns
/// because of that unpark.
///
/// # Migration
/// A started fiber resumes on the same OS thread it parked on, unless the runtime was built
/// with the unsafe [`migrate_started_fibers`](crate::RuntimeBuilder::migrate_started_fibers).
///
/// ```
/// # fibra::run(|| {
/// let me = fibra::current();
/// me.unpark(); // a token: the next park returns at once
/// fibra::park();
/// # });
/// ```
///
/// # Cancellation
/// A fiber [cancelled](crate::JoinHandle::cancel) while parked here unwinds from here.
pub fn park() {
    let me = park::Caller::current();
    me.park(ParkReason::User);
    // Nothing is lost by unwinding now (fibra's own waits re-check what they wait for first
    // and unwind at their next park).
    me.check_cancel();
}

/// Lets the other runnable fibers of this worker run, then continues. Fair: the fiber goes
/// to the back of its worker's queue. On a plain OS thread this is `std::thread::yield_now`.
///
/// ```
/// # fibra::run(|| {
/// for _ in 0..3 { fibra::yield_now(); }
/// # });
/// ```
pub fn yield_now() {
    context::with_current_fiber(|f| match f {
        Some(h) if !h.state.is_cancelling() => switch::suspend(h, Suspend::Yield),
        Some(_) => {}
        None => std::thread::yield_now(),
    })
}
