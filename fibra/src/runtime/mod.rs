//! `Runtime`, its builder, and `fibra::run`.
//!
//! A `Runtime` is a validated configuration. Each `run` is one *session*: it starts the
//! worker threads, runs the closure as the root fiber, and when that returns it unwinds every
//! remaining fiber, joins every worker thread and returns every stack, so nothing outlives the
//! call (the same as `fibra::run`).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::debug::signal::{install as install_signal_dump, valid_signal, SignalDumpConfig};
use crate::error::{BuildError, SpawnError};
use crate::fiber::{spawn_raw, wait_complete, SpawnSpec};
use crate::sched::monitor;
use crate::sched::stall::StallReport;
use crate::sched::{context, worker::Worker, Config, Shared, StallHook};
use crate::stack::{checked_stack_size, DEFAULT_STACK_SIZE};

mod handle;
pub use handle::Handle;

/// Most worker slots (`workers + max_spare_workers`) a runtime may have. Every slot gets its
/// ring, timers and I/O poller (an epoll and an eventfd) when a session starts, so this is a
/// bound on set-up cost, not a tuning knob: 256x the largest machines' core counts (256),
/// and worker indices then fit the `u32` fields that record a fiber's home.
const MAX_WORKER_SLOTS: usize = 1 << 16;

/// A configured fibra runtime; see [`Runtime::run`].
///
/// ```
/// let rt = fibra::Runtime::builder().workers(2).stack_size(128 * 1024).build()?;
/// let v = rt.run(|| fibra::spawn(|| 7).join().unwrap());
/// assert_eq!(v, 7);
/// # Ok::<(), fibra::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    config: Config,
    /// Tells this runtime's sessions (and its clones') apart from others' (`Runtime::dump`).
    pub(crate) key: Arc<()>,
    dump_signal: Option<SignalDumpConfig>,
    /// `RuntimeBuilder::hooks`: kept here, not in the scheduler's `Config` (the hooks are a
    /// layer above the scheduler, which never names them). Read only with the feature.
    #[cfg_attr(not(feature = "hooks"), allow(dead_code))]
    hooks: bool,
    /// `RuntimeBuilder::hooks_epoll`, likewise.
    #[cfg_attr(not(feature = "hooks"), allow(dead_code))]
    hooks_epoll: bool,
    /// `RuntimeBuilder::warn_blocking_calls`: read only by debug builds without `hooks`.
    #[cfg_attr(any(not(debug_assertions), feature = "hooks"), allow(dead_code))]
    warn_blocking_calls: bool,
}

/// Configures a [`Runtime`]; from [`Runtime::builder`].
///
/// ```
/// let base = fibra::Runtime::builder().workers(2); // a builder is a value: clone and reuse it
/// let small = base.clone().stack_size(32 * 1024).build().unwrap();
/// let large = base.stack_size(1 << 20).build().unwrap();
/// assert_eq!((small.workers(), large.workers()), (2, 2));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a RuntimeBuilder does nothing until .build() is called"]
pub struct RuntimeBuilder {
    workers: Option<usize>,
    stack_size: usize,
    migrate: bool,
    thread_name: String,
    max_blocking_threads: usize,
    blocking_keep_alive: Duration,
    monitor: bool,
    stall_threshold: Duration,
    max_spare_workers: Option<usize>,
    on_stall: Option<StallHook>,
    coop_budget: u32,
    dump_signal: Option<SignalDumpConfig>,
    shared_poller: bool,
    hooks: bool,
    hooks_epoll: bool,
    warn_blocking_calls: bool,
    panic_names_fiber: bool,
}

