//! The call sites of blocking calls seen in fibers: counted, and each printed once.
//!
//! A call costs the fiber one walk of its stack (the first `KEY_FRAMES` return addresses are
//! the stack's key) and a count. A stack not seen before is kept unresolved and symbolised
//! later, off the worker, by a reporter thread (symbolising loads the binary's debug info,
//! which can take longer than the monitor's stall threshold): its site is the first frame
//! outside std, core, alloc, libc and this module, and a site seen for the first time is
//! printed. `list` and the end of each runtime session resolve what is pending themselves,
//! so nothing seen before a session ends goes unreported.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::Kind;

/// Return addresses hashed into a stack's key: in a debug build, the watch's own frames and
/// std's wrappers take about 20; the rest reach the caller's code.
const KEY_FRAMES: usize = 32;
/// Frames searched for the caller's site when a new stack is symbolised.
const SITE_FRAMES: usize = 64;
/// Distinct stacks kept; calls from further new stacks are counted under one overflow site.
const MAX_STACKS: usize = 10_000;
const PAST_MAX_STACKS: &str = "(past 10000 distinct stacks)";
/// Stack a fiber must have left for its call to be walked: a walk of a stack not seen before
/// took 7.4 KiB below the call (debug build, x86_64: a fiber 16 frames of 464 bytes shallower
/// overflowed its stack with the watch on, and not with it off); 12 KiB leaves a margin. A
/// call with less is counted under one site instead of overflowing a stack that suffices
/// without the watch.
const WALK_ROOM: usize = 12 * 1024;
const SHORT_OF_ROOM: &str = "(a fiber with under 12 KiB of stack left)";

/// One call site: what `fibra::debug::blocking_calls` returns.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    pub(crate) call: &'static str,
    pub(crate) location: String,
    pub(crate) count: u64,
}

enum Stack {
    /// Not symbolised yet: its frames (taken while a resolver works on them) and its calls.
    Pending {
        call: &'static str,
        kind: Kind,
        frames: Option<Vec<backtrace::Frame>>,
        count: u64,
    },
    /// Counted in `sites[i]`.
    Resolved(usize),
    /// Made by fibra itself (`is_fibra_own`): neither counted nor reported.
    Own,
}

