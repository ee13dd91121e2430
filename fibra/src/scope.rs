//! `fibra::scope`: fibers that borrow from the caller's stack, like `std::thread::scope`.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use crate::error::{JoinError, SpawnError};
use crate::fiber::{spawn_raw, Fiber, FiberRef, JoinHandle, SpawnSpec};
use crate::park::{self, ParkReason};
use crate::sched::context;

/// Shared by a scope and its fibers.
pub(crate) struct ScopeData {
    /// Packets alive (std's protocol: a fiber counts until its result is consumed or dropped).
    running: AtomicUsize,
    a_fiber_panicked: AtomicBool,
    owner_waker: Waker,
    /// The scope's fibers, for `cancel_children`; finished ones are pruned as it grows.
    children: Mutex<Vec<FiberRef>>,
}

impl ScopeData {
    fn add_child(&self, child: &FiberRef) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if children.len() >= 64 && children.len().is_power_of_two() {
            // Amortised O(1) a spawn: a long scope keeps only its unfinished fibers.
            children.retain(|c| !c.state.is_complete());
        }
        children.push(child.clone());
    }

    /// Cancels every fiber of the scope (`JoinHandle::cancel`): the body panicked, or the
    /// owner itself is being cancelled.
    fn cancel_children(&self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for child in &children {
            crate::fiber::cancel::request(child);
        }
    }

    pub(crate) fn decrement_running(&self, panicked: bool) {
        if panicked {
            self.a_fiber_panicked.store(true, Relaxed);
        }
        // Release pairs with the scope's Acquire load: the fiber's work happens-before
        // `scope` returns.
        if self.running.fetch_sub(1, Release) == 1 {
            self.owner_waker.wake_by_ref();
        }
    }
}

/// Counts a scoped fiber on its owner fiber while anything of the child that may borrow is
/// alive: its closure (if it never runs), or its frames and its fiber side of the packet
/// (the guard then lives with its fiber-locals, `drop_at_exit`). Shutdown unwinds the owner
/// only after its children, so borrowed data outlives them.
struct ChildGuard(Option<FiberRef>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(owner) = &self.0 {
            owner.scoped_children.fetch_sub(1, Release);
        }
    }
}

/// A scoped fiber's code and its hold on the owner. The owner may be unwound at shutdown once
/// the guard is gone, so the guard must outlive everything of the child that may borrow: the
/// closure if it never runs (`guard` is declared after `f`, so it is dropped after it), or the
/// child's frames and a result the child drops itself when its handle is gone (the guard then
/// lives with the child's fiber-locals, which go after both: `fiber_root`).
struct ScopedChild<F> {
    f: F,
    guard: ChildGuard,
}

impl<F: FnOnce() -> T, T> ScopedChild<F> {
    fn run(self) -> T {
        let ScopedChild { f, guard } = self;
        if let Err(guard) = crate::fiber::drop_at_exit(guard) {
            drop(guard); // not on a fiber: cannot happen, a scoped child is one
        }
        f()
    }
}

/// A scope to spawn fibers in; see [`scope`].
///
/// ```
/// # fibra::run(|| {
/// let mut counts = [0u32; 3];
/// fibra::scope(|s| {
///     for c in counts.iter_mut() {
///         s.spawn(move || *c += 1); // each fiber borrows one element mutably
///     }
/// });
/// assert_eq!(counts, [1, 1, 1]);
/// # });
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    owner: Option<FiberRef>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// Joins a scoped fiber; see [`Scope::spawn`].
///
/// ```
/// # fibra::run(|| {
/// let words = ["a", "bb", "ccc"];
/// let lens: Vec<usize> = fibra::scope(|s| {
///     let handles: Vec<_> = words.iter().map(|w| s.spawn(move || w.len())).collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(lens, [1, 2, 3]);
/// # });
/// ```
pub struct ScopedJoinHandle<'scope, T> {
    inner: JoinHandle<T>,
    _scope: PhantomData<&'scope ()>,
}

