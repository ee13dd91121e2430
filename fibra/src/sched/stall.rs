//! What a stuck worker is doing, and the advice that fits: the monitor's diagnosis.
//!
//! # How a cause is named
//! | evidence | read from | tells apart |
//! |---|---|---|
//! | CPU time the thread used since the run began | the thread's CPU clock (`pthread_getcpuclockid`, published by the worker at its start) | a CPU loop (most of the wall time on a CPU) from a thread that sleeps or waits for a core |
//! | the system call it sits in, and its first argument | `/proc/self/task/<tid>/syscall` | a futex (std lock, condvar) from a socket, a file, a sleep |
//! | the kind of the fd a `read`/`write`/… is on | `/proc/self/fd/<fd>` | a socket from a file or a pipe |
//! | spawns the run made | the slot's spawn counter (`stats.rs`) | a fiber spawning a batch from a CPU loop |
//! | the panic hook's flag | `RunSignal::activity` | a fiber capturing a panic's backtrace |
//!
//! The thread state letter (`R`, `S`) that the monitor used before says little: a thread woken
//! from a socket read a moment ago, or preempted by another process, is `R` too (issue 14: 139
//! of 199 reports of a redis client blocked in socket calls said "CPU loop").
//!
//! Rejected: sampling the state letter many times. Cheaper, but it still cannot tell a
//! starved CPU loop from a thread that woke up a moment before each sample.

use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crate::fiber::FiberId;

/// A thread that used at least this share of the wall time on a CPU during the stall is in a
/// CPU loop. A loop alone on a core gets ~100%; sharing a core with one other busy thread,
/// ~50%; the 2-core machines here, shared with other builds, showed 30-60%. A thread blocked in
/// a syscall, including one that keeps waking and sleeping again, stays below 5%.
const CPU_LOOP_SHARE: f64 = 0.2;

/// A thread runnable (on a CPU or queued for one) for at least this share of the time is in
/// a CPU loop however little CPU it got, as long as it got some ([`LOOP_CPU`]): a thread
/// blocked in a call is runnable only for the moments after each wake-up.
const RUNNABLE_SHARE: f64 = 0.5;

/// The least CPU time a runnable thread must have used during the stall to be judged a loop.
/// A thread that got no core at all since the run began cannot be told from one preempted
/// in the middle of a short run (machines shared with other builds showed "0 ms on a CPU in
/// 10 ms" for both): it is reported as preempted, and judged again at the stall's end
/// (`monitor::rejudge`), by which time a real loop has had a core. A starved loop on a 2-core
/// machine under load 10 still gets ~1.7 ms of every 10.
pub(crate) const LOOP_CPU: Duration = Duration::from_millis(1);

/// Why the monitor thinks a worker is stuck.
///
/// ```
/// let (tx, rx) = std::sync::mpsc::channel();
/// let rt = fibra::Runtime::builder()
///     .workers(1)
///     .on_stall(move |r: &fibra::StallReport| {
///         let _ = tx.send(r.kind);
///     })
///     .build()
///     .unwrap();
/// // The root fiber blocks its worker on a std channel (a futex) until the monitor reports it.
/// let kind = rt.run(move || rx.recv().unwrap());
/// assert_eq!(kind, fibra::StallKind::Futex);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StallKind {
    /// Blocked in a `futex` wait: a `std::sync` lock, condvar or channel.
    Futex,
    /// Blocked in a `futex` wait, with no timeout, on a lock that a fiber parked on this same
    /// worker very likely holds: its stack points at the lock. That fiber can only run on
    /// this worker, so neither ever proceeds: a `std::sync` guard held across a fibra park.
    /// [`StallReport::holder`] names the fiber, with its stack; see [`LockHolder`] for an
    /// example. Found only without the migration opt-in (`sched/lock_holder.rs`).
    Deadlock,
    /// Blocked in a socket call (or in `poll`/`epoll_wait`/`select` on descriptors).
    Socket,
    /// Blocked on a file (a read, write, open, `fsync`, ... of a path).
    File,
    /// Sleeping in `std::thread::sleep` (`nanosleep`).
    Sleep,
    /// Blocked in another system call.
    Syscall,
    /// Running on a CPU most of the time: a CPU loop.
    CpuLoop,
    /// Runnable but mostly waiting for a core: other threads or processes hold the CPUs.
    Preempted,
    /// Spawning fibers from one run: none of them runs on this worker until it parks.
    Spawning,
    /// Inside the panic hook, capturing a panic's backtrace (`RUST_BACKTRACE`).
    Panicking,
    /// No evidence could be read.
    Unknown,
}

