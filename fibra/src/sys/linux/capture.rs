//! A running thread's registers and the live part of its stack, copied by the thread itself in
//! a signal handler, for another thread to unwind (ARCHITECTURE.md §9, "A stuck thread's
//! stack"). The process is not stopped: only the target thread is interrupted, for one copy.
//!
//! # Protocol (one request at a time; `REQUEST_LOCK` serialises requesters)
//! ```text
//! requester:  state IDLE → ASKED (Release), tgkill(tid, CAPTURE_SIGNAL), wait ≤ timeout for DONE
//! handler:    tid == gettid()?  CAS ASKED → WRITING, copy regs + [sp, top), state = DONE (Release)
//! requester:  DONE (Acquire) → read the copy, state = IDLE;  timeout → CAS ASKED → IDLE, or, if the
//!             handler is WRITING, wait for DONE (it copies at most `STACK_COPY` bytes, no wait)
//! ```
//! The handler touches only atomics, the static buffer and `gettid`: async-signal-safe. It does
//! not unwind (that needs the unwind tables, allocation and time): the requester does, on the
//! copy, outside the signal.
//!
//! Where the live stack ends: the requester names the target thread's own stack (recorded by
//! the thread at its start); a fiber's stack is found by the `stack_top` policy (an
//! async-signal-safe lookup in the stack registry). A stack pointer in neither gives registers
//! only.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// Bytes of stack copied from the stack pointer up: 64 KiB holds the frames of a deep Rust
/// call chain (~200 frames of ~300 bytes) and costs ~5 µs to copy.
pub(crate) const STACK_COPY: usize = 64 * 1024;

/// The signal that asks for a copy: a real-time signal (queued, never merged with another
/// meaning), counted from the top of the range that glibc leaves to programs.
pub(crate) fn capture_signal() -> libc::c_int {
    libc::SIGRTMAX() - 3
}

/// Finds the top (highest address, exclusive) of the fiber stack holding `sp`.
/// Async-signal-safe.
pub(crate) type StackTop = fn(sp: usize) -> Option<usize>;

static STACK_TOP: OnceLock<StackTop> = OnceLock::new();

const IDLE: u8 = 0;
const ASKED: u8 = 1;
const WRITING: u8 = 2;
const DONE: u8 = 3;

struct Request {
    state: AtomicU8,
    tid: AtomicI32,
    /// The target thread's own stack, `[lo, hi)`.
    thread_lo: AtomicUsize,
    thread_hi: AtomicUsize,
    ip: AtomicU64,
    sp: AtomicU64,
    bp: AtomicU64,
    len: AtomicUsize,
    buf: UnsafeCell<[u8; STACK_COPY]>,
}

// SAFETY: `buf` is written only by the handler between its CAS ASKED → WRITING and its
// Release store of DONE, and read only by the requester after its Acquire load of DONE and
// before it stores IDLE; `REQUEST_LOCK` admits one requester at a time.
unsafe impl Sync for Request {}

static REQUEST: Request = Request {
    state: AtomicU8::new(IDLE),
    tid: AtomicI32::new(0),
    thread_lo: AtomicUsize::new(0),
    thread_hi: AtomicUsize::new(0),
    ip: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    bp: AtomicU64::new(0),
    len: AtomicUsize::new(0),
    buf: UnsafeCell::new([0; STACK_COPY]),
};
static REQUEST_LOCK: Mutex<()> = Mutex::new(());

/// What the handler copied.
pub(crate) struct Snapshot {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
    /// The bytes at `[sp, sp + stack.len())`.
    pub(crate) stack: Vec<u8>,
}

/// Installs the capture handler (once per process). `stack_top` finds fiber stacks.
pub(crate) fn install_capture_handler(stack_top: StackTop) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = STACK_TOP.set(stack_top);
        // SAFETY: all-zero is a valid `sigaction` (empty mask, no flags).
        let mut new: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
        let action: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_capture;
        new.sa_sigaction = action as usize;
        // SA_RESTART: the interrupted call (a futex wait, a socket read) resumes as if nothing
        // happened. SA_ONSTACK: the handler's few hundred bytes come off the alternate stack.
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        // SAFETY: `on_capture` has the `SA_SIGINFO` signature and is async-signal-safe (see
        // there); the signal is ours (`capture_signal`).
        unsafe { libc::sigaction(capture_signal(), &new, ptr::null_mut()) };
    });
}

/// The calling thread's own stack, `[lo, hi)` (`pthread_getattr_np`). Call at thread start;
/// `None` if it cannot be read.
pub(crate) fn own_stack_bounds() -> Option<(usize, usize)> {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::zeroed();
    // SAFETY: `attr` is valid storage for the attributes of the calling, live thread.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) } != 0 {
        return None;
    }
    let (mut addr, mut size) = (ptr::null_mut(), 0usize);
    // SAFETY: `attr` was initialised by the successful call above; out-pointers are valid.
    let got = unsafe { libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size) };
    // SAFETY: initialised above and destroyed once.
    unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
    (got == 0).then(|| (addr as usize, addr as usize + size))
}