/// Creates a scope whose fibers may borrow non-`'static` data; every fiber spawned in it is
/// finished before `scope` returns.
///
/// # Panics
/// If `f` panics (its panic resumes here), or if a fiber panicked and was not joined.
/// When `f` panics, the scope first [cancels](crate::JoinHandle::cancel) its fibers that are
/// still running and waits for them to unwind.
///
/// # Cancellation
/// Cancelling the fiber that runs the scope cancels the scope's fibers too; the scope still
/// waits for them (they may borrow its caller's data), then the cancellation goes on.
///
/// ```
/// # fibra::run(|| {
/// let mut data = vec![1, 2, 3];
/// let total = std::sync::atomic::AtomicU32::new(0);
/// fibra::scope(|s| {
///     s.spawn(|| total.fetch_add(data.iter().sum(), std::sync::atomic::Ordering::Relaxed));
///     s.spawn(|| println!("{} items", data.len()));
/// });
/// data.push(4); // the borrows ended with the scope
/// assert_eq!(total.into_inner(), 6);
/// # });
/// ```
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let owner = context::with_current_fiber(|h| h.map(|h| h.to_ref()));
    let data = Arc::new(ScopeData {
        running: AtomicUsize::new(0),
        a_fiber_panicked: AtomicBool::new(false),
        owner_waker: park::current_waker(),
        children: Mutex::new(Vec::new()),
    });
    let scope = Scope {
        data: data.clone(),
        owner,
        scope: PhantomData,
        env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let me = park::Caller::current();
    // A body that panicked (or was cancelled) will not join its fibers: cancel them rather
    // than wait for them at their leisure. Its own cancellation is held back (the payload
    // dropped, so its parks park) until they are gone, then raised again.
    let mut children_cancelled = result.is_err();
    if children_cancelled {
        data.cancel_children();
    }
    let (result, cancelled) = match result {
        Err(payload) if crate::fiber::cancel::is_payload(&*payload) => {
            drop(payload);
            (Err(None), true)
        }
        Err(payload) => (Err(Some(payload)), false),
        Ok(v) => (Ok(v), false),
    };
    // A scope inside a destructor of a fiber being cancelled: its fibers may borrow that
    // frame too, so its parks must park while it waits.
    let paused = me.pause_self_cancel();
    // Acquire pairs with `decrement_running`'s Release.
    while data.running.load(Acquire) != 0 {
        if me.shutdown_cancelling() {
            break; // shutdown unwinds us only after our fibers are gone (`ChildGuard`)
        }
        if !children_cancelled && me.cancel_requested() {
            // Cancelling the owner cancels its scope's fibers; the owner unwinds at its next
            // park once they are gone (this wait must not leave the frame early).
            children_cancelled = true;
            data.cancel_children();
        }
        me.park_uncancellable(ParkReason::Scope);
    }
    if paused {
        me.resume_self_cancel();
    }
    data.children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    match result {
        Err(Some(payload)) => panic::resume_unwind(payload),
        Err(None) => {
            debug_assert!(cancelled);
            me.raise_cancel();
            unreachable!("only a fiber is cancelled")
        }
        Ok(_) if data.a_fiber_panicked.load(Relaxed) => panic!("a scoped fiber panicked"),
        Ok(value) => value,
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns a fiber that may borrow from outside the scope.
    ///
    /// # Panics
    /// Outside a fibra runtime, or if no stack can be reserved.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let data = vec![1, 2, 3];
    /// let mut sum = 0;
    /// fibra::scope(|s| {
    ///     s.spawn(|| sum = data.iter().sum()); // borrows `data`, writes `sum`
    /// });
    /// assert_eq!(sum, 6);
    /// # });
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let spec = SpawnSpec {
            name: None,
            stack_size: None,
            location: Location::caller(),
            spread: false,
        };
        match self.spawn_spec(spec, f) {
            Ok(h) => h,
            Err(e) => panic!("fibra::Scope::spawn: {e}"),
        }
    }

    fn spawn_spec<F, T>(
        &'scope self,
        spec: SpawnSpec,
        f: F,
    ) -> Result<ScopedJoinHandle<'scope, T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        if let Some(owner) = &self.owner {
            owner.scoped_children.fetch_add(1, Relaxed);
        }
        let child = ScopedChild {
            f,
            guard: ChildGuard(self.owner.clone()),
        };
        let body = move || child.run();
        self.data.running.fetch_add(1, Relaxed);
        let spawned = context::with_worker(|w| {
            let w = w.ok_or(SpawnError::NoRuntime)?;
            // SAFETY: `scope` does not return (nor is its owner unwound at shutdown) before
            // every packet of this scope is gone and every child's closure dropped, so what
            // `f` borrows for 'scope outlives the fiber.
            unsafe { spawn_raw(&w.shared, Some(w), spec, Some(self.data.clone()), body) }
        });
        match spawned {
            Ok(inner) => {
                self.data.add_child(&inner.fiber().0);
                Ok(ScopedJoinHandle {
                    inner,
                    _scope: PhantomData,
                })
            }
            Err(e) => {
                // The closure (and its guard) was dropped by spawn_raw; undo the count.
                self.data.decrement_running(false);
                Err(e)
            }
        }
    }
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the fiber and returns its value; see [`JoinHandle::join`].
    ///
    /// # Errors
    /// [`JoinError::Panicked`] if the fiber panicked.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let v = vec![1, 2];
    /// let n = fibra::scope(|s| s.spawn(|| v.len()).join().unwrap());
    /// assert_eq!(n, 2);
    /// # });
    /// ```
    pub fn join(self) -> Result<T, JoinError> {
        self.inner.join()
    }

    /// Asks the fiber to stop at its next park; see [`JoinHandle::cancel`]. The scope still
    /// waits for it to finish unwinding.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::bounded::<()>(0);
    /// let r = fibra::scope(|s| {
    ///     let h = s.spawn(|| rx.recv()); // borrows `rx`, waits for ever
    ///     h.cancel();
    ///     h.join()
    /// });
    /// assert!(matches!(r, Err(fibra::JoinError::Cancelled)));
    /// # });
    /// ```
    pub fn cancel(&self) {
        self.inner.cancel()
    }

    /// True once the fiber has finished.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// fibra::scope(|s| {
    ///     let h = s.spawn(move || rx.recv().unwrap());
    ///     assert!(!h.is_finished()); // it waits for a value
    ///     tx.send(3).unwrap();
    ///     while !h.is_finished() { fibra::yield_now(); }
    ///     assert_eq!(h.join().unwrap(), 3); // returns at once
    /// });
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The fiber this handle joins.
    ///
    /// ```
    /// # fibra::run(|| {
    /// fibra::scope(|s| {
    ///     let h = s.spawn(|| fibra::current().id());
    ///     let id = h.fiber().id();
    ///     assert_ne!(id, fibra::current().id());
    ///     assert_eq!(h.join().unwrap(), id);
    /// });
    /// # });
    /// ```
    pub fn fiber(&self) -> &Fiber {
        self.inner.fiber()
    }
}
