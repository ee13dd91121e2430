//! The fd table: which fds the hooks manage, with the blocking mode and timeouts their owner
//! sees, indexed by fd number.
//!
//! A flat two-level array of atomics: `CHUNKS` pointers to chunks of `CHUNK` slots, a chunk
//! allocated the first time an fd in its range is managed and never freed. A lookup for an
//! fd the hooks do not manage (every fd of a program that never made a socket in a fiber) is
//! one load of a null chunk pointer, or of a slot whose `MANAGED` bit is clear. fds at or
//! above `CHUNKS * CHUNK` (1,048,576) are never managed: they pass straight to libc.
//!
//! # Life of a slot
//! ```text
//! hooked socket/accept in a fiber ─ manage ──▶ MANAGED (+ NONBLOCK if the caller asked)
//!   dup/dup2/dup3/F_DUPFD of a managed fd ─ copy ──▶ the new fd MANAGED, same mode/timeouts
//! close (or dup2/dup3 onto it) ─ unmanage ──▶ 0, registration deregistered, *then* libc closes
//! ```
//! `unmanage` runs before the kernel frees the number, so a number the kernel hands out again
//! (to a file, a pipe, a socket made on a plain thread) is never seen as managed: fd reuse
//! cannot misroute. An fd closed behind libc's back (a raw `close` syscall, `close_range`)
//! leaves its slot behind; the next hooked socket or accept that gets the number overwrites it.
//!
//! # The registration
//! A managed fd that had to wait in a fiber is registered with a reactor (the worker's, as
//! `fibra::net` sockets are) and keeps that registration until it is closed; a registration
//! whose session ended is replaced by the next fiber that waits. `reg` is an
//! `Arc<Registration>` pointer guarded by the slot's `LOCKED` bit: taken only to clone,
//! install or remove it (a few instructions, plus one `epoll_ctl` while installing), never
//! across a park.

use std::alloc::{alloc_zeroed, Layout};
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use mio::Token;

use crate::io::reactor::{Direction, Reactor, ScheduledIo};

const MANAGED: u32 = 1;
/// The mode the fd's owner set (`SOCK_NONBLOCK`, `O_NONBLOCK`, `FIONBIO`); the fd itself is
/// always non-blocking.
const NONBLOCK: u32 = 2;
/// Guards `reg`.
const LOCKED: u32 = 4;
/// An epoll instance (`epoll_create1` in a fiber, `epoll.rs`), not a socket: only
/// `epoll_wait`/`epoll_pwait` treat it differently; the other hooks' calls on it fail as
/// libc's would (`read` on an epoll fd is `EINVAL` either way).
const EPOLL: u32 = 8;
/// Hints, per direction: the fd's last call that way had to wait (`EAGAIN`), so the next
/// one takes the readiness snapshot before its attempt and, on `EAGAIN`, parks at once
/// instead of retrying the call (`wait.rs`). Cleared by a call that did not have to wait.
const WAITS_READ: u32 = 16;
const WAITS_WRITE: u32 = 32;
/// A TCP socket (`AF_INET`/`AF_INET6`, `SOCK_STREAM`): a read that returns fewer bytes than
/// asked emptied its receive queue (`wait.rs`'s drained read). Not `AF_UNIX` streams, whose
/// reads also stop short at a sender's credentials or passed fds.
const TCP: u32 = 64;
/// The fd was duplicated (either end of a `dup`): its kernel timeouts are shared with
/// another slot's, so `setsockopt` cannot tell from this slot alone that a set changes nothing.
const SHARED: u32 = 128;

const CHUNK_BITS: usize = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 256;

/// A managed fd's registration with a reactor.
pub(super) struct Registration {
    reactor: Arc<Reactor>,
    token: Token,
    pub(super) io: Arc<ScheduledIo>,
}

impl Registration {
    fn is_open(&self) -> bool {
        self.reactor.is_open()
    }
}

/// One fd's entry. All zero is "not managed".
pub(super) struct Slot {
    flags: AtomicU32,
    /// `SO_RCVTIMEO` / `SO_SNDTIMEO` in nanoseconds, 0 for none.
    rcv_timeout: AtomicU64,
    snd_timeout: AtomicU64,
    /// `Arc::into_raw` of the registration, or null (under `LOCKED`).
    reg: AtomicPtr<Registration>,
    /// A TCP socket's local address once it is settled (`socket.rs`'s `getsockname`): its
    /// length in bytes, 0 for none, and the bytes (a `sockaddr_in` or `sockaddr_in6`); and
    /// a count of the `connect`s begun or ended on the fd, so an address read from the kernel
    /// while one ran is never kept. All under `LOCKED`.
    local_len: AtomicU32,
    local_epoch: AtomicU32,
    local: [AtomicU64; LOCAL_WORDS],
}