/// The fiber a [`StallKind::Deadlock`] waits for: parked on the stuck worker, with a
/// reference to the lock on its stack.
///
/// The deadlock below is real, so the runtime runs on a thread of its own and the example
/// ends its process once it has the report:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let rt = fibra::Runtime::builder()
///     .workers(1)
///     .stall_threshold(Duration::from_millis(20))
///     .on_stall(move |r: &fibra::StallReport| {
///         let _ = tx.send(r.clone());
///     })
///     .build()
///     .unwrap();
/// std::thread::spawn(move || {
///     rt.run(|| {
///         let m = Arc::new(Mutex::new(0));
///         let m2 = m.clone();
///         let holder = fibra::Builder::new().name("holder").spawn(move || {
///             let mut n = m2.lock().unwrap();
///             fibra::sleep(Duration::from_millis(1)); // parks, the guard held
///             *n += 1;
///         });
///         let holder = holder.unwrap();
///         while holder.fiber().park_reason() != fibra::ParkReason::Sleep {
///             fibra::yield_now();
///         }
///         *m.lock().unwrap() += 1; // blocks the one worker the holder can run on
///     })
/// });
/// let r = rx.recv().unwrap();
/// assert_eq!(r.kind, fibra::StallKind::Deadlock);
/// let holder = r.holder.unwrap();
/// assert_eq!(holder.fiber_name.as_deref(), Some("holder"));
/// assert!(r.futex.is_some() && !holder.stack.is_empty());
/// std::process::exit(0);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LockHolder {
    /// The holder's id.
    pub fiber_id: FiberId,
    /// Its name, if it has one.
    pub fiber_name: Option<String>,
    /// Where it was spawned.
    pub spawned_at: &'static Location<'static>,
    /// Its stack where it parked, innermost first, down to its entry: `function at
    /// file:line:col` (empty if it could not be unwound).
    pub stack: Vec<String>,
}

impl LockHolder {
    /// `fiber 42 "conn-17" (spawned at src/main.rs:31:5)`.
    fn who(&self) -> String {
        who(self.fiber_id, self.fiber_name.as_deref(), self.spawned_at)
    }
}

fn who(id: FiberId, name: Option<&str>, at: &Location<'_>) -> String {
    match name {
        Some(n) => format!("fiber {id} {n:?} (spawned at {at})"),
        None => format!("fiber {id} (spawned at {at})"),
    }
}

/// A worker that stayed inside one fiber run longer than the stall threshold; handed to the
/// [`on_stall`](crate::RuntimeBuilder::on_stall) hook once per episode, as it begins. Its
/// `Display` is the default report's first line.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let seen = Arc::new(Mutex::new(None));
/// let s2 = seen.clone();
/// let rt = fibra::Runtime::builder()
///     .workers(2)
///     .stall_threshold(std::time::Duration::from_millis(5))
///     .on_stall(move |r: &fibra::StallReport| {
///         *s2.lock().unwrap() = Some((r.fiber_name.clone(), r.kind))
///     })
///     .build()
///     .unwrap();
/// rt.run(|| {
///     let h = fibra::Builder::new().name("sleepy").spawn(|| {
///         std::thread::sleep(std::time::Duration::from_millis(100)) // blocks its worker
///     });
///     h.unwrap().join().unwrap();
/// });
/// let seen = seen.lock().unwrap().clone();
/// assert_eq!(seen, Some((Some("sleepy".to_string()), fibra::StallKind::Sleep)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StallReport {
    /// The stuck worker's index.
    pub worker: usize,
    /// The fiber it runs.
    pub fiber_id: FiberId,
    /// The fiber's name, if it has one.
    pub fiber_name: Option<String>,
    /// Where the fiber was spawned.
    pub spawned_at: &'static Location<'static>,
    /// How long the run has lasted so far (a lower bound).
    pub stuck_for: Duration,
    /// What the thread is doing, from the evidence below.
    pub kind: StallKind,
    /// CPU time the thread used since the run began, if its CPU clock could be read.
    pub cpu_time: Option<Duration>,
    /// The system call the thread sits in, with what it is on (`"futex"`,
    /// `"read on a socket"`, `"openat"`), if it sits in one.
    pub syscall: Option<String>,
    /// The address of the futex word the thread waits on, when it sits in a `futex` wait.
    pub futex: Option<usize>,
    /// For a [`StallKind::Deadlock`]: the fiber that holds the lock.
    pub holder: Option<LockHolder>,
    /// Other fibers pinned to this worker: they wait for it to come back.
    pub waiting: usize,
    /// Fibers the run spawned so far (a batch spawned from one run).
    pub spawned: u64,
    /// The state letter of `/proc/self/task/<tid>/stat`, if it could be read.
    pub thread_state: Option<char>,
    /// The stuck thread's stack when the stall began, innermost first, down to the fiber's
    /// entry: `function at file:line:col` (empty if it could not be taken, and for
    /// [`StallKind::Preempted`]: a thread waiting for a core is not stuck in its code).
    pub stack: Vec<String>,
}

