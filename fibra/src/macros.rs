//! Internal macros.

/// A broken runtime invariant: print and abort (never unwind through a stack switch).
macro_rules! fatal {
    ($($arg:tt)*) => {{
        eprintln!("fibra: fatal: {}", format_args!($($arg)*));
        std::process::abort()
    }};
}
