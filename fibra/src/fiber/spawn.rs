//! Creating fibers: `spawn`, `Builder`, and the one internal constructor they share.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;

use super::handle::Fiber;
use super::header::Header;
use super::identity::FiberIdentity;
use super::join::{self, JoinHandle, Packet};
use crate::error::SpawnError;
use crate::sched::{context, worker::Worker, Shared};
use crate::stack::checked_stack_size;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A new fiber id, unique in the process (blocking-pool tasks draw from the same counter).
pub(crate) fn next_fiber_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// What a spawn asks for, besides the closure.
pub(crate) struct SpawnSpec {
    pub(crate) name: Option<String>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) location: &'static Location<'static>,
    /// Start on the least loaded worker (`Builder::spread`).
    pub(crate) spread: bool,
}

/// Creates a fiber running `f` and queues it (its stack is taken at its first run): on `worker`'s ring if given (stealable until it
/// first runs), else on the global queue.
///
/// # Safety
/// Everything `f` borrows, and `T`, must stay valid until the fiber has finished or been
/// dropped (for `'static` closures this is trivially true; `fibra::scope` waits for its fibers).
pub(crate) unsafe fn spawn_raw<F, T>(
    shared: &Arc<Shared>,
    worker: Option<&Worker>,
    spec: SpawnSpec,
    scope: Option<Arc<crate::scope::ScopeData>>,
    f: F,
) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    // The runtime's size was checked and rounded when it was built.
    let stack_size = match spec.stack_size {
        None => shared.config.stack_size,
        Some(size) => checked_stack_size(size)?,
    };
    if shared.shutdown.load(Acquire) {
        return Err(SpawnError::ShuttingDown);
    }
    // Stacks are taken at the first run; on kernels without guard markers, refuse here,
    // where the caller can still get the error, once mprotect guards near the map budget.
    shared.stacks.check_guard_budget()?;
    let identity = FiberIdentity {
        id: NEXT_ID.fetch_add(1, Relaxed),
        name: spec.name.map(String::into_boxed_str),
        location: spec.location,
        stack_size,
    };
    // The packet's type keeps its borrow lifetimes, but nothing in the header does: erasing
    // them is our caller's promise (what `f` and `T` borrow outlives the fiber and packet).
    // The header holds the packet's fiber side until the first run (`Header::take_start`).
    let fill = |header: &mut Header| {
        join::install(header, Packet::new(Some(f), scope));
        header.set_start_pending();
    };
    let header = match worker {
        Some(w) => w.spare_headers.make(identity, shared.clone(), fill),
        None => {
            let mut header = Header::new(identity, shared.clone());
            fill(&mut header);
            Arc::new(header)
        }
    };
    shared.live.fetch_add(1, Relaxed);
    match worker {
        Some(w) => w.schedule_new(header.clone(), spec.spread),
        None => shared.inject(header.clone()),
    }
    // SAFETY: the packet is a `Packet<T, F>` with its handle side not taken yet.
    Ok(unsafe { JoinHandle::new::<F>(Fiber(header)) })
}

/// Spawns a fiber with a name or a stack size of its own.
///
/// ```
/// # fibra::run(|| {
/// let h = fibra::Builder::new()
///     .name("conn-7")
///     .stack_size(128 * 1024)
///     .spawn(|| fibra::current().name().map(str::to_owned))
///     .expect("spawn");
/// assert_eq!(h.join().unwrap().as_deref(), Some("conn-7"));
/// # });
/// ```
#[derive(Debug, Default)]
#[must_use = "a Builder does nothing until .spawn() is called"]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    spread: bool,
}