impl StallReport {
    /// `fiber 42 "conn-17" (spawned at src/main.rs:31:5)`.
    pub(crate) fn who(&self) -> String {
        who(self.fiber_id, self.fiber_name.as_deref(), self.spawned_at)
    }

    /// The cause and the advice that fits it.
    pub(crate) fn cause(&self) -> String {
        let call = self.syscall.as_deref().unwrap_or("a system call");
        let cpu = |f: &mut String| {
            if let Some(c) = self.cpu_time {
                f.push_str(&format!(
                    " ({} ms on a CPU in {} ms)",
                    c.as_millis(),
                    self.stuck_for.as_millis()
                ));
            }
        };
        let futex = self
            .futex
            .map_or_else(|| "futex".to_owned(), |a| format!("futex {a:#x}"));
        let mut s = String::new();
        match self.kind {
            StallKind::Futex => s.push_str(&format!(
                "blocked on a std::sync lock or condvar ({futex}) while {} fibers wait on this \
                 worker; a std guard held across a fibra park deadlocks its worker: use fibra::sync",
                self.waiting
            )),
            StallKind::Deadlock => s.push_str(&format!(
                "deadlock: blocked on a std::sync lock ({futex}) that {} very likely holds \
                 (its stack points at the lock); it is parked on this same worker and can only \
                 run here, so neither will ever proceed: do not hold a std guard across a fibra \
                 park (sleep, channel, I/O, join), or use fibra::sync::Mutex",
                self.holder
                    .as_ref()
                    .map_or_else(|| "a fiber".to_owned(), LockHolder::who)
            )),
            StallKind::Socket => s.push_str(&format!(
                "blocked in a socket call ({call}): use fibra::net (sockets that park the fiber), \
                 the `hooks` feature (a library's own sockets park too), or call the client \
                 inside fibra::run_blocking"
            )),
            StallKind::File => s.push_str(&format!(
                "blocked on a file ({call}): use fibra::fs, or wrap it in fibra::run_blocking"
            )),
            StallKind::Sleep => s.push_str(
                "sleeping in std::thread::sleep: use fibra::sleep (or the `hooks` feature)",
            ),
            StallKind::Syscall => s.push_str(&format!(
                "blocked in a system call ({call}): wrap it in fibra::run_blocking"
            )),
            StallKind::CpuLoop => {
                s.push_str("a CPU loop");
                cpu(&mut s);
                s.push_str(": call fibra::yield_now or fibra::coop::consume_budget in it");
            }
            StallKind::Preempted => {
                s.push_str("runnable but waiting for a core");
                cpu(&mut s);
                s.push_str(": other threads or processes hold the CPUs; nothing in the fiber to fix");
            }
            StallKind::Spawning => s.push_str(&format!(
                "spawning fibers ({} in this run); none of them runs on this worker until the \
                 spawner parks or yields",
                self.spawned
            )),
            StallKind::Panicking => {
                s.push_str("capturing a panic's backtrace (RUST_BACKTRACE is set)");
            }
            StallKind::Unknown => {
                s.push_str(&format!("cause unknown (thread state {})", self.thread_state.unwrap_or('?')));
            }
        }
        s
    }
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fibra: worker {} stuck {} ms in {}: {}",
            self.worker,
            self.stuck_for.as_millis(),
            self.who(),
            self.cause()
        )?;
        for frame in &self.stack {
            write!(f, "\n    {frame}")?;
        }
        if let Some(h) = &self.holder {
            write!(f, "\n  {} holds the lock, parked at:", h.who())?;
            for frame in &h.stack {
                write!(f, "\n    {frame}")?;
            }
        }
        Ok(())
    }
}