impl RuntimeBuilder {
    /// Number of worker OS threads. Default: one per available core.
    ///
    /// # Errors
    /// [`build`](Self::build) returns [`BuildError::ZeroWorkers`] for 0, and
    /// [`BuildError::TooManyWorkers`] when `n` plus
    /// [`max_spare_workers`](Self::max_spare_workers) (default: `n` again) is above 65,536.
    ///
    /// ```
    /// let err = fibra::Runtime::builder().workers(usize::MAX).build().unwrap_err();
    /// assert!(matches!(err, fibra::BuildError::TooManyWorkers { max: 65_536, .. }));
    /// ```
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(3).build().unwrap();
    /// let thread = rt.run(|| std::thread::current().name().unwrap().to_owned());
    /// let index: usize = thread.strip_prefix("fibra-worker-").unwrap().parse().unwrap();
    /// assert!(index < 3); // the root fiber ran on one of the three workers
    /// ```
    pub fn workers(mut self, n: usize) -> RuntimeBuilder {
        self.workers = Some(n);
        self
    }

    /// Default stack size of fibers, in bytes (virtual; only touched pages cost memory).
    /// Default 64 KiB; minimum [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE), maximum
    /// [`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE) (1 GiB).
    ///
    /// # Errors
    /// [`build`](Self::build) returns [`BuildError::StackTooSmall`] or
    /// [`BuildError::StackTooLarge`] for a size outside those bounds.
    ///
    /// ```
    /// let err = fibra::Runtime::builder().stack_size(fibra::MAX_STACK_SIZE + 1).build();
    /// assert!(matches!(err, Err(fibra::BuildError::StackTooLarge { .. })));
    /// ```
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().stack_size(1 << 20).build().unwrap();
    /// // Every fiber gets 1 MiB unless its Builder says otherwise: room for a 256 KiB buffer.
    /// let big = || std::hint::black_box([1u8; 256 * 1024]).len();
    /// assert_eq!(rt.run(|| fibra::spawn(big).join().unwrap()), 256 * 1024);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> RuntimeBuilder {
        self.stack_size = bytes;
        self
    }

    /// Prefix of worker thread names (default `fibra-worker`; threads are `<prefix>-<i>`).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).thread_name("app").build().unwrap();
    /// let name = rt.run(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(name.as_deref(), Some("app-0"));
    /// ```
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
    /// The second point is wider than it looks: a thread-local read *afresh* after the park
    /// (`std::thread::current()`, `LocalKey::with`, std's own panic count), in a function
    /// whose activation spans the park, may still reach the previous thread, because LLVM may
    /// compute the address once per activation and inlining decides which activation a std or
    /// library call lands in (llvm-project#98479). Opting in means accepting that for every
    /// function your fibers run; `docs/SOUNDNESS.md` §4 says what fibra itself does about it.
    ///
    /// `fiber_local!` storage is not affected: it follows the fiber.
    pub unsafe fn migrate_started_fibers(mut self) -> RuntimeBuilder {
        self.migrate = true;
        self
    }

    /// Registers every socket with one I/O poller that whichever worker is free polls (Go's
    /// netpoller), instead of with a poller per worker (the default: a socket's events are
    /// found by the thread that runs its fiber). Either way a fiber resumes on its own thread;
    /// the shared poller only changes who notices the readiness. Measured on the lab's `io`
    /// experiment (`--full` has a row for it); see the `io::reactor` module docs for the
    /// figures and why per-worker is the default. [`debug::metrics`](crate::debug::metrics)'
    /// `reactor_polls` and `io_wakeups` count the workers' own pollers only: in this mode, their
    /// sleeps and no wake-ups.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let rt = fibra::Runtime::builder().shared_poller().build().unwrap();
    /// rt.run(|| {
    ///     let l = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let echo = fibra::spawn(move || {
    ///         let (mut s, _) = l.accept().unwrap();
    ///         let mut b = [0u8; 4];
    ///         s.read_exact(&mut b).unwrap();
    ///         s.write_all(&b).unwrap();
    ///     });
    ///     let mut c = fibra::net::TcpStream::connect(addr).unwrap();
    ///     c.write_all(b"ping").unwrap();
    ///     let mut r = [0u8; 4];
    ///     c.read_exact(&mut r).unwrap();
    ///     assert_eq!(&r, b"ping");
    ///     echo.join().unwrap();
    /// });
    /// ```
    pub fn shared_poller(mut self) -> RuntimeBuilder {
        self.shared_poller = true;
        self
    }

    /// Most threads of the blocking pool ([`spawn_blocking`](crate::spawn_blocking),
    /// [`run_blocking`](crate::run_blocking)); tasks beyond it queue. Default 512 (tokio's).
    ///
    /// # Panics
    /// If `n` is 0.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().max_blocking_threads(2).build().unwrap();
    /// assert_eq!(rt.run(|| fibra::spawn_blocking(|| 5).join().unwrap()), 5);
    /// ```
    pub fn max_blocking_threads(mut self, n: usize) -> RuntimeBuilder {
        assert!(
            n > 0,
            "RuntimeBuilder::max_blocking_threads must be at least 1"
        );
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it exits. Default 10 s.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder()
    ///     .blocking_keep_alive(std::time::Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// rt.run(|| fibra::run_blocking(|| ()));
    /// ```
    pub fn blocking_keep_alive(mut self, keep_alive: Duration) -> RuntimeBuilder {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Whether the monitor thread watches for stuck workers (default on). Off, a worker whose
    /// fiber blocks stalls every fiber queued behind it until the call returns, and nothing
    /// retries a blocking-pool thread that failed to start: with no pool thread alive,
    /// [`spawn_blocking`](crate::spawn_blocking) then reports
    /// [`JoinError::Cancelled`](crate::JoinError::Cancelled) and [`run_blocking`](crate::run_blocking)
    /// runs its closure on the calling worker.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().monitor(false).build().unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn monitor(mut self, on: bool) -> RuntimeBuilder {
        self.monitor = on;
        self
    }

    /// How long a worker may stay inside one fiber run before the monitor treats it as stuck:
    /// it moves the worker's movable work elsewhere, wakes an idle worker for it or, if none
    /// is idle and the stuck thread is in a syscall, adds a spare worker thread, and reports
    /// the fiber (see [`on_stall`](Self::on_stall)). Default 10 ms. A threshold too large for
    /// the clock (`Duration::MAX`) is never reached: no worker is ever treated as stuck.
    ///
    /// # What the monitor can and cannot move
    /// A fiber that has started runs only on its home thread (the sound default; see
    /// [`migrate_started_fibers`](Self::migrate_started_fibers)), so while that thread is
    /// stuck in a blocking call, **the fibers that already ran on it wait for it**. Fibers on
    /// other workers, fibers that have not started yet, and new spawns keep running.
    /// Wrapping the call in [`fibra::run_blocking`](crate::run_blocking) (or building the runtime with
    /// the migration opt-in) removes the stall.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder()
    ///     .stall_threshold(std::time::Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn stall_threshold(mut self, threshold: Duration) -> RuntimeBuilder {
        self.stall_threshold = threshold;
        self
    }

    /// Most extra worker threads the monitor may run while workers are stuck. Default: as
    /// many as [`workers`](Self::workers). Spares retire after ~100 ms idle once no worker is
    /// stuck; when the cap is hit, the monitor says so once on stderr. A spare whose thread
    /// cannot start (`RLIMIT_NPROC`, `EAGAIN`) is reported once and tried again later.
    ///
    /// # Errors
    /// [`build`](Self::build) returns [`BuildError::TooManyWorkers`] when `n` plus the
    /// workers is above 65,536 (each slot is set up when a session starts).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(2).max_spare_workers(1).build().unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn max_spare_workers(mut self, n: usize) -> RuntimeBuilder {
        self.max_spare_workers = Some(n);
        self
    }

    /// Replaces the default stall report with `hook`, called on the monitor thread once per
    /// stuck episode, as it begins; keep it short (log it, count it).
    ///
    /// The default report is a quiet log on stderr: a line when a stall begins
    /// ([`StallReport`]'s `Display`: the fiber, the cause and advice that fits it), a line when
    /// it ends (with its length), repeats of one fiber's stalls summed up in one line per
    /// 10 s ("fiber 42 stalled 37 more times in 10 s, worst 120 ms"), and at most 10 begin
    /// lines at once, then one a second.
    ///
    /// # Panics
    /// A panic in `hook` is caught on the monitor thread and reported on stderr with the
    /// report it was given; the monitor keeps monitoring (a payload whose own `Drop` panics
    /// is reported and leaked).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder()
    ///     .on_stall(|r: &fibra::StallReport| eprintln!("stall: {r}"))
    ///     .build()
    ///     .unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn on_stall(
        mut self,
        hook: impl Fn(&StallReport) + Send + Sync + 'static,
    ) -> RuntimeBuilder {
        self.on_stall = Some(StallHook(Arc::new(hook)));
        self
    }

    /// Operations a fiber may complete without parking (a `send` with room, a `join` of a
    /// finished fiber) before it yields to the others of its worker. Default 128 (tokio's);
    /// 0 turns the budget off. See [`coop`](crate::coop).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().coop_budget(64).build().unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn coop_budget(mut self, ops: u32) -> RuntimeBuilder {
        self.coop_budget = ops;
        self
    }

    /// Whether a panic in one of this runtime's fibers names the fiber (default on): a
    /// process-wide panic hook, chained in front of the one installed before it, first writes
    /// `fibra: panic in fiber 42 "conn-17" (spawned at src/main.rs:31:5):` to stderr; std's
    /// message follows, naming only the worker thread. Off, the previous hook's message comes
    /// alone. The hook is installed when the first session with this on starts; a hook the
    /// program sets afterwards replaces it.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().panic_names_fiber(false).build().unwrap();
    /// let r = rt.run(|| fibra::spawn(|| panic!("quietly")).join());
    /// assert!(r.is_err()); // std's message only, on stderr
    /// ```
    pub fn panic_names_fiber(mut self, on: bool) -> RuntimeBuilder {
        self.panic_names_fiber = on;
        self
    }

    /// Opt-in: while a session runs, `signal` (e.g. `libc::SIGQUIT`, as Go) writes a
    /// [`fibra::debug::dump`](crate::debug::dump) of it to stderr, without stopping running
    /// fibers. The handler only writes a byte to a pipe; a small thread makes the dump. The
    /// previous handler is restored when the session ends. One session at a time can own it
    /// (another one says so on stderr and runs without).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().dump_on_signal(libc::SIGUSR1).build().unwrap();
    /// rt.run(|| ());
    /// assert!(fibra::Runtime::builder().dump_on_signal(libc::SIGKILL).build().is_err());
    /// ```
    pub fn dump_on_signal(mut self, signal: libc::c_int) -> RuntimeBuilder {
        self.dump_signal = Some(SignalDumpConfig { signal, file: None });
        self
    }

    /// Like [`dump_on_signal`](Self::dump_on_signal), appending each dump to `path` instead
    /// of stderr.
    ///
    /// ```
    /// let path = std::env::temp_dir().join("fibra-doc-dump.txt");
    /// let rt = fibra::Runtime::builder()
    ///     .dump_on_signal_to_file(libc::SIGUSR2, &path)
    ///     .build()
    ///     .unwrap();
    /// rt.run(|| ());
    /// ```
    pub fn dump_on_signal_to_file(
        mut self,
        signal: libc::c_int,
        path: impl Into<std::path::PathBuf>,
    ) -> RuntimeBuilder {
        self.dump_signal = Some(SignalDumpConfig {
            signal,
            file: Some(path.into()),
        });
        self
    }

    /// With the Cargo feature `hooks`, whether this runtime's fibers get the libc hooks
    /// (default: on): a blocking `std::net` socket made in a fiber, a `std::thread::sleep`,
    /// a `getaddrinfo` park the fiber instead of blocking the worker. `hooks(false)` makes
    /// every such call in this runtime's fibers go straight to libc (and block the worker),
    /// as without the feature. Cargo unifies features, so another crate of the build may
    /// have switched the feature on: this is the way to turn it off. Without the feature the
    /// setting does nothing.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().hooks(false).build().unwrap();
    /// rt.run(|| std::thread::sleep(std::time::Duration::from_millis(1))); // blocks the worker
    /// ```
    pub fn hooks(mut self, on: bool) -> RuntimeBuilder {
        self.hooks = on;
        self
    }

    /// With the Cargo feature `hooks` (and `hooks(true)`), whether `epoll_wait`/`epoll_pwait`
    /// on an epoll instance made inside one of this runtime's fibers parks the fiber until
    /// the instance has events (default: off, the call blocks the worker).
    ///
    /// Turn it on only for event loops that keep no thread-local state across the wait (raw
    /// `epoll`, `mio::Poll` used directly). A loop that marks its thread as "inside" for the
    /// duration, as tokio's `block_on` does (the sync `postgres` crate runs one per call),
    /// breaks when the fiber parks: another fiber of the same worker that enters such a loop
    /// finds the thread already inside one, and tokio panics with "Cannot start a runtime
    /// from within a runtime" (a worker's fibers share its thread-locals). Without the
    /// feature the setting does nothing.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().hooks_epoll(true).build().unwrap();
    /// assert_eq!(rt.run(|| 1 + 1), 2);
    /// ```
    pub fn hooks_epoll(mut self, on: bool) -> RuntimeBuilder {
        self.hooks_epoll = on;
        self
    }

    /// In debug builds (`debug_assertions`) without the `hooks` feature, whether a blocking
    /// call made in one of this runtime's fibers is counted and reported (default: on): a
    /// read, write, `accept` or `connect` on a socket in blocking mode (a `std::net` socket),
    /// a thread sleep, `poll` with a timeout, a `getaddrinfo`. Each call site is printed to
    /// stderr once, naming the call and the first frame of the caller's own code;
    /// [`debug::blocking_calls`](crate::debug::blocking_calls) lists the sites with their
    /// counts. The calls themselves are never changed. Release builds watch nothing.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().warn_blocking_calls(false).build().unwrap();
    /// rt.run(|| std::thread::sleep(std::time::Duration::from_millis(1))); // not reported
    /// ```
    pub fn warn_blocking_calls(mut self, on: bool) -> RuntimeBuilder {
        self.warn_blocking_calls = on;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`BuildError::ZeroWorkers`] for `workers(0)`; [`BuildError::TooManyWorkers`] when
    /// `workers + max_spare_workers` is above 65,536; [`BuildError::StackTooSmall`] or
    /// [`BuildError::StackTooLarge`] for a stack size outside
    /// [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE)`..=`[`MAX_STACK_SIZE`](crate::MAX_STACK_SIZE);
    /// [`BuildError::BadDumpSignal`] for a signal that cannot carry a dump request.
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
        let max_spare_workers = self.max_spare_workers.unwrap_or(workers);
        match workers.checked_add(max_spare_workers) {
            Some(slots) if slots <= MAX_WORKER_SLOTS => {}
            slots => {
                return Err(BuildError::TooManyWorkers {
                    requested: slots.unwrap_or(usize::MAX),
                    max: MAX_WORKER_SLOTS,
                })
            }
        }
        // Stored rounded: `spawn_raw` takes the runtime's size as it is, unchecked.
        let stack_size = match checked_stack_size(self.stack_size) {
            Ok(size) => size,
            Err(SpawnError::StackTooSmall { requested, minimum }) => {
                return Err(BuildError::StackTooSmall { requested, minimum })
            }
            Err(SpawnError::StackTooLarge { requested, max }) => {
                return Err(BuildError::StackTooLarge { requested, max })
            }
            Err(e) => unreachable!("checked_stack_size only checks bounds: {e}"),
        };
        if let Some(d) = &self.dump_signal {
            if !valid_signal(d.signal) {
                return Err(BuildError::BadDumpSignal(d.signal));
            }
        }
        let config = Config {
            workers,
            stack_size,
            migrate: self.migrate,
            shared_poller: self.shared_poller,
            panic_names_fiber: self.panic_names_fiber,
            thread_name: self.thread_name,
            max_blocking_threads: self.max_blocking_threads,
            blocking_keep_alive: self.blocking_keep_alive,
            monitor: self.monitor,
            stall_threshold: self.stall_threshold,
            max_spare_workers,
            on_stall: self.on_stall,
            coop_budget: self.coop_budget,
        };
        Ok(Runtime {
            config,
            key: Arc::new(()),
            dump_signal: self.dump_signal,
            hooks: self.hooks,
            hooks_epoll: self.hooks_epoll,
            warn_blocking_calls: self.warn_blocking_calls,
        })
    }
}

