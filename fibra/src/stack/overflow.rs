//! Stack overflow is reported, never silent: a fault in a slot's guard page prints
//! `fibra: fiber 42 "conn-17" (spawned at src/main.rs:31:5) overflowed its 64 KiB stack; give
//! it more with fibra::Builder::stack_size, or every fiber with
//! fibra::RuntimeBuilder::stack_size` (one line) and aborts. Faults elsewhere go to the handler
//! installed before ours.
//!
//! Runs inside a `SIGSEGV`/`SIGBUS` handler on the thread's alternate signal stack (the fiber's
//! own stack is exhausted): only atomics, reads, a stack buffer and `write(2)`.

use std::sync::atomic::Ordering::Acquire;

use super::{registry, Header, HEADER_SIZE};
use crate::fiber::identity::FiberIdentity;
use crate::sys;

/// The end of the report: how to get a bigger stack, per fiber or for the whole runtime.
const HINT: &str =
    "; give it more with fibra::Builder::stack_size, or every fiber with fibra::RuntimeBuilder::stack_size\n";

/// Installs the overflow reporter for `SIGSEGV` and `SIGBUS`. Idempotent; every runtime build
/// calls it. Any thread.
pub(crate) fn install_overflow_handler() {
    sys::install_fault_handler(on_fault);
    // The stuck-thread capture (`sys/linux/capture.rs`) finds fiber stacks the same way.
    sys::install_capture_handler(registry::slot_end);
}

/// Gives the calling thread an alternate signal stack if it lacks one, so an overflow can be
/// reported. Each worker calls it at start; a no-op on std-spawned threads (they have one).
pub(crate) fn ensure_alt_stack() {
    if let Err(e) = sys::ensure_alt_stack() {
        eprintln!("fibra: no alternate signal stack ({e}); stack overflows will not be named");
    }
}

/// The policy for [`sys::install_fault_handler`]: returns `false` for faults that are not ours.
fn on_fault(addr: usize) -> bool {
    let Some(hit) = registry::find_guard(addr, sys::page_size()) else {
        return false;
    };
    let header = hit.slot_start + hit.slot_size - HEADER_SIZE;
    // SAFETY: `header` is the `Header` of a slot in a registered region; regions are
    // unregistered before they are unmapped, and a fault in a guard means a stack of that
    // region is in use, so it is not being unmapped. The pointer was stored by
    // `FiberStack::set_identity`, whose Release pairs with this Acquire.
    let who = unsafe { (*(header as *const Header)).identity.load(Acquire) };
    let mut line = Line::new();
    line.push("fibra: ");
    // SAFETY: `set_identity`'s contract: the identity stays valid until cleared.
    match unsafe { who.as_ref() } {
        Some(id) => describe(&mut line, id),
        None => {
            line.push("a fiber (unknown) overflowed its ");
            push_size(&mut line, hit.slot_size - sys::page_size() - HEADER_SIZE);
            line.push(" stack");
            line.push(HINT);
        }
    }
    sys::write_stderr(line.as_bytes());
    std::process::abort();
}

fn describe(line: &mut Line, id: &FiberIdentity) {
    line.push("fiber ");
    line.push_u64(id.id);
    if let Some(name) = &id.name {
        line.push(" \"");
        line.push(name);
        line.push("\"");
    }
    line.push(" (spawned at ");
    line.push(id.location.file());
    line.push(":");
    line.push_u64(u64::from(id.location.line()));
    line.push(":");
    line.push_u64(u64::from(id.location.column()));
    line.push(") overflowed its ");
    push_size(line, id.stack_size);
    line.push(" stack");
    line.push(HINT);
}

/// `64 KiB`, `1 MiB`, or `70000 bytes`.
fn push_size(line: &mut Line, bytes: usize) {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    let (n, unit) = match bytes {
        b if b >= MIB && b % MIB == 0 => (b / MIB, " MiB"),
        b if b >= KIB && b % KIB == 0 => (b / KIB, " KiB"),
        b => (b, " bytes"),
    };
    line.push_u64(n as u64);
    line.push(unit);
}

/// A fixed buffer on the (signal) stack; input beyond its end is dropped, keeping the newline.
struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &str) {
        let room = (self.buf.len() - 1).saturating_sub(self.len); // one byte kept for '\n'
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if s.ends_with('\n') && n < s.len() && self.len < self.buf.len() {
            self.buf[self.len] = b'\n';
            self.len += 1;
        }
    }

    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // ASCII digits are valid UTF-8.
        self.push(std::str::from_utf8(&digits[i..]).unwrap_or("?"));
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::Location;

    fn render(id: &FiberIdentity) -> String {
        let mut line = Line::new();
        line.push("fibra: ");
        describe(&mut line, id);
        String::from_utf8(line.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn message_names_the_fiber() {
        let loc = Location::caller();
        let mut id = FiberIdentity {
            id: 42,
            name: Some("conn-17".into()),
            location: loc,
            stack_size: 65536,
        };
        let expected = format!(
            "fibra: fiber 42 \"conn-17\" (spawned at {}:{}:{}) overflowed its 64 KiB stack; \
             give it more with fibra::Builder::stack_size, or every fiber with \
             fibra::RuntimeBuilder::stack_size\n",
            loc.file(),
            loc.line(),
            loc.column()
        );
        assert_eq!(render(&id), expected);
        id.name = None;
        id.stack_size = 2 * 1024 * 1024;
        assert!(render(&id).starts_with("fibra: fiber 42 (spawned at "));
        assert!(render(&id).contains("overflowed its 2 MiB stack; give it more with "));
        id.stack_size = 70000;
        assert!(render(&id).contains("overflowed its 70000 bytes stack; "));
        assert!(render(&id).ends_with(HINT));
    }

    #[test]
    fn long_names_are_truncated_but_end_the_line() {
        let name: String = "x".repeat(2000);
        let id = FiberIdentity {
            id: 0,
            name: Some(name.into()),
            location: Location::caller(),
            stack_size: 65536,
        };
        let line = render(&id);
        assert_eq!(line.len(), 512);
        assert!(line.ends_with('\n'));
    }
}