/// Keeps a stuck thread's frames down to the fiber's entry (the trampoline and the worker
/// loop below it say nothing about the stall), as `function at file:line:col`.
pub(crate) fn fiber_frames(frames: Vec<(String, Option<String>)>) -> Vec<String> {
    let is_entry = |f: &str| {
        f.starts_with("corosensei::")
            || f.starts_with("fibra::fiber::switch::")
            || f.contains("fibra::fiber::join::Start")
            || f.starts_with("<fibra::fiber::join::Packet")
    };
    let is_signal = |f: &str| f.starts_with("fibra::sys::linux::capture::");
    // The closure shims between the entry and the fiber's code (catch_unwind and friends).
    let is_shim = |f: &str| {
        f.starts_with("std::panic")
            || f.starts_with("core::ops::function")
            || f.starts_with("__rust")
            || f.starts_with("<core::panic::unwind_safe")
            || f.starts_with("<alloc::boxed::Box<F")
            || f.starts_with("fibra::fiber::")
    };
    let mut kept: Vec<_> = frames
        .into_iter()
        .filter(|(f, _)| !is_signal(f))
        .take_while(|(f, _)| !is_entry(f))
        .collect();
    while kept.last().is_some_and(|(f, _)| is_shim(f)) {
        kept.pop();
    }
    kept.into_iter()
        .map(|(f, loc)| match loc {
            Some(l) => format!("{f} at {l}"),
            None => f,
        })
        .collect()
}

/// What the monitor read about a stuck thread, before it is judged.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evidence {
    pub(crate) cpu_time: Option<Duration>,
    /// Share of the wall time on a CPU or waiting in its run queue, over the second half of
    /// the threshold (`/proc/self/task/<tid>/schedstat`).
    pub(crate) runnable_share: Option<f64>,
    pub(crate) wall: Duration,
    pub(crate) syscall: Option<Syscall>,
    pub(crate) thread_state: Option<char>,
    pub(crate) spawned: u64,
    /// The spawn count moved since the monitor's last look (≥ threshold / 8 before).
    pub(crate) still_spawning: bool,
    pub(crate) panicking: bool,
}

/// A system call a thread sits in, with the kind of its first argument when that is an fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Syscall {
    pub(crate) nr: i64,
    /// The six arguments (the first: an fd, or a futex's address).
    pub(crate) args: [u64; 6],
    pub(crate) fd: Option<FdKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FdKind {
    Socket,
    Pipe,
    File(String),
    Other(String),
}

/// Spawns in one run that count as a batch (a handful is what ordinary request code does).
const SPAWN_BATCH: u64 = 16;

impl Evidence {
    /// Names the cause.
    pub(crate) fn judge(&self) -> StallKind {
        if self.panicking {
            return StallKind::Panicking;
        }
        let share = match (self.cpu_time, self.wall.as_secs_f64()) {
            (Some(c), w) if w > 0.0 => Some(c.as_secs_f64() / w),
            _ => None,
        };
        // A loop starved by other processes gets little CPU, but it is runnable all along.
        let busy = share.is_some_and(|s| s >= CPU_LOOP_SHARE)
            || self.runnable_share.is_some_and(|s| s >= RUNNABLE_SHARE)
                && self.cpu_time.is_none_or(|c| c >= LOOP_CPU);
        if busy && self.still_spawning && self.spawned >= SPAWN_BATCH {
            return StallKind::Spawning;
        }
        // Sitting in a call now, and not busy: the call is the cause. A busy thread seen in a
        // short call (a loop over `getpid`) is a CPU loop.
        match (&self.syscall, busy) {
            (Some(call), false) => return call.kind(),
            (_, true) => return StallKind::CpuLoop,
            (None, false) => {}
        }
        match (share, self.thread_state) {
            (Some(_), Some('R')) => StallKind::Preempted,
            (None, Some('R')) => StallKind::CpuLoop,
            (None, Some('S' | 'D')) => StallKind::Syscall,
            (Some(_), Some('S' | 'D')) => StallKind::Syscall,
            _ => StallKind::Unknown,
        }
    }
}

