//! Dump on a signal (`RuntimeBuilder::dump_on_signal`), like Go's `SIGQUIT`.
//!
//! ```text
//! signal handler:  write(pipe, 1)          (async-signal-safe: one atomic load, one write)
//! dump thread:     read(pipe) → dump the session → write it to stderr or the file
//! session end:     restore the previous handler, write(pipe, 0), join the thread (Drop)
//! ```
//! The dump thread is a plain thread, so running fibers are not stopped: parked ones get one
//! spurious wake-up each to capture their stacks (see `fibra::debug`). One session at a time
//! may own the signal dump (the handler finds the pipe through a static).

use std::ffi::c_int;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering::*};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::{dump, DEFAULT_CAPTURE_TIMEOUT};
use crate::sched::Shared;

/// The write end of the owning session's pipe, or -1.
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

/// Byte the handler writes: dump. A 0 byte (from `uninstall`) stops the thread.
const DUMP: u8 = 1;
const STOP: u8 = 0;

/// Signals a dump may not take: uncatchable, or fibra's and std's fault handling.
const REFUSED: [c_int; 6] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
];

/// True if `sig` can carry a dump request (not one of [`REFUSED`], nor the signal that asks a
/// stuck worker for its stack, `sys::capture_signal`).
pub(crate) fn valid_signal(sig: c_int) -> bool {
    (1..=libc::SIGRTMAX()).contains(&sig)
        && !REFUSED.contains(&sig)
        && sig != crate::sys::capture_signal()
}

/// Where a signal dump goes.
#[derive(Debug, Clone)]
pub(crate) struct SignalDumpConfig {
    pub(crate) signal: c_int,
    /// Appended to; stderr when `None`.
    pub(crate) file: Option<PathBuf>,
}

/// An installed signal dump; dropping it uninstalls it (the session's end).
pub(crate) struct SignalDump {
    signal: c_int,
    previous: libc::sigaction,
    wr: c_int,
    thread: Option<JoinHandle<()>>,
    /// `previous` holds a real action to restore.
    installed: bool,
}

extern "C" fn on_signal(_: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot; saving and restoring it
    // keeps the interrupted code's errno intact (the `write` below may change it).
    let errno = unsafe { *libc::__errno_location() };
    let fd = PIPE_WR.load(Relaxed);
    if fd >= 0 {
        // SAFETY: `write` is async-signal-safe; the byte lives on our stack. A full pipe
        // (non-blocking) means a dump is pending anyway.
        unsafe { libc::write(fd, ptr::from_ref(&DUMP).cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Session start: installs the handler and starts the dump thread.
///
/// # Errors
/// Another session owns the signal dump, or a pipe, thread or `sigaction` call failed.
pub(crate) fn install(cfg: &SignalDumpConfig, shared: &Arc<Shared>) -> io::Result<SignalDump> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [rd, wr] = fds;
    let close_both = || {
        // SAFETY: both descriptors are ours and not used afterwards.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
    };
    // The read end blocks (the thread waits on it); only the handler's end is non-blocking.
    // SAFETY: `rd` is a descriptor we own.
    unsafe { libc::fcntl(rd, libc::F_SETFL, 0) };
    if PIPE_WR.compare_exchange(-1, wr, AcqRel, Relaxed).is_err() {
        close_both();
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another fibra runtime session already dumps on a signal",
        ));
    }
    let shared2 = shared.clone();
    let file = cfg.file.clone();
    let thread = thread::Builder::new()
        .name(format!("{}-dump", shared.config.thread_name))
        .spawn(move || dump_thread(rd, &shared2, file));
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            PIPE_WR.store(-1, Release);
            close_both();
            return Err(e);
        }
    };
    let mut previous = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a zeroed `sigaction` is valid; we fill the handler and an empty mask.
    let mut action: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    action.sa_sigaction = on_signal as extern "C" fn(c_int) as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid `sigset_t` to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised and `previous` has room for the old action.
    if unsafe { libc::sigaction(cfg.signal, &action, previous.as_mut_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        drop(SignalDump {
            signal: cfg.signal,
            // SAFETY: zeroed is a valid (default) action; it is never installed (below).
            previous: unsafe { previous.assume_init() },
            wr,
            thread: Some(thread),
            installed: false,
        }); // stops the thread
        return Err(e);
    }
    Ok(SignalDump {
        signal: cfg.signal,
        // SAFETY: `sigaction` succeeded, so it wrote the previous action.
        previous: unsafe { previous.assume_init() },
        wr,
        thread: Some(thread),
        installed: true,
    })
}

impl Drop for SignalDump {
    /// Session end: puts the previous handler back, stops and joins the dump thread.
    fn drop(&mut self) {
        if self.installed {
            // SAFETY: `previous` is the action `sigaction` returned when we installed ours.
            unsafe { libc::sigaction(self.signal, &self.previous, ptr::null_mut()) };
        }
        self.stop_thread();
    }
}

impl SignalDump {
    fn stop_thread(&mut self) {
        PIPE_WR.store(-1, Release); // a late signal now writes nowhere
                                    // SAFETY: `wr` is our descriptor; the byte lives on our stack. The pipe has room: the
                                    // thread drains it, and a full pipe only holds dump requests it will read first.
        let wrote = unsafe { libc::write(self.wr, ptr::from_ref(&STOP).cast(), 1) };
        // SAFETY: `wr` is ours; the handler no longer sees it. Closing it also stops the
        // thread (EOF) if the write above found the pipe full.
        unsafe { libc::close(self.wr) };
        let _ = wrote;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Body of the dump thread: one dump per request byte, until STOP or EOF.
fn dump_thread(rd: c_int, shared: &Arc<Shared>, file: Option<PathBuf>) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is ours and `rd` is our descriptor.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 || buf[..n as usize].contains(&STOP) {
            break;
        }
        // Several signals at once make one dump.
        let mut d = dump::Dump::default();
        dump::dump_session(shared, DEFAULT_CAPTURE_TIMEOUT, &mut d);
        dump::finish(&mut d);
        let text = format!("{d}\n");
        let written = match &file {
            Some(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes())),
            None => io::stderr().write_all(text.as_bytes()),
        };
        if let Err(e) = written {
            let _ = writeln!(io::stderr(), "fibra: cannot write the signal dump: {e}");
        }
    }
    // SAFETY: `rd` is ours and no longer used.
    unsafe { libc::close(rd) };
}