/// Words for a local address: 32 bytes, room for a `sockaddr_in6` (28).
const LOCAL_WORDS: usize = 4;
/// The longest local address the table keeps.
pub(super) const LOCAL_MAX: usize = LOCAL_WORDS * 8;

static TABLE: [AtomicPtr<Slot>; CHUNKS] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS];

/// The slot of `fd` if its chunk exists.
#[inline(always)]
fn slot(fd: RawFd) -> Option<&'static Slot> {
    let fd = usize::try_from(fd).ok()?;
    // Acquire pairs with `slot_or_alloc`'s Release CAS: the zeroed chunk is visible.
    let chunk = TABLE.get(fd >> CHUNK_BITS)?.load(Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: a non-null chunk pointer is an allocation of `CHUNK` slots that is never freed,
    // and `fd & (CHUNK - 1)` is below `CHUNK`.
    Some(unsafe { &*chunk.add(fd & (CHUNK - 1)) })
}

fn slot_or_alloc(fd: RawFd) -> Option<&'static Slot> {
    if let Some(s) = slot(fd) {
        return Some(s);
    }
    let entry = TABLE.get(usize::try_from(fd).ok()? >> CHUNK_BITS)?;
    let layout = Layout::array::<Slot>(CHUNK).ok()?;
    // SAFETY: `layout` has a non-zero size; all-zero bytes are a valid `Slot` (atomics and a
    // null pointer).
    let fresh = unsafe { alloc_zeroed(layout) }.cast::<Slot>();
    if fresh.is_null() {
        return None; // out of memory: the fd stays unmanaged (it passes to libc)
    }
    // Release publishes the zeroed chunk; pairs with `slot`'s Acquire load.
    if let Err(_winner) = entry.compare_exchange(ptr::null_mut(), fresh, Release, Acquire) {
        // SAFETY: `fresh` came from `alloc_zeroed(layout)` and was never published.
        unsafe { std::alloc::dealloc(fresh.cast(), layout) };
    }
    slot(fd)
}

/// The slot of a managed `fd`, or `None` for every fd the hooks leave to libc. The fast path
/// of every hook.
#[inline(always)]
pub(super) fn managed(fd: RawFd) -> Option<&'static Slot> {
    // Relaxed: the flag only says which path to take; the fd's owner made it managed before
    // handing the fd to anyone (the `socket`/`accept` that returned it).
    slot(fd).filter(|s| s.flags.load(Relaxed) & MANAGED != 0)
}

/// Marks `fd`, just made by a hooked `socket` in a fiber, as managed (`tcp`: a TCP socket).
pub(super) fn manage(fd: RawFd, nonblocking: bool, tcp: bool) -> bool {
    let mode = if nonblocking { NONBLOCK } else { 0 } | if tcp { TCP } else { 0 };
    manage_as(fd, mode)
}

/// Marks `fd`, just accepted by a hooked `accept` in a fiber on the managed `listener`, as
/// managed. Linux's accepted socket is a copy of its listener (`sk_clone_lock`), its
/// `SO_RCVTIMEO`/`SO_SNDTIMEO` included: so are the slot's.
pub(super) fn manage_accepted(listener: &Slot, fd: RawFd, nonblocking: bool) -> bool {
    let mode = if nonblocking { NONBLOCK } else { 0 } | listener.flags.load(Relaxed) & TCP;
    if !manage_as(fd, mode) {
        return false;
    }
    if let Some(s) = slot(fd) {
        s.rcv_timeout
            .store(listener.rcv_timeout.load(Relaxed), Relaxed);
        s.snd_timeout
            .store(listener.snd_timeout.load(Relaxed), Relaxed);
    }
    true
}

/// Marks `fd`, an epoll instance just made by a hooked `epoll_create1` in a fiber, as managed.
pub(super) fn manage_epoll(fd: RawFd) -> bool {
    manage_as(fd, EPOLL)
}