impl Syscall {
    fn kind(&self) -> StallKind {
        use libc::*;
        let socket_calls = [
            SYS_accept,
            SYS_accept4,
            SYS_connect,
            SYS_recvfrom,
            SYS_recvmsg,
            SYS_recvmmsg,
            SYS_sendto,
            SYS_sendmsg,
            SYS_sendmmsg,
            SYS_poll,
            SYS_ppoll,
            SYS_select,
            SYS_pselect6,
            SYS_epoll_wait,
            SYS_epoll_pwait,
            SYS_epoll_pwait2,
        ];
        let file_calls = [
            SYS_open,
            SYS_openat,
            SYS_openat2,
            SYS_stat,
            SYS_lstat,
            SYS_newfstatat,
            SYS_statx,
            SYS_fsync,
            SYS_fdatasync,
            SYS_sync,
            SYS_syncfs,
            SYS_flock,
            SYS_unlink,
            SYS_unlinkat,
            SYS_rename,
            SYS_renameat,
            SYS_renameat2,
            SYS_mkdir,
            SYS_mkdirat,
            SYS_getdents64,
            SYS_truncate,
            SYS_ftruncate,
            SYS_fallocate,
        ];
        let fd_calls = [
            SYS_read,
            SYS_write,
            SYS_readv,
            SYS_writev,
            SYS_pread64,
            SYS_pwrite64,
            SYS_preadv,
            SYS_pwritev,
            SYS_preadv2,
            SYS_pwritev2,
            SYS_sendfile,
            SYS_splice,
        ];
        match self.nr {
            n if n == SYS_futex || n == SYS_futex_waitv => StallKind::Futex,
            n if n == SYS_nanosleep || n == SYS_clock_nanosleep => StallKind::Sleep,
            n if socket_calls.contains(&n) => StallKind::Socket,
            n if file_calls.contains(&n) => StallKind::File,
            n if fd_calls.contains(&n) => match &self.fd {
                Some(FdKind::Socket) => StallKind::Socket,
                Some(FdKind::File(_)) => StallKind::File,
                _ => StallKind::Syscall,
            },
            _ => StallKind::Syscall,
        }
    }

    /// The futex word's address, when this is a `futex` wait with no timeout (`FUTEX_WAIT` or
    /// `FUTEX_WAIT_BITSET`, which std's locks use): a wait only a wake ends.
    pub(crate) fn untimed_futex_wait(&self) -> Option<usize> {
        let op = self.args[1] as i32 & libc::FUTEX_CMD_MASK;
        let wait = op == libc::FUTEX_WAIT || op == libc::FUTEX_WAIT_BITSET;
        (self.nr == libc::SYS_futex && wait && self.args[3] == 0).then_some(self.args[0] as usize)
    }

    /// `"futex"`, `"read on a socket"`, `"read on /var/log/x"`, `"syscall 61"`.
    pub(crate) fn describe(&self) -> String {
        let name =
            syscall_name(self.nr).map_or_else(|| format!("syscall {}", self.nr), str::to_owned);
        match &self.fd {
            Some(FdKind::Socket) => format!("{name} on a socket"),
            Some(FdKind::Pipe) => format!("{name} on a pipe"),
            Some(FdKind::File(p)) => format!("{name} on {p}"),
            Some(FdKind::Other(p)) => format!("{name} on {p}"),
            None => name,
        }
    }
}

