//! Fault signals: one `SIGSEGV`/`SIGBUS` handler that asks fibra's policy first and chains to
//! whatever handler was installed before (std's own stack-overflow handler, a sanitizer, ...).
//!
//! Everything reachable from [`trampoline`] is async-signal-safe: atomics, reads of memory
//! written before the handler was installed, `write`, `sigaction`. No allocation, no locks.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::{Once, OnceLock};

use super::mem;

/// Called with the faulting address. Returns `false` if the fault is not fibra's (the
/// previous handler then runs); for fibra's own faults it reports and aborts, never returning.
pub(crate) type FaultHandler = fn(fault_addr: usize) -> bool;

static POLICY: OnceLock<FaultHandler> = OnceLock::new();

const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The handler that was installed before ours, one per entry of [`SIGNALS`].
struct Previous {
    action: UnsafeCell<MaybeUninit<libc::sigaction>>,
    /// Set once `action` is written; never cleared.
    ready: AtomicBool,
}

// SAFETY: `action` is written once, inside `INSTALL.call_once`, before `ready` is set with
// Release; readers load `ready` with Acquire first and only read afterwards, never write.
unsafe impl Sync for Previous {}

static PREVIOUS: [Previous; 2] = [Previous::EMPTY, Previous::EMPTY];

impl Previous {
    #[allow(clippy::declare_interior_mutable_const)] // only used to initialise `PREVIOUS`
    const EMPTY: Previous = Previous {
        action: UnsafeCell::new(MaybeUninit::uninit()),
        ready: AtomicBool::new(false),
    };

    fn get(&self) -> Option<&libc::sigaction> {
        // Acquire pairs with the Release store in `install_fault_handler`: `action` is written.
        if !self.ready.load(Acquire) {
            return None;
        }
        // SAFETY: `ready` is set only after `action` was fully written, and it is never
        // written again (see `unsafe impl Sync`).
        Some(unsafe { (*self.action.get()).assume_init_ref() })
    }
}

/// Installs the `SIGSEGV` and `SIGBUS` handler (`SA_SIGINFO | SA_ONSTACK`) that consults
/// `policy`. Idempotent: only the first call's `policy` is used. Any thread.
pub(crate) fn install_fault_handler(policy: FaultHandler) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = POLICY.set(policy);
        for (sig, prev) in SIGNALS.iter().zip(&PREVIOUS) {
            // Read the old action first and publish it, then install ours: a fault arriving
            // in between still finds the handler it must chain to.
            let mut old = MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: a query with a valid out-pointer and no new action.
            if unsafe { libc::sigaction(*sig, ptr::null(), old.as_mut_ptr()) } != 0 {
                continue;
            }
            // SAFETY: we are inside `call_once` and `ready` is still false, so no reader
            // looks at `action` yet.
            unsafe { (*prev.action.get()).write(old.assume_init()) };
            prev.ready.store(true, Release); // pairs with the Acquire load in `Previous::get`

            // SAFETY: all-zero is a valid `sigaction` (empty mask, no flags).
            let mut new: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
            let action: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                trampoline;
            new.sa_sigaction = action as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `trampoline` has the `SA_SIGINFO` signature and is async-signal-safe.
            unsafe { libc::sigaction(*sig, &new, ptr::null_mut()) };
        }
    });
}

extern "C" fn trampoline(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler, and for
    // SIGSEGV/SIGBUS `si_addr` is the field it filled in.
    let addr = unsafe { (*info).si_addr() } as usize;
    if POLICY.get().is_some_and(|policy| policy(addr)) {
        return;
    }
    // SAFETY: forwarding exactly the arguments the kernel gave us.
    unsafe { chain_fault(sig, info, ctx) };
}

/// Runs the handler that was installed before ours. If that was `SIG_DFL` (or `SIG_IGN`, which
/// would loop on a synchronous fault), restores `SIG_DFL` and returns, so the faulting
/// instruction runs again and the default action (core dump) happens with the right signal.
///
/// # Safety
/// Only from inside a handler for `sig`, with the kernel's `info` and `ctx`.
unsafe fn chain_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = SIGNALS
        .iter()
        .position(|s| *s == sig)
        .and_then(|i| PREVIOUS[i].get());
    match prev {
        Some(old) if old.sa_flags & libc::SA_SIGINFO != 0 => {
            type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
            // SAFETY: with `SA_SIGINFO` set, `sa_sigaction` holds a three-argument handler
            // (that is how it was installed); we call it the way the kernel would have.
            let f: Action = unsafe { std::mem::transmute::<usize, Action>(old.sa_sigaction) };
            f(sig, info, ctx);
        }
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            type Handler = extern "C" fn(libc::c_int);
            // SAFETY: without `SA_SIGINFO`, `sa_handler` (same field) is a one-argument
            // handler that is neither `SIG_DFL` nor `SIG_IGN` (checked above).
            let f: Handler = unsafe { std::mem::transmute::<usize, Handler>(old.sa_sigaction) };
            f(sig);
        }
        _ => {
            // SAFETY: all-zero is a valid `sigaction`; `sa_sigaction` 0 is `SIG_DFL`.
            let dfl: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
            // SAFETY: installing `SIG_DFL` is async-signal-safe and has no preconditions.
            unsafe { libc::sigaction(sig, &dfl, ptr::null_mut()) };
        }
    }
}

