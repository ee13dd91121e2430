//! Backtraces of fibers: symbolised from `std::backtrace::Backtrace` (captured inside the
//! fiber, resolved here, outside it) and trimmed to the fiber's own frames.

use std::backtrace::Backtrace;

/// One frame of a fiber's backtrace.
///
/// ```
/// #[inline(never)]
/// fn take_dump() -> fibra::debug::Dump {
///     fibra::debug::dump() // the dumping fiber gets its own backtrace too
/// }
/// let d = fibra::run(take_dump);
/// let main = d.fibers.iter().find(|f| f.name.as_deref() == Some("main")).unwrap();
/// let fibra::debug::Trace::Frames(frames) = &main.backtrace else { panic!("no backtrace") };
/// assert!(frames.iter().any(|f| f.function.ends_with("take_dump")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Frame {
    /// The demangled function name, without its hash (`my_crate::server::handle`).
    pub function: String,
    /// `file:line:col`, when debug info has it.
    pub location: Option<String>,
}

/// A fiber's backtrace, or why there is none.
///
/// ```
/// use fibra::debug::Trace;
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let small = fibra::Builder::new().stack_size(fibra::MIN_STACK_SIZE);
///     let h = small.spawn(fibra::park).unwrap();
///     while h.fiber().park_reason() != fibra::ParkReason::User { fibra::yield_now(); }
///     let d = fibra::debug::dump();
///     let f = d.fibers.iter().find(|f| f.id == h.fiber().id().as_u64()).unwrap();
///     assert_eq!(f.backtrace, Trace::Unavailable("stack too small to capture".into()));
///     h.fiber().unpark();
///     h.join().unwrap();
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Trace {
    /// The fiber's frames, innermost first, from its caller of the wait down to its entry.
    Frames(Vec<Frame>),
    /// Why no backtrace was taken ("running", "worker busy", ...).
    Unavailable(String),
}

/// Frames of fibra's own machinery at the top of a capture: everything down to the
/// outermost of these (`fibra::park::park`, or `fibra::debug::dump` for the dumper) goes.
fn is_capture_machinery(function: &str) -> bool {
    function.starts_with("std::backtrace")
        || function.starts_with("fibra::park::")
        || function.starts_with("fibra::debug::")
}

/// Frames below the fiber's code: its entry trampoline, then the worker that resumed it.
fn is_fiber_entry(function: &str) -> bool {
    function.starts_with("corosensei::")
        || function.starts_with("fibra::fiber::switch::")
        || function.starts_with("<fibra::fiber::join::Packet")
        || function.contains("fibra::fiber::join::Start")
}

/// Resolves `bt` (needs ~20 KiB of stack: call it on a thread or a roomy fiber) and keeps the
/// fiber's own frames.
pub(crate) fn frames_of(bt: &Backtrace) -> Vec<Frame> {
    trim(parse(&bt.to_string()))
}

/// Keeps the fiber's own frames of a running fiber's stack, copied and symbolised by
/// `sched::monitor::running_stack` (function names already without hashes).
pub(crate) fn frames_of_running(frames: Vec<(String, Option<String>)>) -> Vec<Frame> {
    trim(
        frames
            .into_iter()
            .filter(|(f, _)| !f.starts_with("fibra::sys::"))
            .map(|(function, location)| Frame { function, location })
            .collect(),
    )
}

/// Parses std's backtrace format: `  N: function` lines, each optionally followed by
/// `at file:line:col`.
fn parse(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(loc) = t.strip_prefix("at ") {
            if let Some(last) = frames.last_mut() {
                last.location.get_or_insert_with(|| loc.trim().to_owned());
            }
        } else if let Some((num, func)) = t.split_once(": ") {
            if num.chars().all(|c| c.is_ascii_digit()) {
                frames.push(Frame {
                    function: strip_hash(func.trim()).to_owned(),
                    location: None,
                });
            }
        }
    }
    frames
}

/// `path::f::h0123456789abcdef` → `path::f`.
fn strip_hash(f: &str) -> &str {
    match f.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => f,
    }
}

fn trim(frames: Vec<Frame>) -> Vec<Frame> {
    // Skip the capture machinery at the top (up to `park`, which sits right under the code
    // that waits), then cut at the fiber's entry.
    let start = frames
        .iter()
        .rposition(|f| is_capture_machinery(&f.function))
        .map_or(0, |i| i + 1);
    let mut out: Vec<Frame> = frames.into_iter().skip(start).collect();
    if let Some(end) = out.iter().position(|f| is_fiber_entry(&f.function)) {
        out.truncate(end);
    }
    // The closure shims between the entry and the user's code (catch_unwind and friends).
    while out.last().is_some_and(|f| {
        f.function.starts_with("std::panic")
            || f.function.starts_with("core::ops::function")
            || f.function.starts_with("__rust")
            || f.function.starts_with("<core::panic::unwind_safe")
            || f.function.starts_with("<alloc::boxed::Box<F")
            || f.function.starts_with("fibra::fiber::")
    }) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_trims_std_format() {
        let text = "   0: std::backtrace::Backtrace::force_capture\n             at /rustc/x/library/std/src/backtrace.rs:312:13\n   1: fibra::fiber::watch::Watch::serve_slow\n   2: fibra::park::park_fiber\n   3: my::waits::h0123456789abcdef\n             at src/my.rs:3:5\n   4: my::outer\n   5: std::panicking::try\n   6: corosensei::coroutine::on_stack\n   7: fibra::sched::worker::Worker::run\n";
        let frames = trim(parse(text));
        let names: Vec<_> = frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names, ["my::waits", "my::outer"]);
        assert_eq!(frames[0].location.as_deref(), Some("src/my.rs:3:5"));
    }
}