fn syscall_name(nr: i64) -> Option<&'static str> {
    use libc::*;
    let names: [(i64, &str); 34] = [
        (SYS_read, "read"),
        (SYS_write, "write"),
        (SYS_readv, "readv"),
        (SYS_writev, "writev"),
        (SYS_pread64, "pread64"),
        (SYS_pwrite64, "pwrite64"),
        (SYS_futex, "futex"),
        (SYS_nanosleep, "nanosleep"),
        (SYS_clock_nanosleep, "clock_nanosleep"),
        (SYS_accept, "accept"),
        (SYS_accept4, "accept4"),
        (SYS_connect, "connect"),
        (SYS_recvfrom, "recvfrom"),
        (SYS_recvmsg, "recvmsg"),
        (SYS_sendto, "sendto"),
        (SYS_sendmsg, "sendmsg"),
        (SYS_poll, "poll"),
        (SYS_ppoll, "ppoll"),
        (SYS_select, "select"),
        (SYS_pselect6, "pselect6"),
        (SYS_epoll_wait, "epoll_wait"),
        (SYS_epoll_pwait, "epoll_pwait"),
        (SYS_open, "open"),
        (SYS_openat, "openat"),
        (SYS_fsync, "fsync"),
        (SYS_fdatasync, "fdatasync"),
        (SYS_flock, "flock"),
        (SYS_wait4, "wait4"),
        (SYS_waitid, "waitid"),
        (SYS_fcntl, "fcntl"),
        (SYS_ioctl, "ioctl"),
        (SYS_sendfile, "sendfile"),
        (SYS_splice, "splice"),
        (SYS_newfstatat, "newfstatat"),
    ];
    names.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s)
}

/// The system call thread `tid` of this process sits in, or `None` when it runs in user space
/// (`running`) or is stopped outside a call (`-1`). `man 5 proc`: `/proc/pid/syscall`.
pub(crate) fn syscall_of(tid: i32) -> Option<Syscall> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    parse_syscall(&text, fd_kind)
}

fn parse_syscall(text: &str, fd_kind: impl Fn(u64) -> Option<FdKind>) -> Option<Syscall> {
    let mut fields = text.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    }
    let arg0 = args[0];
    let takes_fd = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_preadv,
        libc::SYS_pwritev,
        libc::SYS_preadv2,
        libc::SYS_pwritev2,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_flock,
        libc::SYS_ioctl,
        libc::SYS_fcntl,
    ];
    let fd = takes_fd.contains(&nr).then(|| fd_kind(arg0)).flatten();
    Some(Syscall { nr, args, fd })
}

/// What fd `fd` of this process is (`/proc/self/fd/<fd>` links to `socket:[ino]`, a path, ...).
fn fd_kind(fd: u64) -> Option<FdKind> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let t = target.to_string_lossy().into_owned();
    Some(if t.starts_with("socket:") {
        FdKind::Socket
    } else if t.starts_with("pipe:") {
        FdKind::Pipe
    } else if t.starts_with('/') {
        FdKind::File(t)
    } else {
        FdKind::Other(t)
    })
}

/// CPU time and run-queue wait of thread `tid` of this process
/// (`/proc/self/task/<tid>/schedstat`: nanoseconds on a CPU, nanoseconds waiting, slices).
pub(crate) fn sched_stat(tid: i32) -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((
        Duration::from_nanos(f.next()??),
        Duration::from_nanos(f.next()??),
    ))
}

/// The state letter of a thread of this process (`man 5 proc`: the field after `(comm)`).
pub(crate) fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// The calling thread's CPU clock, for another thread to read (`pthread_getcpuclockid`); -1
/// if there is none.
pub(crate) fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is the calling, live thread; `clock` is a valid out-pointer.
    match unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } {
        0 => clock,
        _ => -1,
    }
}