/// Asks thread `tid` of this process, whose own stack is `thread_stack`, for a copy of its
/// registers and live stack; waits up to `timeout` for the handler. Any thread but `tid`.
/// `None` if the handler is not installed, the thread is gone, or it did not answer in time
/// (it blocks the signal, or it is stopped).
pub(crate) fn capture_thread(
    tid: i32,
    thread_stack: Option<(usize, usize)>,
    timeout: Duration,
) -> Option<Snapshot> {
    STACK_TOP.get()?;
    let _one = REQUEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let r = &REQUEST;
    let (lo, hi) = thread_stack.unwrap_or((0, 0));
    r.tid.store(tid, Relaxed);
    r.thread_lo.store(lo, Relaxed);
    r.thread_hi.store(hi, Relaxed);
    r.state.store(ASKED, Release); // publishes the fields above; pairs with the handler's CAS
                                   // SAFETY: `tgkill` sends a signal to one thread of our own process; a stale tid fails.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, capture_signal()) };
    if sent != 0 {
        r.state.store(IDLE, Relaxed);
        return None;
    }
    let deadline = Instant::now() + timeout;
    loop {
        // Acquire pairs with the handler's Release store of DONE: the copy is complete.
        match r.state.load(Acquire) {
            DONE => break,
            WRITING => {} // it is copying: bounded work, wait for it
            _ if Instant::now() >= deadline => {
                // Withdraw; a handler running later finds no ASKED and returns at once.
                if r.state
                    .compare_exchange(ASKED, IDLE, Relaxed, Relaxed)
                    .is_ok()
                {
                    return None;
                }
                continue;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let len = r.len.load(Relaxed).min(STACK_COPY);
    // SAFETY: state DONE (Acquire above) means the handler finished writing `buf[..len]` and
    // nobody writes it again before we store IDLE (see `unsafe impl Sync`).
    let stack = unsafe { (&(*r.buf.get()))[..len].to_vec() };
    let snap = Snapshot {
        ip: r.ip.load(Relaxed),
        sp: r.sp.load(Relaxed),
        bp: r.bp.load(Relaxed),
        stack,
    };
    r.state.store(IDLE, Release);
    Some(snap)
}

/// The capture handler. Async-signal-safe: `gettid` (a raw syscall), atomics, a bounded copy
/// of this thread's own stack into the static buffer. It saves and restores `errno`.
extern "C" fn on_capture(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let r = &REQUEST;
    // SAFETY: `gettid` has no preconditions; a raw syscall touches no libc state.
    let me = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    if r.tid.load(Relaxed) != me {
        return; // a late signal, or someone else's
    }
    // Acquire pairs with the requester's Release store of ASKED: the bounds are visible.
    if r.state
        .compare_exchange(ASKED, WRITING, Acquire, Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: for an `SA_SIGINFO` handler the kernel passes a valid `ucontext_t` whose
    // general registers are those of the interrupted code.
    let (ip, sp, bp) = unsafe {
        let uc = &*(ctx as *const libc::ucontext_t);
        let g = &uc.uc_mcontext.gregs;
        (
            g[libc::REG_RIP as usize] as u64,
            g[libc::REG_RSP as usize] as u64,
            g[libc::REG_RBP as usize] as u64,
        )
    };
    let spu = sp as usize;
    let (lo, hi) = (r.thread_lo.load(Relaxed), r.thread_hi.load(Relaxed));
    let top = if lo <= spu && spu < hi {
        Some(hi)
    } else {
        STACK_TOP.get().and_then(|f| f(spu))
    };
    let len = top.map_or(0, |t| t.saturating_sub(spu).min(STACK_COPY));
    // Under AddressSanitizer (the ASan gate builds with `--cfg fibra_asan`) a raw copy of a
    // live stack reads the redzones ASan poisons between frames and is reported as an error:
    // no stack is copied there, and the report goes without one.
    let len = if cfg!(fibra_asan) { 0 } else { len };
    // SAFETY: `[sp, sp + len)` lies inside this thread's live stack (its own, or the fiber
    // slot holding `sp`), which is mapped while we run on it; `buf` is ours between the CAS
    // above and the DONE store below (see `unsafe impl Sync`), and has room for `len`.
    unsafe { ptr::copy_nonoverlapping(spu as *const u8, (*r.buf.get()).as_mut_ptr(), len) };
    r.ip.store(ip, Relaxed);
    r.sp.store(sp, Relaxed);
    r.bp.store(bp, Relaxed);
    r.len.store(len, Relaxed);
    r.state.store(DONE, Release); // publishes the copy; pairs with the requester's Acquire
}