/// `fd` becomes managed with the `NONBLOCK`/`EPOLL` bits in `mode`.
fn manage_as(fd: RawFd, mode: u32) -> bool {
    let Some(s) = slot_or_alloc(fd) else {
        return false;
    };
    let stale = s.take_registration(); // a slot left by a close behind libc's back
    drop(stale); // its fd is gone (epoll forgot it with the file): nothing to deregister
    s.rcv_timeout.store(0, Relaxed);
    s.snd_timeout.store(0, Relaxed);
    s.forget_local_addr();
    s.flags.fetch_and(LOCKED, Relaxed);
    s.flags.fetch_or(MANAGED | mode, Release);
    true
}

/// `to`, a duplicate of the managed `from` (dup, dup2, dup3, `F_DUPFD`), becomes managed with
/// the same mode and timeouts (the kernel shares them between the two: one open file).
pub(super) fn copy(from: &Slot, to: RawFd) {
    from.flags.fetch_or(SHARED, Relaxed);
    if manage_as(
        to,
        from.flags.load(Relaxed) & (NONBLOCK | EPOLL | TCP) | SHARED,
    ) {
        if let Some(s) = slot(to) {
            s.rcv_timeout.store(from.rcv_timeout.load(Relaxed), Relaxed);
            s.snd_timeout.store(from.snd_timeout.load(Relaxed), Relaxed);
        }
    }
}

/// Before libc closes `fd` (close, or dup2/dup3 onto it): forgets it and deregisters it
/// while the fd is still open.
pub(super) fn unmanage(fd: RawFd) {
    let Some(s) = managed(fd) else { return };
    let reg = s.take_registration();
    s.flags.fetch_and(LOCKED, Release);
    if let Some(reg) = reg {
        reg.reactor.deregister(fd, reg.token);
    }
}

fn waits_bit(dir: Direction) -> u32 {
    match dir {
        Direction::Read => WAITS_READ,
        Direction::Write => WAITS_WRITE,
    }
}

fn nanos(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    })
}

impl Slot {
    /// The blocking mode the fd's owner sees.
    pub(super) fn nonblocking(&self) -> bool {
        self.flags.load(Relaxed) & NONBLOCK != 0
    }

    /// True for an epoll instance (`manage_epoll`).
    pub(super) fn is_epoll(&self) -> bool {
        self.flags.load(Relaxed) & EPOLL != 0
    }

    /// True once the fd was duplicated (`SHARED`): another fd may change what the kernel
    /// holds for both.
    pub(super) fn is_shared(&self) -> bool {
        self.flags.load(Relaxed) & SHARED != 0
    }

    /// True for a TCP socket (`TCP`).
    pub(super) fn is_tcp(&self) -> bool {
        self.flags.load(Relaxed) & TCP != 0
    }

    /// True when `timeout` is what the kernel already holds as the fd's `SO_RCVTIMEO`
    /// (`rcv: true`) or `SO_SNDTIMEO`: every set through the hooks is recorded here (a fresh
    /// socket's 0, an accepted one's listener's), so it is, unless the fd was duplicated and
    /// the other end set it (`SHARED`), or code went around libc (a raw `setsockopt` syscall).
    pub(super) fn holds_timeout(&self, rcv: bool, timeout: Option<Duration>) -> bool {
        let held = if rcv {
            &self.rcv_timeout
        } else {
            &self.snd_timeout
        };
        !self.is_shared() && held.load(Relaxed) == nanos(timeout)
    }

    /// The hint that calls on this fd in `dir` wait (`WAITS_READ`/`WAITS_WRITE`).
    pub(super) fn waits(&self, dir: Direction) -> bool {
        self.flags.load(Relaxed) & waits_bit(dir) != 0
    }

    /// Sets or clears the `waits` hint; writes only on a change (the common case is none).
    pub(super) fn set_waits(&self, dir: Direction, on: bool) {
        let bit = waits_bit(dir);
        if self.waits(dir) != on {
            if on {
                self.flags.fetch_or(bit, Relaxed);
            } else {
                self.flags.fetch_and(!bit, Relaxed);
            }
        }
    }

    pub(super) fn set_nonblocking(&self, on: bool) {
        if on {
            self.flags.fetch_or(NONBLOCK, Relaxed);
        } else {
            self.flags.fetch_and(!NONBLOCK, Relaxed);
        }
    }

