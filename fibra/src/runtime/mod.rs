//! `Runtime`, its builder, and `fibra::run`.
//!
//! A `Runtime` is a validated configuration. Each `block_on` is one *session*: it starts the
//! worker threads, runs the closure as the root fiber, and when that returns it unwinds every
//! remaining fiber, joins every worker thread and returns every stack, so nothing outlives the
//! call (the same as `fibra::run`).

use std::sync::Arc;
use std::thread;

use crate::error::BuildError;
use crate::fiber::{spawn_raw, wait_complete, SpawnSpec};
use crate::sched::{context, queue, worker::Worker, Config, Shared};
use crate::stack::{DEFAULT_STACK_SIZE, MIN_STACK_SIZE};

/// A configured fibra runtime; see [`Runtime::block_on`].
///
/// ```
/// let rt = fibra::Runtime::builder().workers(2).stack_size(128 * 1024).build()?;
/// let v = rt.block_on(|| fibra::spawn(|| 7).join().unwrap());
/// assert_eq!(v, 7);
/// # Ok::<(), fibra::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    config: Config,
}

/// Configures a [`Runtime`]; from [`Runtime::builder`].
#[derive(Debug, Clone)]
#[must_use = "a RuntimeBuilder does nothing until .build() is called"]
pub struct RuntimeBuilder {
    workers: Option<usize>,
    stack_size: usize,
    migrate: bool,
    thread_name: String,
}

impl RuntimeBuilder {
    /// Number of worker OS threads. Default: one per available core.
    pub fn workers(mut self, n: usize) -> RuntimeBuilder {
        self.workers = Some(n);
        self
    }

    /// Default stack size of fibers, in bytes (virtual; only touched pages cost memory).
    /// Default 64 KiB; minimum [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE).
    pub fn stack_size(mut self, bytes: usize) -> RuntimeBuilder {
        self.stack_size = bytes;
        self
    }

    /// Prefix of worker thread names (default `fibra-worker`; threads are `<prefix>-<i>`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> RuntimeBuilder {
        self.thread_name = prefix.into();
        self
    }

    /// Lets started fibers move between worker threads, Go-style: an idle worker may steal a
    /// fiber that has already run, and a wake from another thread may resume it anywhere.
    /// Without this, a fiber stays on the thread of its first run, which is always sound.
    ///
    /// # Safety
    /// The caller promises, for every fiber of this runtime, that:
    /// - no value that is not `Send` (`Rc`, `RefCell` borrows of thread-owned data,
    ///   `MutexGuard` of `std::sync::Mutex`, raw pointers to thread-local data, ...) is held
    ///   across a point where the fiber can park or yield (any fibra blocking call), and
    /// - no reference to a `thread_local!` value (including one inside a library such as an
    ///   allocator arena or a `tracing` span guard) is held across such a point: in release
    ///   builds the compiler may keep a thread-local's address in a register across the
    ///   switch, so the fiber would keep writing into the *previous* thread's data.
    ///
    /// `fiber_local!` storage is not affected: it follows the fiber.
    pub unsafe fn migrate_started_fibers(mut self) -> RuntimeBuilder {
        self.migrate = true;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`BuildError::ZeroWorkers`] for `workers(0)`; [`BuildError::StackTooSmall`] for a
    /// stack size below [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE).
    ///
    /// ```
    /// assert!(matches!(fibra::Runtime::builder().workers(0).build(), Err(fibra::BuildError::ZeroWorkers)));
    /// ```
    pub fn build(self) -> Result<Runtime, BuildError> {
        let workers = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.stack_size < MIN_STACK_SIZE {
            return Err(BuildError::StackTooSmall {
                requested: self.stack_size,
                minimum: MIN_STACK_SIZE,
            });
        }
        let config = Config {
            workers,
            stack_size: self.stack_size,
            migrate: self.migrate,
            thread_name: self.thread_name,
        };
        Ok(Runtime { config })
    }
}