/// CPU time a thread's clock shows; `None` for -1 or a thread that exited (`EINVAL`).
pub(crate) fn cpu_time(clock: libc::clockid_t) -> Option<Duration> {
    if clock == -1 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; a stale clock id only makes the call fail.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cpu_ms: u64, wall_ms: u64, call: Option<Syscall>, state: char) -> Evidence {
        Evidence {
            cpu_time: Some(Duration::from_millis(cpu_ms)),
            runnable_share: None,
            wall: Duration::from_millis(wall_ms),
            syscall: call,
            thread_state: Some(state),
            spawned: 0,
            still_spawning: false,
            panicking: false,
        }
    }

    fn call(nr: i64, fd: Option<FdKind>) -> Option<Syscall> {
        Some(Syscall {
            nr,
            args: [3, 0, 0, 0, 0, 0],
            fd,
        })
    }

    #[test]
    fn a_runnable_thread_that_used_no_cpu_is_not_a_cpu_loop() {
        // The redis case: just woken from a socket read, state R, in no call right now.
        assert_eq!(ev(1, 100, None, 'R').judge(), StallKind::Preempted);
        assert_eq!(ev(90, 100, None, 'R').judge(), StallKind::CpuLoop);
        // Starved by other processes, a loop still gets a fair share of a core.
        assert_eq!(ev(30, 100, None, 'R').judge(), StallKind::CpuLoop);
        // Starved harder, it is still runnable all along.
        let mut starved = ev(8, 100, None, 'R');
        starved.runnable_share = Some(0.95);
        assert_eq!(starved.judge(), StallKind::CpuLoop);
        // Runnable all along but never on a core: nothing says it loops.
        let mut never_ran = ev(0, 12, None, 'R');
        never_ran.runnable_share = Some(1.0);
        assert_eq!(never_ran.judge(), StallKind::Preempted);
    }

    #[test]
    fn the_call_names_the_cause() {
        let socket = Some(FdKind::Socket);
        assert_eq!(
            ev(0, 50, call(libc::SYS_read, socket.clone()), 'S').judge(),
            StallKind::Socket
        );
        assert_eq!(
            ev(0, 50, call(libc::SYS_recvfrom, None), 'R').judge(),
            StallKind::Socket
        );
        let file = Some(FdKind::File("/tmp/x".into()));
        assert_eq!(
            ev(0, 50, call(libc::SYS_read, file), 'D').judge(),
            StallKind::File
        );
        assert_eq!(
            ev(0, 50, call(libc::SYS_futex, None), 'S').judge(),
            StallKind::Futex
        );
        assert_eq!(
            ev(0, 50, call(libc::SYS_nanosleep, None), 'S').judge(),
            StallKind::Sleep
        );
        assert_eq!(
            ev(0, 50, call(libc::SYS_wait4, None), 'S').judge(),
            StallKind::Syscall
        );
        // Busy, seen in a short call: still a loop.
        assert_eq!(
            ev(45, 50, call(libc::SYS_getpid, None), 'R').judge(),
            StallKind::CpuLoop
        );
    }

    #[test]
    fn spawning_and_panicking_are_told_apart() {
        let mut e = ev(40, 50, None, 'R');
        e.spawned = 1000;
        assert_eq!(e.judge(), StallKind::CpuLoop); // spawned a batch, then looped
        e.still_spawning = true;
        assert_eq!(e.judge(), StallKind::Spawning);
        e.panicking = true;
        assert_eq!(e.judge(), StallKind::Panicking);
    }

    #[test]
    fn parses_proc_syscall() {
        let c = parse_syscall("202 0x7f00 0x80 0x2 0x0 0x0 0x0 0x7ffd 0x7f01\n", |_| None).unwrap();
        assert_eq!((c.nr, c.args[0]), (libc::SYS_futex, 0x7f00));
        assert_eq!(c.describe(), "futex");
        // FUTEX_WAIT | FUTEX_PRIVATE_FLAG with no timeout: a wait only a wake ends.
        assert_eq!(c.untimed_futex_wait(), Some(0x7f00));
        // std's FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG (0x89), with and without a timeout.
        let bitset = parse_syscall(
            "202 0x7f08 0x89 0x2 0x0 0x0 0xffffffff 0x7ffd 0x7f01",
            |_| None,
        );
        assert_eq!(bitset.unwrap().untimed_futex_wait(), Some(0x7f08));
        let timed = parse_syscall(
            "202 0x7f08 0x89 0x2 0x7ffc 0x0 0xffffffff 0x7ffd 0x7f01",
            |_| None,
        );
        assert_eq!(timed.unwrap().untimed_futex_wait(), None);
        // A wake is no wait.
        let wake = parse_syscall("202 0x7f08 0x81 0x1 0x0 0x0 0x0 0x7ffd 0x7f01", |_| None);
        assert_eq!(wake.unwrap().untimed_futex_wait(), None);
        let r = parse_syscall("0 0x5 0x1 0x2 0 0 0 0 0", |_| Some(FdKind::Socket)).unwrap();
        assert_eq!(r.describe(), "read on a socket");
        assert_eq!(parse_syscall("running\n", |_| None), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f01\n", |_| None), None);
    }
}