impl Runtime {
    /// A builder with the defaults: one worker per core, 64 KiB stacks, no migration, a
    /// blocking pool of up to 512 threads, the monitor on with a 10 ms stall threshold.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let root = rt.run(|| fibra::current().name().map(str::to_owned));
    /// assert_eq!(root.as_deref(), Some("main")); // the closure runs as the fiber "main"
    /// ```
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            migrate: false,
            thread_name: "fibra-worker".into(),
            max_blocking_threads: 512,
            blocking_keep_alive: Duration::from_secs(10),
            monitor: true,
            stall_threshold: Duration::from_millis(10),
            max_spare_workers: None,
            on_stall: None,
            coop_budget: crate::coop::DEFAULT_BUDGET,
            dump_signal: None,
            shared_poller: false,
            hooks: true,
            hooks_epoll: false,
            warn_blocking_calls: true,
            panic_names_fiber: true,
        }
    }

    /// A runtime with the defaults.
    ///
    /// # Errors
    /// None today; kept for symmetry with [`RuntimeBuilder::build`].
    ///
    /// ```
    /// let rt = fibra::Runtime::new().unwrap();
    /// let a = rt.run(|| fibra::spawn(|| 1).join().unwrap());
    /// let b = rt.run(|| 2); // one runtime, any number of sessions
    /// assert_eq!(a + b, 3);
    /// ```
    pub fn new() -> Result<Runtime, BuildError> {
        Runtime::builder().build()
    }

    /// The key of this runtime's sessions in `sched::sessions`.
    pub(crate) fn key_addr(&self) -> usize {
        Arc::as_ptr(&self.key) as usize
    }

    /// Number of worker threads.
    ///
    /// ```
    /// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// assert_eq!(fibra::Runtime::new().unwrap().workers(), cores); // the default
    /// assert_eq!(fibra::Runtime::builder().workers(2).build().unwrap().workers(), 2);
    /// ```
    pub fn workers(&self) -> usize {
        self.config.workers
    }

    /// Runs `f` as the root fiber of a new session and returns its value (named as
    /// [`fibra::run`](crate::run), which is this on a default runtime; `block_on` before 0.2,
    /// which read as if it took a future). When `f` returns,
    /// every fiber still alive is unwound (its destructors run; joining it reports
    /// [`JoinError::Cancelled`](crate::JoinError::Cancelled)), every worker thread is joined
    /// and every stack is returned.
    ///
    /// # Panics
    /// Resumes `f`'s panic. Panics if called from inside a fiber (that would block a worker:
    /// spawn and join instead), if the worker threads or their I/O pollers cannot be
    /// created, or if no stack can be reserved for `f` (`mmap` failing under `RLIMIT_AS`, say;
    /// the message names the cause).
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let data = vec![1, 2, 3];
    /// let n = rt.run(|| data.len()); // the root fiber may borrow
    /// assert_eq!(n, 3);
    /// ```
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.run_session(f, "Runtime::run")
    }

    /// Renamed [`run`](Self::run): it runs a closure (not a future) as the root fiber of a
    /// session.
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// assert_eq!(rt.block_on(|| 1), rt.run(|| 1));
    /// ```
    #[deprecated(
        since = "0.2.0",
        note = "renamed to `Runtime::run`: it runs a closure as the root fiber of a session"
    )]
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        self.run_session(f, "Runtime::run")
    }

    /// `run`, named `entry` in the message if it is called from inside a fiber.
    #[track_caller]
    fn run_session<F, T>(&self, f: F, entry: &str) -> T
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        if context::with_worker(|w| w.is_some()) {
            panic!(
                "{entry} called from inside a fiber: that would block a worker thread; \
                 spawn a fiber and join it instead"
            );
        }
        crate::stack::install_overflow_handler();
        if self.config.panic_names_fiber {
            crate::debug::panic::install();
        }
        let shared = Arc::new(Shared::new(self.config.clone(), self.key.clone()));
        let spec = SpawnSpec {
            name: Some("main".into()),
            stack_size: None,
            location: std::panic::Location::caller(),
            spread: false,
        };
        // SAFETY: this function does not return before the root fiber has finished or been
        // unwound (`wait_complete` below, then the session's shutdown), so what `f` borrows
        // outlives it.
        let root = unsafe { spawn_raw(&shared, None, spec, None, f) };
        let root = root.unwrap_or_else(|e| panic!("fibra: cannot start the root fiber: {e}"));
        crate::sched::sessions::enter(self.key_addr(), &shared);
        // Before the root runs, so a signal sent by it finds the handler; dropping it
        // restores the previous handler (also if starting the workers panics).
        let signal_dump = self.dump_signal.as_ref().and_then(|cfg| {
            install_signal_dump(cfg, &shared)
                .map_err(|e| eprintln!("fibra: dump_on_signal({}) not installed: {e}", cfg.signal))
                .ok()
        });
        // Before any fiber of the session runs; dropped after the session ended.
        #[cfg(all(
            feature = "hooks",
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        let _hooks = crate::hooks::Session::enter(&shared, self.hooks, self.hooks_epoll);
        #[cfg(all(
            debug_assertions,
            not(feature = "hooks"),
            target_os = "linux",
            target_env = "gnu",
            not(target_feature = "crt-static"),
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        let _watch = crate::blocking_calls::Session::enter(&shared, self.warn_blocking_calls);
        let threads = start_workers(&shared);
        wait_complete(&root.fiber().0);
        drop(signal_dump);
        finish_session(&shared, threads);
        match root.take_completed() {
            Some(Ok(v)) => v,
            Some(Err(crate::JoinError::Panicked(p))) => std::panic::resume_unwind(p),
            Some(Err(crate::JoinError::NoStack(e))) => {
                panic!("fibra: cannot start the root fiber: {e}")
            }
            _ => unreachable!("the root fiber finishes before shutdown starts"),
        }
    }
}