#[derive(Default)]
struct Registry {
    stacks: HashMap<u64, Stack, BuildHasherDefault<KeyHasher>>,
    /// (call, location) → index in `sites`.
    by_site: HashMap<(&'static str, String), usize>,
    sites: Vec<Site>,
    /// Sites counted without a walk (`record_unwalked`, `take_short_of_room`), to be printed
    /// by the next pass.
    unreported: Vec<(usize, Kind)>,
    /// Set by `record` when it added a pending stack; the reporter thread waits for it.
    work: bool,
    /// The reporter thread, while one runs: it lives while sessions do, so that a process
    /// that counts its threads between sessions finds none of ours.
    reporter: Option<JoinHandle<()>>,
    /// Bumped to tell the running reporter to end.
    generation: u64,
    live_sessions: usize,
}

impl Registry {
    fn site(&mut self, call: &'static str, location: String) -> (usize, bool) {
        if let Some(&i) = self.by_site.get(&(call, location.clone())) {
            return (i, false);
        }
        let i = self.sites.len();
        self.sites.push(Site {
            call,
            location: location.clone(),
            count: 0,
        });
        self.by_site.insert((call, location), i);
        (i, true)
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
static WORK: Condvar = Condvar::new();
/// Held for a whole resolution pass, so `list` and `flush` see the reporter's pass complete.
static RESOLVING: Mutex<()> = Mutex::new(());

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every site seen so far, in the order first resolved.
pub(crate) fn list() -> Vec<Site> {
    resolve_pending();
    registry().sites.clone()
}

/// A runtime session starts.
pub(crate) fn session_started() {
    registry().live_sessions += 1;
}

/// A runtime session ended: what its fibers did is resolved and reported now, and the last
/// session to end stops the reporter thread.
pub(crate) fn session_ended() {
    resolve_pending();
    let mut reg = registry();
    reg.live_sessions -= 1;
    if reg.live_sessions > 0 {
        return;
    }
    reg.generation += 1;
    let reporter = reg.reporter.take();
    drop(reg);
    WORK.notify_all();
    if let Some(r) = reporter {
        let _ = r.join();
    }
}

/// Counts one blocking `call` made in a fiber; a stack not seen before waits for the reporter.
pub(super) fn record(call: &'static str, kind: Kind) {
    let here = 0u8;
    if crate::stack::room_below(std::ptr::from_ref(&here) as usize).is_some_and(|r| r < WALK_ROOM) {
        return record_short_of_room(call, kind);
    }
    let key = stack_key(call);
    let mut reg = registry();
    match reg.stacks.get_mut(&key) {
        Some(Stack::Resolved(i)) => {
            let i = *i;
            reg.sites[i].count += 1;
            return;
        }
        Some(Stack::Pending { count, .. }) => {
            *count += 1;
            return;
        }
        Some(Stack::Own) => return,
        None => {}
    }
    if reg.stacks.len() >= MAX_STACKS {
        drop(reg);
        return record_unwalked(call, kind, PAST_MAX_STACKS);
    }
    drop(reg);
    let mut frames = Vec::with_capacity(SITE_FRAMES);
    walk(|frame| {
        frames.push(frame.clone());
        frames.len() < SITE_FRAMES
    });
    let mut reg = registry();
    let stack = reg.stacks.entry(key).or_insert(Stack::Pending {
        call,
        kind,
        frames: Some(frames),
        count: 0,
    });
    match stack {
        Stack::Pending { count, .. } => *count += 1,
        Stack::Resolved(i) => {
            let i = *i;
            reg.sites[i].count += 1;
        }
        Stack::Own => {}
    }
    wake_reporter(reg);
}

/// Counts `call` under the site `location`, which names why its stack was not walked; a new
/// such site is printed by the next pass.
fn record_unwalked(call: &'static str, kind: Kind, location: &str) {
    let mut reg = registry();
    let (i, new) = reg.site(call, location.to_owned());
    reg.sites[i].count += 1;
    if new {
        reg.unreported.push((i, kind));
        wake_reporter(reg);
    }
}

/// The calls counted by `record_short_of_room`, by name (every function `interpose.rs`
/// defines): atomics only, since a `HashMap` insert of a debug build alone takes kilobytes of
/// stack. A pass moves them into `sites`.
static SHORT_OF_ROOM_CALLS: [(&str, AtomicU64, AtomicI32); 19] = {
    const fn c(name: &'static str) -> (&'static str, AtomicU64, AtomicI32) {
        (name, AtomicU64::new(0), AtomicI32::new(-1))
    }
    [
        c("read"),
        c("readv"),
        c("recv"),
        c("recvfrom"),
        c("recvmsg"),
        c("write"),
        c("writev"),
        c("send"),
        c("sendto"),
        c("sendmsg"),
        c("accept4"),
        c("connect"),
        c("nanosleep"),
        c("clock_nanosleep"),
        c("usleep"),
        c("sleep"),
        c("poll"),
        c("ppoll"),
        c("getaddrinfo"),
    ]
};

/// Counts `call` made where the stack is too short to walk (`WALK_ROOM`), without a lock or
/// an allocation; it is listed and printed by the next pass, at the latest when the session
/// ends (not by a reporter started here: a thread spawn takes kilobytes of stack too).
fn record_short_of_room(call: &'static str, kind: Kind) {
    let Some((_, count, fd)) = SHORT_OF_ROOM_CALLS.iter().find(|(c, ..)| *c == call) else {
        return; // every interposed call is listed above
    };
    if let Kind::Socket(f) = kind {
        fd.store(f, Relaxed); // for the report only
    }
    count.fetch_add(1, Relaxed); // a count; `take_short_of_room` reads it under `RESOLVING`
}

/// Moves the counts of `record_short_of_room` into their sites. Under `RESOLVING`.
fn take_short_of_room(reg: &mut Registry) {
    for (call, count, fd) in &SHORT_OF_ROOM_CALLS {
        let n = count.swap(0, Relaxed);
        if n == 0 {
            continue;
        }
        let (i, new) = reg.site(call, SHORT_OF_ROOM.to_owned());
        reg.sites[i].count += n;
        if new {
            let kind = match *call {
                "nanosleep" | "clock_nanosleep" | "usleep" | "sleep" => Kind::Sleep,
                "poll" | "ppoll" => Kind::Poll,
                "getaddrinfo" => Kind::Lookup,
                _ => Kind::Socket(fd.load(Relaxed)),
            };
            reg.unreported.push((i, kind));
        }
    }
}

/// Tells the reporter thread (started if none runs) that a pass has work.
fn wake_reporter(mut reg: MutexGuard<'static, Registry>) {
    reg.work = true;
    if reg.reporter.is_none() {
        reg.reporter = start_reporter(reg.generation);
    }
    drop(reg);
    WORK.notify_all();
}

/// The thread that symbolises new stacks until the generation changes; `None` if it could
/// not start (`list` and `session_ended` still resolve).
fn start_reporter(generation: u64) -> Option<JoinHandle<()>> {
    let run = move || loop {
        {
            let mut reg = registry();
            while !reg.work && reg.generation == generation {
                reg = WORK.wait(reg).unwrap_or_else(|e| e.into_inner());
            }
            if reg.generation != generation {
                return;
            }
            reg.work = false;
        }
        resolve_pending();
    };
    std::thread::Builder::new()
        .name("fibra-blocking-calls".into())
        .spawn(run)
        .ok()
}

/// Symbolises every pending stack, moves its count to its site, and prints new sites.
fn resolve_pending() {
    let _pass = RESOLVING.lock().unwrap_or_else(|e| e.into_inner());
    let unwalked: Vec<(&'static str, Kind, String)> = {
        let mut reg = registry();
        let reg = &mut *reg;
        take_short_of_room(reg);
        reg.unreported
            .drain(..)
            .map(|(i, kind)| (reg.sites[i].call, kind, reg.sites[i].location.clone()))
            .collect()
    };
    for (call, kind, location) in unwalked {
        report(call, kind, &location);
    }
    let todo: Vec<(u64, &'static str, Kind, Vec<backtrace::Frame>)> = registry()
        .stacks
        .iter_mut()
        .filter_map(|(&key, stack)| match stack {
            Stack::Pending {
                call, kind, frames, ..
            } => frames.take().map(|f| (key, *call, *kind, f)),
            Stack::Resolved(_) | Stack::Own => None,
        })
        .collect();
    for (key, call, kind, frames) in todo {
        let Some(location) = caller_site(&frames) else {
            registry().stacks.insert(key, Stack::Own);
            continue;
        };
        let mut reg = registry();
        let (i, new) = reg.site(call, location.clone());
        let Some(Stack::Pending { count, .. }) = reg.stacks.insert(key, Stack::Resolved(i)) else {
            unreachable!("only a pass holding RESOLVING resolves a stack");
        };
        reg.sites[i].count += count;
        drop(reg);
        if new {
            report(call, kind, &location);
        }
    }
}

/// The call and the first `KEY_FRAMES` return addresses of the caller's stack, hashed. Not
/// with std's SipHash: a debug build compiles its generic code unoptimised, and it took ~15%
/// of a watched call (perf, a 1-byte `recv` in a loop); a multiply-rotate step per word
/// (FxHash's) and a final avalanche (MurmurHash3's) keep 10,000 stacks' keys apart.
fn stack_key(call: &'static str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut h = call.bytes().fold(0, |h, b| mix(h, u64::from(b)));
    let mut n = 0;
    walk(|frame| {
        h = mix(h, frame.ip() as u64);
        n += 1;
        n < KEY_FRAMES
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Hashes a `stack_key` to itself: it is a hash already, and SipHash costs (`stack_key`).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed (`write_u64`); fold anything else in all the same.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Walks the calling fiber's stack without the backtrace crate's global lock, which a
/// resolution pass (or the monitor symbolising a stall) holds for as long as it reads debug
/// info: a worker must not wait for that.
fn walk(f: impl FnMut(&backtrace::Frame) -> bool) {
    // SAFETY: the crate's lock serialises its symbolisation cache and Windows' dbghelp; a
    // walk on Linux is `_Unwind_Backtrace` over this thread's own stack, which is
    // thread-safe, and touches no shared state of the crate.
    unsafe { backtrace::trace_unsynchronized(f) }
}

/// `function (file:line)` of the first frame that is the caller's own code; `None` when that
/// frame is fibra's own (`is_fibra_own`).
fn caller_site(frames: &[backtrace::Frame]) -> Option<String> {
    let mut site = None;
    for frame in frames {
        backtrace::resolve_frame(frame, |sym| {
            if site.is_some() {
                return;
            }
            let Some(name) = sym.name().map(|n| format!("{n:#}")) else {
                return;
            };
            if is_plumbing(&name) {
                return;
            }
            site = Some(
                (!is_fibra_own(&name)).then(|| match (sym.filename(), sym.lineno()) {
                    (Some(file), Some(line)) => format!("{name} ({}:{line})", file.display()),
                    _ => name,
                }),
            );
        });
        if site.is_some() {
            break;
        }
    }
    site.unwrap_or_else(|| Some("an unknown call site (no symbols)".to_owned()))
}

/// True for frames between the blocking call and its caller's code: std, core, alloc, libc
/// (C names have no `::`), the backtrace crate and this module.
fn is_plumbing(name: &str) -> bool {
    let path = symbol_path(name);
    !name.contains("::")
        || [
            "std::",
            "core::",
            "alloc::",
            "backtrace::",
            "fibra::blocking_calls::",
        ]
        .iter()
        .any(|p| path.starts_with(p))
}

/// True when fibra's own code made the call: the short waits it makes on purpose in a fiber
/// (a `Condvar` wait of a fiber being cancelled sleeps 1 ms; `debug::dump` polls another
/// worker's stack capture) are no user's blocking call, and naming fibra's internals as the
/// site would send the user looking for a call they never wrote.
fn is_fibra_own(name: &str) -> bool {
    symbol_path(name).starts_with("fibra::")
}

/// The path that names the crate of the function `name`: `name` without the `<`, `&`,
/// `mut ` and `dyn ` a trait impl's symbol starts with; for an impl whose self type is a
/// tuple, slice, pointer or primitive (`<(&str, u16) as std::net::ToSocketAddrs>::..`), the
/// trait's path, since such an impl lives in the trait's crate.
fn symbol_path(name: &str) -> &str {
    let path = without_ref_prefixes(name);
    if name.starts_with('<') {
        if let Some((self_ty, trait_path)) = path.split_once(" as ") {
            if !self_ty.contains("::") || self_ty.starts_with(['(', '[', '*']) {
                return without_ref_prefixes(trait_path);
            }
        }
    }
    path
}

fn without_ref_prefixes(name: &str) -> &str {
    let path = name.trim_start_matches(['<', '&']);
    let path = path.strip_prefix("mut ").unwrap_or(path);
    path.strip_prefix("dyn ").unwrap_or(path)
}

fn report(call: &'static str, kind: Kind, location: &str) {
    let (what, instead) = match kind {
        Kind::Socket(fd) => (
            format!("`{call}` on a blocking socket (fd {fd})"),
            "use fibra::net's sockets or fibra::run_blocking, or enable the `hooks` feature",
        ),
        Kind::Sleep => (
            format!("`{call}` (a thread sleep)"),
            "use fibra::sleep, or enable the `hooks` feature",
        ),
        Kind::Poll => (
            format!("`{call}` with a timeout"),
            "use fibra::net's sockets or fibra::run_blocking, or enable the `hooks` feature",
        ),
        Kind::Lookup => (
            format!("`{call}` (a blocking name lookup)"),
            "fibra::net resolves names on the blocking pool; or use fibra::run_blocking",
        ),
    };
    let msg = format!(
        "fibra: warning: {what} inside a fiber blocked its worker thread and every fiber \
         waiting for it\n  at {location}\n  {instead}. Each call site is reported once \
         (debug builds); fibra::debug::blocking_calls() counts every call.\n"
    );
    // Not `eprintln!`: a report is printed while `RESOLVING` is held, and a thread holding
    // std's stderr lock while it waits for `RESOLVING` (`Runtime::run`'s session end,
    // `fibra::debug::blocking_calls`) would deadlock with the reporter thread.
    crate::sys::write_stderr(msg.as_bytes());
}