/// Writes all of `bytes` to stderr with plain `write(2)`. Async-signal-safe; errors are dropped
/// (there is nowhere left to report them).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(0) => return,
            Ok(n) => bytes = &bytes[n..],
            Err(_) if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Alternate signal stack size for threads that have none. The handler formats one line in
/// a small buffer; 64 KiB leaves room for a chained handler (std's symbolises nothing, but
/// sanitizers' handlers are hungrier). Only touched pages cost memory.
const ALT_STACK_SIZE: usize = 64 * 1024;

/// An alternate signal stack that this module mapped, freed when its thread exits.
struct AltStack {
    map: std::ptr::NonNull<u8>,
    len: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let off = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disables this thread's alternate stack before we unmap it; the argument is a
        // valid `stack_t`.
        unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
        // SAFETY: `map` came from `mem::reserve(len)` and the kernel no longer refers to it.
        let _ = unsafe { mem::release(self.map, self.len) };
    }
}

/// Gives the calling thread an alternate signal stack if it has none, so that the fault
/// handler can run when the fault is a stack overflow. std-spawned threads already have one
/// (then this is one `sigaltstack` query). Idempotent; the stack is freed at thread exit.
pub(crate) fn ensure_alt_stack() -> std::io::Result<()> {
    thread_local! {
        static ALT: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
    }
    let mut current = MaybeUninit::<libc::stack_t>::zeroed();
    // SAFETY: a query with a valid out-pointer and no new stack.
    if unsafe { libc::sigaltstack(ptr::null(), current.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `sigaltstack` succeeded and filled `current`.
    if unsafe { current.assume_init() }.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    let page = mem::page_size();
    let size = ALT_STACK_SIZE.max(libc::SIGSTKSZ).next_multiple_of(page);
    let map = mem::reserve(page + size)?;
    let alt = AltStack {
        map,
        len: page + size,
    };
    // SAFETY: the lowest page of our fresh mapping holds nothing; a guard there turns an
    // overflow of the signal stack into a fault instead of silent corruption.
    if unsafe { mem::guard_madvise(map, page) }.is_err() {
        // SAFETY: as above.
        unsafe { mem::guard_mprotect(map, page) }?;
    }
    let stack = libc::stack_t {
        // SAFETY: `page < page + size`, inside the mapping.
        ss_sp: unsafe { map.as_ptr().add(page) }.cast(),
        ss_flags: 0,
        ss_size: size,
    };
    // SAFETY: `stack` describes writable memory that `ALT` keeps mapped until it is disabled.
    if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ALT.with(|slot| {
        // A previous stack of ours that someone else disabled: leak it rather than let its
        // `Drop` disable the stack we just installed.
        if let Some(old) = slot.borrow_mut().replace(alt) {
            std::mem::forget(old);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt_stack_enabled() -> bool {
        let mut cur = MaybeUninit::<libc::stack_t>::zeroed();
        // SAFETY: a query with a valid out-pointer.
        let ret = unsafe { libc::sigaltstack(ptr::null(), cur.as_mut_ptr()) };
        assert_eq!(ret, 0);
        // SAFETY: filled by the successful call.
        unsafe { cur.assume_init() }.ss_flags & libc::SS_DISABLE == 0
    }

    #[test]
    fn ensure_alt_stack_gives_a_thread_one() {
        std::thread::spawn(|| {
            let off = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling this thread's alternate stack (std's stays mapped until exit).
            assert_eq!(unsafe { libc::sigaltstack(&off, ptr::null_mut()) }, 0);
            assert!(!alt_stack_enabled());
            ensure_alt_stack().unwrap();
            assert!(alt_stack_enabled());
            ensure_alt_stack().unwrap(); // idempotent
        })
        .join()
        .unwrap();
    }
}
