//! `Handle`: spawning into a runtime from anywhere (a GUI thread, an FFI callback).
//!
//! A `Handle` names a [`Runtime`], not one session of it: `Runtime::run` starts a session and
//! ends it when its closure returns, and a handle spawns into whichever session of its
//! runtime runs at the time of the call. Between sessions there is nothing to run a fiber,
//! so [`Handle::spawn`] says so ([`SpawnError::NotRunning`]) rather than queue the fiber for
//! a session that may never come.
//!
//! From a plain thread, a spawn goes to the session's global queue (any worker may start it),
//! under the session's `accepts_outside` lock, which shutdown closes before it begins: a
//! spawn either gets in before shutdown and is counted (then run, or unwound like any fiber
//! at the end), or fails with [`SpawnError::ShuttingDown`] (sched/mod.rs, `Shared`).

use std::panic::Location;
use std::sync::Arc;

use super::Runtime;
use crate::blocking::pool_session;
use crate::error::SpawnError;
use crate::fiber::{spawn_raw, JoinHandle, SpawnSpec};
use crate::sched::{context, sessions, Shared};

/// Spawns fibers on a [`Runtime`] from any thread: cheap to clone, `Send + Sync`.
///
/// Get one with [`Runtime::handle`] (before or while the runtime runs) or
/// [`Handle::current`] (inside a fiber). It belongs to the runtime, not to one session of
/// it: a spawn goes to the session running at the time, and fails with
/// [`SpawnError::NotRunning`] between sessions.
///
/// ```
/// let rt = fibra::Runtime::builder().workers(2).build().unwrap();
/// let handle = rt.handle();
/// let sum = rt.run(|| {
///     // A plain thread (a GUI's, an FFI callback's) hands work to the runtime.
///     let outside = std::thread::spawn(move || handle.spawn(|| 6 * 7).unwrap());
///     let fiber = outside.join().unwrap();
///     fiber.join().unwrap()
/// });
/// assert_eq!(sum, 42);
/// ```
#[derive(Clone)]
pub struct Handle {
    /// The runtime's key (`Runtime::key`): which sessions are its own.
    key: Arc<()>,
}

impl Runtime {
    /// A handle that spawns into this runtime's running session from any thread.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let handle = rt.handle(); // before any session: spawning now would fail
    /// assert!(matches!(handle.spawn(|| ()), Err(fibra::SpawnError::NotRunning)));
    /// assert_eq!(rt.run(|| handle.spawn(|| 5).unwrap().join().unwrap()), 5);
    /// ```
    pub fn handle(&self) -> Handle {
        Handle {
            key: self.key.clone(),
        }
    }
}

impl Handle {
    /// The handle of the runtime running the calling fiber (or blocking-pool task).
    ///
    /// # Panics
    /// Outside a fibra runtime; [`try_current`](Self::try_current) returns `None` instead.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let handle = fibra::Handle::current();
    /// let h = std::thread::spawn(move || handle.spawn(|| "from a thread").unwrap())
    ///     .join()
    ///     .unwrap();
    /// assert_eq!(h.join().unwrap(), "from a thread");
    /// # });
    /// ```
    #[track_caller]
    pub fn current() -> Handle {
        match Handle::try_current() {
            Some(h) => h,
            None => panic!(
                "fibra::Handle::current called outside a fibra runtime: call it inside \
                 fibra::run(|| ...) or Runtime::run, or get a handle with Runtime::handle"
            ),
        }
    }

    /// The handle of the runtime running the calling fiber (or blocking-pool task), if any.
    ///
    /// ```
    /// assert!(fibra::Handle::try_current().is_none());
    /// fibra::run(|| assert!(fibra::Handle::try_current().is_some()));
    /// ```
    pub fn try_current() -> Option<Handle> {
        let key = context::with_worker(|w| w.map(|w| w.shared.runtime_key.clone()));
        key.or_else(|| pool_session().map(|s| s.runtime_key.clone()))
            .map(|key| Handle { key })
    }

    /// Spawns a fiber running `f` on the runtime's running session and returns a handle to
    /// join it. Any thread may call it: on a fiber of that session it is
    /// [`fibra::spawn`](crate::spawn); elsewhere the fiber goes to the session's global
    /// queue and an idle worker starts it. Join it from a fiber (which parks) or from a plain
    /// thread (which blocks).
    ///
    /// If several sessions of the runtime run at once (clones of a `Runtime` run on several
    /// threads), a call from outside them goes to the oldest.
    ///
    /// # Errors
    /// [`SpawnError::NotRunning`] if no session of the runtime is running,
    /// [`SpawnError::ShuttingDown`] if it is ending, and the stack-size errors of
    /// [`Builder::spawn`](crate::Builder::spawn).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let handle = rt.handle();
    /// rt.run(|| {
    ///     let h = handle.spawn(|| fibra::current().name().is_none()).unwrap();
    ///     assert!(h.join().unwrap());
    /// });
    /// let err = handle.spawn(|| ()).unwrap_err(); // the session is over
    /// assert!(matches!(err, fibra::SpawnError::NotRunning));
    /// assert!(err.to_string().contains("only while Runtime::run"));
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let spec = SpawnSpec {
            name: None,
            stack_size: None,
            location: Location::caller(),
            spread: false,
        };
        let mut f = Some(f);
        let here = context::with_worker(|w| {
            let w = w.filter(|w| self.owns(&w.shared))?;
            let f = f.take().expect("taken once");
            // SAFETY: `F` and `T` are 'static.
            Some(unsafe { spawn_raw(&w.shared, Some(w), spec, None, f) })
        });
        if let Some(spawned) = here {
            return spawned;
        }
        let f = f.take().expect("not taken: no worker of this runtime here");
        let key = Arc::as_ptr(&self.key) as usize;
        let mut sessions = sessions::live(Some(key));
        sessions.retain(|s| !s.shutdown.load(std::sync::atomic::Ordering::Acquire));
        let Some(shared) = sessions.first() else {
            return Err(SpawnError::NotRunning);
        };
        spawn_outside(shared, Location::caller(), f)
    }

    fn owns(&self, shared: &Shared) -> bool {
        Arc::ptr_eq(&self.key, &shared.runtime_key)
    }
}

/// A spawn from outside the session's fibers: onto the global queue, under
/// `accepts_outside` (module docs).
fn spawn_outside<F, T>(
    shared: &Arc<Shared>,
    location: &'static Location<'static>,
    f: F,
) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let open = shared
        .accepts_outside
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !*open {
        return Err(SpawnError::ShuttingDown);
    }
    let spec = SpawnSpec {
        name: None,
        stack_size: None,
        location,
        spread: false,
    };
    // SAFETY: `F` and `T` are 'static.
    let spawned = unsafe { spawn_raw(shared, None, spec, None, f) };
    drop(open);
    spawned
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("runtime", &Arc::as_ptr(&self.key))
            .finish()
    }
}
