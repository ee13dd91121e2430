//! Internal macros.

/// A broken runtime invariant: print and abort (never unwind through a stack switch).
macro_rules! fatal {
    ($($arg:tt)*) => {{
        eprintln!("fibra: fatal: {}", format_args!($($arg)*));
        std::process::abort()
    }};
}

/// User code did what nothing can continue from (a destructor that panicked where no unwind
/// may go): say what, then abort. Writes with `write!`, not `eprintln!`, which would panic
/// again if stderr were closed.
#[cold]
pub(crate) fn abort_with(what: std::fmt::Arguments<'_>) -> ! {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "fibra: {what}");
    std::process::abort()
}
