//! # Valgrind client requests (`cfg(fibra_valgrind)`)
//!
//! Memcheck follows the stack pointer: when it drops, the new frames become addressable (and
//! undefined); when it rises, the memory left below it becomes unaddressable. A jump from one
//! stack to another that valgrind does not know as a stack looks like a huge frame being pushed
//! or popped, and repaints every byte in between (a default build under valgrind reports
//! ~170k errors in `tests/chan_api.rs` alone). [`register_stack`] tells valgrind that such a
//! jump is a switch; [`mark_undefined`] and [`mark_noaccess`] tell memcheck what memory holds.
//! When `stack` sends which, and what that catches, is written in `stack/mod.rs`.
//!
//! A request is a magic instruction sequence (valgrind.h, `VALGRIND_DO_CLIENT_REQUEST_EXPR`)
//! that does nothing on hardware. It is emitted only in builds with `--cfg fibra_valgrind` on
//! x86_64 (`scripts/valgrind.sh` builds them); every other build gets the no-op twin of
//! [`client_request`], which inlines to nothing, so the callers carry no `cfg` and the default
//! build pays nothing. Always-on would cost, by inspection of the sequence, about ten
//! instructions and a 48-byte store per stack hand-out and give-back (not per switch): cheap,
//! but every user would carry inline assembly that only the memory-error gate needs.

// Request codes from valgrind.h (`VG_USERREQ__*`) and memcheck.h (`VG_USERREQ_TOOL_BASE('M',
// 'C')` = 0x4d43_0000, then the requests in order).
const STACK_REGISTER: usize = 0x1501;
const STACK_DEREGISTER: usize = 0x1502;
const MAKE_MEM_NOACCESS: usize = 0x4d43_0000;
const MAKE_MEM_UNDEFINED: usize = 0x4d43_0001;

/// Sends `request` with its arguments to valgrind and returns its answer, or `default` when
/// not running under valgrind. Any thread.
#[cfg(all(fibra_valgrind, target_arch = "x86_64"))]
#[inline]
fn client_request(default: usize, request: usize, args: [usize; 5]) -> usize {
    let block: [usize; 6] = [request, args[0], args[1], args[2], args[3], args[4]];
    let result: usize;
    // SAFETY: on hardware nothing we rely on changes: `rdi` turns 128 bits (3+13+61+51), back
    // where it was; `xchg rbx, rbx` is a no-op; only flags change (no `preserves_flags`).
    // Valgrind reads the six words at `rax` (`block`, alive for the statement; not `nomem`, so
    // they are stored first), answers in `rdx`, and changes only its own bookkeeping.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") block.as_ptr(),
            inout("rdx") default => result,
            options(nostack),
        );
    }
    result
}

/// The no-op twin: not built for valgrind, or an architecture without the sequence here.
#[cfg(not(all(fibra_valgrind, target_arch = "x86_64")))]
#[inline(always)]
fn client_request(default: usize, _request: usize, _args: [usize; 5]) -> usize {
    default
}

/// Valgrind's handle for a registered stack; 0 outside valgrind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StackId(usize);

/// Tells valgrind that `[low, high)` is a stack, so that moving the stack pointer into it is
/// a switch, not a frame. Any thread.
pub(crate) fn register_stack(low: usize, high: usize) -> StackId {
    // valgrind.h's `VALGRIND_STACK_REGISTER(start, end)`: `end` is the highest address.
    StackId(client_request(0, STACK_REGISTER, [low, high - 1, 0, 0, 0]))
}

/// Forgets a stack from [`register_stack`]; nothing may run on it any more. Any thread.
pub(crate) fn deregister_stack(id: StackId) {
    client_request(0, STACK_DEREGISTER, [id.0, 0, 0, 0, 0]);
}

/// Memcheck: `[addr, addr + len)` may be written, and reads before a write are errors. Any
/// thread.
pub(crate) fn mark_undefined(addr: usize, len: usize) {
    client_request(0, MAKE_MEM_UNDEFINED, [addr, len, 0, 0, 0]);
}

/// Memcheck: any access to `[addr, addr + len)` is an error. Any thread.
pub(crate) fn mark_noaccess(addr: usize, len: usize) {
    client_request(0, MAKE_MEM_NOACCESS, [addr, len, 0, 0, 0]);
}