impl Runtime {
    /// A builder with the defaults: one worker per core, 64 KiB stacks, no migration.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            migrate: false,
            thread_name: "fibra-worker".into(),
        }
    }

    /// A runtime with the defaults.
    ///
    /// # Errors
    /// None today; kept for symmetry with [`RuntimeBuilder::build`].
    pub fn new() -> Result<Runtime, BuildError> {
        Runtime::builder().build()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.config.workers
    }

    /// Runs `f` as the root fiber of a new session and returns its value. When `f` returns,
    /// every fiber still alive is unwound (its destructors run; joining it reports
    /// [`JoinError::Cancelled`](crate::JoinError::Cancelled)), every worker thread is joined
    /// and every stack is returned.
    ///
    /// # Panics
    /// Resumes `f`'s panic. Panics if called from inside a fiber (that would block a worker:
    /// spawn and join instead), or if the worker threads cannot be created.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let data = vec![1, 2, 3];
    /// let n = rt.block_on(|| data.len()); // the root fiber may borrow
    /// assert_eq!(n, 3);
    /// ```
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        assert!(
            context::with_worker(|w| w.is_none()),
            "Runtime::block_on called from inside a fiber: that would block a worker thread; \
             spawn a fiber and join it instead"
        );
        crate::stack::install_overflow_handler();
        let (locals, stealers): (Vec<_>, Vec<_>) =
            (0..self.config.workers).map(|_| queue::local()).unzip();
        let shared = Arc::new(Shared::new(self.config.clone(), stealers));
        let spec = SpawnSpec {
            name: Some("main".into()),
            stack_size: None,
            location: std::panic::Location::caller(),
        };
        // SAFETY: this function does not return before the root fiber has finished or been
        // unwound (`wait_complete` below, then the session's shutdown), so what `f` borrows
        // outlives it.
        let root = unsafe { spawn_raw(&shared, None, spec, None, f) };
        let (root, packet) =
            root.unwrap_or_else(|e| panic!("fibra: cannot start the root fiber: {e}"));
        let threads = start_workers(&shared, locals);
        wait_complete(&root);
        finish_session(&shared, threads);
        drop(root);
        match packet.take() {
            Some(Ok(v)) => v,
            Some(Err(crate::JoinError::Panicked(p))) => std::panic::resume_unwind(p),
            _ => unreachable!("the root fiber finishes before shutdown starts"),
        }
    }
}

fn start_workers(
    shared: &Arc<Shared>,
    locals: Vec<queue::Local<crate::fiber::FiberRef>>,
) -> Vec<thread::JoinHandle<()>> {
    let mut threads = Vec::with_capacity(locals.len());
    for (i, local) in locals.into_iter().enumerate() {
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}-{i}", shared.config.thread_name))
            .spawn(move || Worker::run_thread(i, s, local));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                finish_session(shared, threads);
                panic!("fibra: cannot start worker thread {i}: {e}");
            }
        }
    }
    threads
}

/// Shuts the session down: workers unwind what is left and exit; queues are emptied so no
/// reference cycle (fiber → session → queue → fiber) outlives it.
fn finish_session(shared: &Arc<Shared>, threads: Vec<thread::JoinHandle<()>>) {
    shared.begin_shutdown();
    let mut worker_panic = None;
    for t in threads {
        if let Err(p) = t.join() {
            worker_panic.get_or_insert(p);
        }
    }
    shared.release_queues();
    if let Some(p) = worker_panic {
        std::panic::resume_unwind(p);
    }
}

/// Starts a runtime with the defaults (one worker per core), runs `f` in a fiber, shuts the
/// runtime down, and returns `f`'s value. A panic in `f` resumes on the caller.
///
/// ```
/// use std::time::Duration;
/// let total: u64 = fibra::run(|| {
///     let handles: Vec<_> = (0..1_000u64)
///         .map(|i| fibra::spawn(move || { fibra::sleep(Duration::from_millis(10)); i }))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).sum()
/// });
/// assert_eq!(total, 499_500);
/// ```
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    Runtime::new()
        .expect("the default runtime configuration is valid")
        .block_on(f)
}