impl Builder {
    /// A builder with the runtime's defaults.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::Builder::new().spawn(|| 1 + 1).unwrap(); // like fibra::spawn
    /// assert_eq!(h.fiber().name(), None);
    /// assert_eq!(h.join().unwrap(), 2);
    /// # });
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the fiber; the name shows in [`Fiber::name`], debugging output and the stack
    /// overflow report.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::Builder::new().name(format!("conn-{}", 3)).spawn(fibra::current).unwrap();
    /// assert_eq!(h.fiber().name(), Some("conn-3"));
    /// assert!(format!("{:?}", h.join().unwrap()).contains("\"conn-3\""));
    /// # });
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// The fiber's stack size in bytes (rounded up to whole pages). Only touched pages cost
    /// memory. Minimum [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE), maximum
    /// [`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE) (1 GiB); default: the runtime's (64 KiB
    /// unless [`RuntimeBuilder::stack_size`](crate::RuntimeBuilder::stack_size) says).
    ///
    /// # Errors
    /// [`spawn`](Builder::spawn) returns [`SpawnError::StackTooSmall`] or
    /// [`SpawnError::StackTooLarge`] for a size outside those bounds, before creating the
    /// fiber. A size within them may still fail to get memory at the fiber's first run
    /// (`mmap` under `RLIMIT_AS`, say): its `join` then reports
    /// [`JoinError::NoStack`](crate::JoinError::NoStack).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let err = fibra::Builder::new().stack_size(usize::MAX).spawn(|| ()).unwrap_err();
    /// assert!(matches!(err, fibra::SpawnError::StackTooLarge { .. }));
    /// # });
    /// ```
    ///
    /// ```
    /// # fibra::run(|| {
    /// let big = fibra::Builder::new().stack_size(1 << 20);
    /// let h = big.spawn(|| {
    ///     let buf = std::hint::black_box([7u8; 256 * 1024]); // would overflow 64 KiB
    ///     buf[buf.len() - 1]
    /// });
    /// assert_eq!(h.unwrap().join().unwrap(), 7);
    /// # });
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Starts the fiber on the least loaded worker rather than next to its spawner: the one
    /// home to the fewest fibers, counting those it was just sent and has not started yet.
    ///
    /// For long-lived, independent fibers, such as a server's connection handlers. A fiber
    /// stays on the worker where it first runs (a started fiber never moves to another OS
    /// thread), so where it starts decides which core serves it for its whole life. By default
    /// a new fiber starts next to its spawner (or on an idle worker that steals it when the
    /// spawner is slow to start it), which keeps a producer near its consumer; but an accept
    /// loop that takes a burst of connections would then keep all of them on its own worker.
    /// A burst is split evenly whichever worker gets a core first, and a spread fiber is never
    /// stolen: the spawner's own share starts when the spawner next parks or yields.
    /// Ignored under [`migrate_started_fibers`](crate::RuntimeBuilder::migrate_started_fibers).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    /// let (root, handlers) = rt.run(|| {
    ///     let here = || std::thread::current().name().map(str::to_owned);
    ///     let (done_tx, done_rx) = fibra::chan::bounded::<()>(0);
    ///     let handlers: Vec<_> = (0..8) // spawned in a burst, none started yet
    ///         .map(|_| {
    ///             let done = done_rx.clone();
    ///             let handler = move || {
    ///                 let _ = done.recv(); // long-lived: until the channel closes
    ///                 here()
    ///             };
    ///             fibra::Builder::new().spread().spawn(handler).unwrap()
    ///         })
    ///         .collect();
    ///     drop(done_tx);
    ///     (here(), handlers.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>())
    /// });
    /// // Without `spread` all 8 would start on the root fiber's worker.
    /// assert!(handlers.iter().any(|w| *w != root));
    /// ```
    pub fn spread(mut self) -> Builder {
        self.spread = true;
        self
    }

    /// Spawns the fiber on the current runtime.
    ///
    /// # Errors
    /// [`SpawnError::NoRuntime`] outside a runtime, [`SpawnError::StackTooSmall`] or
    /// [`SpawnError::StackTooLarge`] (see [`stack_size`](Builder::stack_size)),
    /// [`SpawnError::ShuttingDown`], or [`SpawnError::MapCountBudget`]. Stack memory is
    /// reserved at the fiber's first run, so an `mmap` failure comes from
    /// [`JoinHandle::join`] as [`JoinError::NoStack`](crate::JoinError::NoStack).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let err = fibra::Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    /// assert!(matches!(err, fibra::SpawnError::StackTooSmall { .. }));
    /// # });
    /// assert!(matches!(fibra::Builder::new().spawn(|| ()), Err(fibra::SpawnError::NoRuntime)));
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let spec = SpawnSpec {
            name: self.name,
            stack_size: self.stack_size,
            location: Location::caller(),
            spread: self.spread,
        };
        context::with_worker(|w| {
            let w = w.ok_or(SpawnError::NoRuntime)?;
            // SAFETY: `F` and `T` are 'static.
            unsafe { spawn_raw(&w.shared, Some(w), spec, None, f) }
        })
    }
}

/// Spawns a fiber running `f` and returns a handle to join it.
///
/// The fiber may start on any worker (idle workers steal new fibers); once it has run it
/// stays on that worker's OS thread.
///
/// # Panics
/// Outside a fibra runtime (the message says to use [`fibra::run`](crate::run)), or if no
/// stack can be reserved. Use [`Builder::spawn`] to get these as errors. During shutdown it
/// returns a handle whose `join` reports [`JoinError::Cancelled`](crate::JoinError::Cancelled).
///
/// ```
/// let sum: u64 = fibra::run(|| {
///     let hs: Vec<_> = (0..10u64).map(|i| fibra::spawn(move || i * i)).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).sum()
/// });
/// assert_eq!(sum, 285);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(h) => h,
        Err(SpawnError::NoRuntime) => panic!(
            "fibra::spawn called outside a fibra runtime: run this code inside fibra::run(|| ...) \
             or Runtime::run"
        ),
        Err(SpawnError::ShuttingDown) => cancelled_handle(),
        Err(e) => panic!("fibra::spawn: {e}"),
    }
}

/// A handle for a spawn refused at shutdown: it is already finished, as cancelled.
fn cancelled_handle<T: Send + 'static>() -> JoinHandle<T> {
    let shared =
        context::with_worker(|w| w.map(|w| w.shared.clone())).expect("checked by Builder::spawn");
    let identity = FiberIdentity {
        id: NEXT_ID.fetch_add(1, Relaxed),
        name: None,
        location: Location::caller(),
        stack_size: 0,
    };
    let mut header = Header::new(identity, shared);
    // Only a handle side: the fiber never exists.
    join::install_handle_only(&mut header, Packet::<T, fn() -> T>::new(None, None));
    header.state.transition_to_complete();
    // SAFETY: the packet is a `Packet<T, fn() -> T>` with its handle side not taken yet.
    unsafe { JoinHandle::new::<fn() -> T>(Fiber(Arc::new(header))) }
}
