//! Errors of the public API. Each one says what went wrong and what to do.

use std::any::Any;
use std::fmt;
use std::io;

/// Why a fiber could not be spawned.
///
/// ```
/// # fibra::run(|| {
/// use fibra::{SpawnError, MIN_STACK_SIZE};
/// let err = fibra::Builder::new().stack_size(4096).spawn(|| ()).unwrap_err();
/// assert!(matches!(err, SpawnError::StackTooSmall { requested: 4096, minimum: MIN_STACK_SIZE }));
/// assert!(err.to_string().starts_with("fiber stack of 4096 bytes is below fibra's minimum"));
/// # });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The calling thread is not inside a fibra runtime.
    NoRuntime,
    /// The runtime is shutting down and accepts no new fibers.
    ShuttingDown,
    /// [`Handle::spawn`](crate::Handle::spawn): the handle's runtime has no session running
    /// (before [`Runtime::run`](crate::Runtime::run) starts one, or after it returned).
    NotRunning,
    /// The requested stack is smaller than [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE).
    StackTooSmall {
        /// The size asked for, in bytes.
        requested: usize,
        /// The smallest size fibra accepts, in bytes.
        minimum: usize,
    },
    /// The requested stack is larger than [`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE).
    StackTooLarge {
        /// The size asked for, in bytes.
        requested: usize,
        /// The largest size fibra accepts, in bytes.
        max: usize,
    },
    /// Guard pages need one memory map each on this kernel (no `MADV_GUARD_INSTALL`), and the
    /// process is close to `vm.max_map_count`. Raise it with `sysctl vm.max_map_count=<n>`.
    MapCountBudget {
        /// The kernel's `vm.max_map_count`.
        max_map_count: usize,
        /// Guarded stacks alive now.
        guarded_stacks: usize,
    },
    /// Reserving stack memory failed (`mmap` or `madvise`). `ENOMEM` means the process is out
    /// of address space: `RLIMIT_AS` (`ulimit -v`) or, with `vm.overcommit_memory = 2`, the
    /// commit limit.
    Stack(io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NoRuntime => write!(
                f,
                "no fibra runtime on this thread: call fibra::spawn inside fibra::run(|| ...) or Runtime::run"
            ),
            SpawnError::ShuttingDown => write!(f, "the fibra runtime is shutting down"),
            SpawnError::NotRunning => write!(
                f,
                "the fibra runtime of this Handle is not running: Handle::spawn works only \
                 while Runtime::run (or fibra::run) runs"
            ),
            SpawnError::StackTooSmall { requested, minimum } => write!(
                f,
                "fiber stack of {requested} bytes is below fibra's minimum of {minimum} bytes"
            ),
            SpawnError::StackTooLarge { requested, max } => write!(
                f,
                "fiber stack of {requested} bytes is above fibra's maximum of {max} bytes \
                 (fibra::MAX_STACK_SIZE): ask for less, and keep large data on the heap"
            ),
            SpawnError::MapCountBudget { max_map_count, guarded_stacks } => write!(
                f,
                "{guarded_stacks} guarded fiber stacks use up the memory-map budget \
                 (vm.max_map_count = {max_map_count}, and this kernel lacks MADV_GUARD_INSTALL): \
                 raise it with `sysctl vm.max_map_count=<n>`"
            ),
            SpawnError::Stack(e) if e.raw_os_error() == Some(libc::ENOMEM) => write!(
                f,
                "could not reserve a fiber stack: {e}: the process is out of address space \
                 (check `ulimit -v` and vm.overcommit_memory), or use smaller stacks"
            ),
            SpawnError::Stack(e) => write!(f, "could not reserve a fiber stack: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Stack(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a [`Runtime`](crate::Runtime) could not be built.
///
/// ```
/// use fibra::BuildError;
/// let err = fibra::Runtime::builder().stack_size(4096).build().unwrap_err();
/// assert!(matches!(err, BuildError::StackTooSmall { requested: 4096, .. }));
/// let err = fibra::Runtime::builder().workers(0).build().unwrap_err();
/// assert!(err.to_string().contains("at least one worker"));
/// let err = fibra::Runtime::builder().stack_size(usize::MAX).build().unwrap_err();
/// assert!(matches!(err, BuildError::StackTooLarge { max: fibra::MAX_STACK_SIZE, .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers(0)`: a runtime needs at least one worker.
    ZeroWorkers,
    /// The default stack size is below [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE).
    StackTooSmall {
        /// The size asked for, in bytes.
        requested: usize,
        /// The smallest size fibra accepts, in bytes.
        minimum: usize,
    },
    /// The default stack size is above [`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE).
    StackTooLarge {
        /// The size asked for, in bytes.
        requested: usize,
        /// The largest size fibra accepts, in bytes.
        max: usize,
    },
    /// `workers + max_spare_workers` is above the most worker slots a runtime can have.
    TooManyWorkers {
        /// `workers + max_spare_workers` (saturated at `usize::MAX`).
        requested: usize,
        /// The most worker slots fibra accepts.
        max: usize,
    },
    /// `dump_on_signal` was given a signal that cannot carry a dump request: out of range,
    /// uncatchable (`SIGKILL`, `SIGSTOP`) or a fault signal (`SIGSEGV`, `SIGBUS`, `SIGILL`,
    /// `SIGFPE`).
    BadDumpSignal(i32),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => write!(f, "a fibra runtime needs at least one worker (workers(0) given)"),
            BuildError::StackTooSmall { requested, minimum } => write!(
                f,
                "default fiber stack of {requested} bytes is below fibra's minimum of {minimum} bytes"
            ),
            BuildError::StackTooLarge { requested, max } => write!(
                f,
                "default fiber stack of {requested} bytes is above fibra's maximum of {max} bytes \
                 (fibra::MAX_STACK_SIZE): ask for less, and keep large data on the heap"
            ),
            BuildError::TooManyWorkers { requested, max } => write!(
                f,
                "{requested} worker threads (workers + max_spare_workers) are more than fibra's \
                 maximum of {max}: lower RuntimeBuilder::workers or max_spare_workers"
            ),
            BuildError::BadDumpSignal(sig) => write!(
                f,
                "signal {sig} cannot trigger a dump (out of range, uncatchable, or a fault \
                 signal); use SIGQUIT or SIGUSR1"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why [`JoinHandle::join`](crate::JoinHandle::join) returned no value.
///
/// ```
/// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
/// let h = rt.run(|| fibra::spawn(|| fibra::sleep(std::time::Duration::from_secs(60))));
/// let err = h.join().unwrap_err(); // the session ended before the sleeper did
/// assert!(matches!(err, fibra::JoinError::Cancelled));
/// assert_eq!(err.to_string(), "fiber was cancelled (JoinHandle::cancel or runtime shutdown)");
/// ```
#[non_exhaustive]
pub enum JoinError {
    /// The fiber panicked; the payload is the value passed to `panic!`.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The fiber was unwound before it finished: it was cancelled
    /// ([`JoinHandle::cancel`](crate::JoinHandle::cancel)), or its runtime shut down.
    Cancelled,
    /// The fiber never ran: no stack could be reserved when a worker picked it up (stacks are
    /// taken at a fiber's first run, on the worker that runs it).
    NoStack(SpawnError),
}

impl JoinError {
    /// The panic payload, if the fiber panicked (use it with `std::panic::resume_unwind`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let h = fibra::spawn(|| std::panic::resume_unwind(Box::new(42_u32))); // any payload
    /// let payload = h.join().unwrap_err().into_panic().unwrap();
    /// assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
    /// assert!(fibra::JoinError::Cancelled.into_panic().is_none());
    /// # });
    /// ```
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            JoinError::Panicked(p) => Some(p),
            _ => None,
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::NoStack(e) => f.debug_tuple("NoStack").field(e).finish(),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.panic_message() {
            Some(msg) => write!(f, "fiber panicked: {msg}"),
            None if matches!(self, JoinError::Panicked(_)) => write!(f, "fiber panicked"),
            None => match self {
                JoinError::NoStack(e) => write!(f, "fiber never ran: {e}"),
                _ => write!(
                    f,
                    "fiber was cancelled (JoinHandle::cancel or runtime shutdown)"
                ),
            },
        }
    }
}

impl std::error::Error for JoinError {}