/// The session's threads: the configured workers, then the monitor (which owns the spares).
struct Threads {
    workers: Vec<thread::JoinHandle<()>>,
    monitor: Option<thread::JoinHandle<()>>,
}

fn start_workers(shared: &Arc<Shared>) -> Threads {
    let mut threads = Threads {
        workers: Vec::with_capacity(shared.config.workers),
        monitor: None,
    };
    for i in 0..shared.config.workers {
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}-{i}", shared.config.thread_name))
            .spawn(move || Worker::run_thread(i, s));
        match spawned {
            Ok(t) => threads.workers.push(t),
            Err(e) => {
                finish_session(shared, threads);
                panic!("fibra: cannot start worker thread {i}: {e}");
            }
        }
    }
    match monitor::start(shared) {
        Ok(m) => threads.monitor = m,
        Err(e) => {
            finish_session(shared, threads);
            panic!("fibra: cannot start the monitor thread: {e}");
        }
    }
    threads
}

/// Shuts the session down: workers unwind what is left and exit, then the monitor (joining
/// the spare workers it started), then the blocking pool (tasks already running finish,
/// queued ones are cancelled; it goes last because a fiber unwound inside `fibra::run_blocking`
/// waits for its pool task); queues are emptied so no reference cycle
/// (fiber → session → queue → fiber) outlives it.
fn finish_session(shared: &Arc<Shared>, threads: Threads) {
    // First: no spawn from outside gets in after this (`Shared::accepts_outside`).
    *shared
        .accepts_outside
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = false;
    shared.begin_shutdown();
    if let Some(m) = &threads.monitor {
        m.thread().unpark();
    }
    let mut worker_panic = None;
    for t in threads.workers.into_iter().chain(threads.monitor) {
        if let Err(p) = t.join() {
            worker_panic.get_or_insert(p);
        }
    }
    shared.blocking.shutdown();
    crate::sched::sessions::leave(shared);
    shared.release_queues();
    shared.stacks.release();
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
        .run_session(f, "fibra::run")
}