    pub(super) fn rcv_timeout(&self) -> Option<Duration> {
        match self.rcv_timeout.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    pub(super) fn snd_timeout(&self) -> Option<Duration> {
        match self.snd_timeout.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    pub(super) fn set_rcv_timeout(&self, d: Option<Duration>) {
        self.rcv_timeout.store(nanos(d), Relaxed);
    }

    pub(super) fn set_snd_timeout(&self, d: Option<Duration>) {
        self.snd_timeout.store(nanos(d), Relaxed);
    }

    /// The settled local address kept by `set_local_addr`: its bytes (the first `len`) and
    /// `len`.
    pub(super) fn local_addr(&self) -> Option<([u8; LOCAL_MAX], usize)> {
        let _l = self.lock();
        let len = self.local_len.load(Relaxed) as usize;
        if len == 0 {
            return None;
        }
        let mut bytes = [0u8; LOCAL_MAX];
        for (word, chunk) in self.local.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Relaxed).to_ne_bytes());
        }
        Some((bytes, len))
    }

    /// The `connect` count to pass to `set_local_addr`, read before asking the kernel.
    pub(super) fn local_epoch(&self) -> u32 {
        let _l = self.lock();
        self.local_epoch.load(Relaxed)
    }

    /// Keeps `addr` (at most `LOCAL_MAX` bytes) as the fd's settled local address, unless a
    /// `connect` began or ended since `epoch` was read.
    pub(super) fn set_local_addr(&self, addr: &[u8], epoch: u32) {
        if addr.is_empty() || addr.len() > LOCAL_MAX {
            return;
        }
        let mut bytes = [0u8; LOCAL_MAX];
        bytes[..addr.len()].copy_from_slice(addr);
        let _l = self.lock();
        if self.local_epoch.load(Relaxed) != epoch {
            return;
        }
        for (word, chunk) in self.local.iter().zip(bytes.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(w), Relaxed);
        }
        self.local_len.store(addr.len() as u32, Relaxed);
    }

    /// Forgets the local address: a `connect`, which may change it (`AF_UNSPEC` disconnects),
    /// is about to run or has just run.
    pub(super) fn forget_local_addr(&self) {
        let _l = self.lock();
        self.local_len.store(0, Relaxed);
        let e = self.local_epoch.load(Relaxed);
        self.local_epoch.store(e.wrapping_add(1), Relaxed);
    }

    fn lock(&self) -> SlotLock<'_> {
        // Acquire pairs with `SlotLock::drop`'s Release: the previous holder's `reg` store.
        while self.flags.fetch_or(LOCKED, Acquire) & LOCKED != 0 {
            std::hint::spin_loop();
        }
        SlotLock(self)
    }

    fn take_registration(&self) -> Option<Arc<Registration>> {
        let _l = self.lock();
        let p = self.reg.swap(ptr::null_mut(), Relaxed);
        // SAFETY: a non-null `reg` owns one count of an `Arc` made by `into_raw`; swapping
        // it out under the lock hands that count to us.
        (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
    }

    /// The fd's live registration, if any (`None` also when its session ended).
    pub(super) fn registration(&self) -> Option<Arc<Registration>> {
        let _l = self.lock();
        let p = self.reg.load(Relaxed);
        if p.is_null() {
            return None;
        }
        // SAFETY: under the lock `reg` keeps its count (only lock holders take it), so the
        // `Arc` is alive; we add a count for the clone we return.
        let reg = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        reg.is_open().then_some(reg)
    }

    /// Registers `fd` with `reactor` unless a live registration exists (a stale one is
    /// replaced). Returns the errno of a failed registration.
    pub(super) fn register(&self, fd: RawFd, reactor: Arc<Reactor>) -> Result<(), i32> {
        let l = self.lock();
        let p = self.reg.load(Relaxed);
        // SAFETY: as in `registration`: `reg` is alive under the lock.
        if !p.is_null() && unsafe { (*p).is_open() } {
            return Ok(());
        }
        let stale = self.reg.swap(ptr::null_mut(), Relaxed);
        if !stale.is_null() {
            // SAFETY: as in `take_registration`: the swapped-out count is ours.
            let stale = unsafe { Arc::from_raw(stale) };
            stale.reactor.deregister(fd, stale.token); // the fd is open: we are using it
        }
        let (token, io) = reactor
            .register(fd)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOMEM))?;
        let reg = Arc::new(Registration { reactor, token, io });
        self.reg.store(Arc::into_raw(reg).cast_mut(), Relaxed);
        drop(l);
        Ok(())
    }
}

struct SlotLock<'a>(&'a Slot);

impl Drop for SlotLock<'_> {
    fn drop(&mut self) {
        // Release publishes our `reg` changes to the next holder's Acquire.
        self.0.flags.fetch_and(!LOCKED, Release);
    }
}
