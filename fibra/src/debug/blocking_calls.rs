//! The blocking calls debug builds saw in fibers (`crate::blocking_calls` watches them).

/// A call site that made a blocking call inside a fiber: a read, write, `accept` or
/// `connect` on a socket in blocking mode, a thread sleep, `poll` with a timeout or a
/// `getaddrinfo`. Such a call holds its worker thread, and every fiber queued there, until
/// it returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingCallSite {
    /// The libc function called: `"recv"`, `"write"`, `"nanosleep"`, `"getaddrinfo"`, ...
    pub call: &'static str,
    /// The first frame of the caller's own code (outside std, core, alloc and libc), as
    /// `function (file:line)`.
    pub location: String,
    /// How many such calls this site made in fibers.
    pub count: u64,
}

/// Every site that made a blocking call in a fiber so far, in the order the sites were first
/// resolved, with its count (all runtimes of the process). Debug builds (`debug_assertions`)
/// without the `hooks` feature, dynamically linked against glibc on Linux, watch these calls and print each site to stderr once (at the latest when its
/// runtime session ends); release builds, and builds
/// with `hooks` (where such calls park the fiber instead), return an empty list.
/// [`RuntimeBuilder::warn_blocking_calls`](crate::RuntimeBuilder::warn_blocking_calls)
/// turns the watch off for one runtime.
///
/// ```
/// use std::time::Duration;
/// fibra::run(|| std::thread::sleep(Duration::from_millis(1))); // blocks the worker
/// let sites = fibra::debug::blocking_calls();
/// if cfg!(debug_assertions) && cfg!(target_os = "linux") {
///     let sleep = sites.iter().find(|s| s.call.ends_with("sleep")).expect("debug builds watch");
///     assert_eq!(sleep.count, 1);
/// }
/// ```
pub fn blocking_calls() -> Vec<BlockingCallSite> {
    #[cfg(all(
        debug_assertions,
        not(feature = "hooks"),
        target_os = "linux",
        target_env = "gnu",
        not(target_feature = "crt-static"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        crate::blocking_calls::list()
            .into_iter()
            .map(|s| BlockingCallSite {
                call: s.call,
                location: s.location,
                count: s.count,
            })
            .collect()
    }
    #[cfg(not(all(
        debug_assertions,
        not(feature = "hooks"),
        target_os = "linux",
        target_env = "gnu",
        not(target_feature = "crt-static"),
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    Vec::new()
}
