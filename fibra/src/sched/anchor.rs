//! The debugger anchor: one `#[no_mangle]` static that a debugger (gdb, `fibra/gdb/fibra_gdb.py`;
//! lldb, `fibra/lldb/fibra_lldb.py`) finds by name and walks with fixed, documented layouts, in
//! a live process or a core dump, without running any of the process's code. A change here is a
//! change to both scripts.
//!
//! # Why an anchor, not the debug info
//! The runtime keeps its fibers in std containers (`Mutex<Vec<Weak<Shared>>>`, `Arc`s), whose
//! layouts change between Rust releases; a script that walks them through DWARF breaks with
//! the toolchain. The anchor instead states the few facts a debugger needs in `#[repr(C)]`
//! form, computed by the compiler (`offset_of!`) or measured once at start-up, and bumps
//! [`VERSION`] when their meaning changes. It costs nothing on the hot paths: the registry
//! mirrors its buffer on growth only (a fiber's first park), and the lists change at session
//! start and end.
//!
//! # Layout (version 1, x86-64)
//! ```text
//! FIBRA_DEBUGGER_ANCHOR (Anchor)
//!   magic "FIBRADBG", version, size of Anchor
//!   header_* : byte offsets from a `*const Header` (a registry entry) of
//!              id (u64) · name (Option<Box<str>>: two words, the pointer word null = no name,
//!              which word is the pointer: name_ptr_word) · state (u32: low 2 bits
//!              0 scheduled, 1 parked, 2 cancelling, 3 complete) · reason (u8: index into
//!              reason_names) · home (u32: worker index, u32::MAX before the first run) ·
//!              saved_sp (usize: a suspended fiber's saved stack pointer; 0 = unknown offset)
//!   reason_names, reason_names_len: "None\0User\0Sleep\0…", in `ParkReason` order
//!   views ──▶ RegistryView ──next──▶ RegistryView ──▶ … (null-terminated; one per worker)
//!              session, worker, entries ──▶ [*const Header; len] (null = free slot)
//! ```
//! A suspended fiber's saved stack pointer `sp` points at three words corosensei pushed
//! (`arch/x86_64.rs`): the resume address, then the saved `rbx` and `rbp`; the fiber's stack
//! pointer at that address is `sp + 24`. Unwinding from there with the binary's CFI gives the
//! fiber's stack, down to its entry (`fiber_root`).
//!
//! # Consistency
//! Writers update the lists under `LIST_LOCK` and a registry's mirror under the registry's
//! lock; a debugger reads while the process is stopped, so it may catch a list mid-update (a
//! registry that just grew, a view being unlinked) and must check what it reads (the script
//! bounds lengths and skips unreadable memory). Nothing in the process reads the mirrors.

use std::mem::offset_of;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, Once};

use crate::fiber::header::Header;
use crate::fiber::identity::FiberIdentity;

/// Bumped whenever a field's meaning or the walk changes; the scripts refuse other versions.
pub(crate) const VERSION: u32 = 1;

/// The `ParkReason` names, in discriminant order (a unit test checks them against the enum).
const REASON_NAMES: &str = "None\0User\0Sleep\0Join\0BlockOn\0Scope\0MutexLock\0RwLockRead\0\
RwLockWrite\0Condvar\0Semaphore\0Barrier\0WaitGroup\0OnceInit\0Notify\0ChanSend\0ChanRecv\0\
Select\0Blocking\0BlockingJoin\0IoRead\0IoWrite\0Accept\0Connect\0FileIo\0";

/// See the module doc for each field. `#[repr(C)]`: the script reads it by offset.
#[repr(C)]
pub(crate) struct Anchor {
    magic: [u8; 8],
    version: u32,
    size: u32,
    header_id: u32,
    header_name: u32,
    /// 0 or 1: which word of the name is the pointer (measured once: `init`).
    name_ptr_word: AtomicU32,
    header_state: u32,
    header_reason: u32,
    header_home: u32,
    /// Set once by `init` (the probe); 0 until then or if the probe failed.
    header_saved_sp: AtomicU32,
    reason_names_len: u32,
    reason_names: *const u8,
    views: AtomicPtr<RegistryView>,
}

// SAFETY: `reason_names` points to an immutable `'static` string; every field that changes is
// an atomic. Sharing the anchor between threads shares nothing mutable without atomics.
unsafe impl Sync for Anchor {}

/// The anchor the debugger scripts look up by this exact symbol name.
#[no_mangle]
#[used]
pub(crate) static FIBRA_DEBUGGER_ANCHOR: Anchor = Anchor {
    magic: *b"FIBRADBG",
    version: VERSION,
    size: std::mem::size_of::<Anchor>() as u32,
    header_id: (offset_of!(Header, identity) + offset_of!(FiberIdentity, id)) as u32,
    header_name: (offset_of!(Header, identity) + offset_of!(FiberIdentity, name)) as u32,
    name_ptr_word: AtomicU32::new(0),
    header_state: (offset_of!(Header, state) + crate::fiber::state::WORD_OFFSET) as u32,
    header_reason: offset_of!(Header, reason) as u32,
    header_home: offset_of!(Header, home) as u32,
    header_saved_sp: AtomicU32::new(0),
    reason_names_len: REASON_NAMES.len() as u32,
    reason_names: REASON_NAMES.as_ptr(),
    views: AtomicPtr::new(std::ptr::null_mut()),
};

// The script decodes these; a change here is a new `VERSION`.
const _: () = {
    let (mask, values) = crate::fiber::state::DEBUGGER_LIFECYCLE;
    assert!(mask == 0b11);
    assert!(values[0] == 0 && values[1] == 1 && values[2] == 2 && values[3] == 3);
    assert!(std::mem::size_of::<Option<Box<str>>>() == 16);
    assert!(crate::fiber::header::NO_HOME == u32::MAX);
};

/// One worker's registry as a debugger sees it (see the module doc). Lives in the registry,
/// inside the session's `Shared`, so its address is stable while it is linked.
#[repr(C)]
#[derive(Default)]
pub(crate) struct RegistryView {
    next: AtomicPtr<RegistryView>,
    session: AtomicUsize,
    worker: AtomicUsize,
    entries: AtomicPtr<*const Header>,
    len: AtomicUsize,
}

impl RegistryView {
    /// The registry's buffer moved or grew. Under the registry's lock. Relaxed: only a
    /// debugger reads these, with the process stopped.
    pub(crate) fn publish(&self, entries: *const *const Header, len: usize) {
        self.entries.store(entries.cast_mut(), Relaxed);
        self.len.store(len, Relaxed);
    }
}

/// Serialises the writers of the `views` list.
static LIST_LOCK: Mutex<()> = Mutex::new(());

fn list_lock() -> std::sync::MutexGuard<'static, ()> {
    LIST_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Session start: lists the session's workers (`session` numbers sessions for the script).
/// Measures the layouts `offset_of!` cannot give, once per process.
pub(crate) fn link(shared: &super::Shared, session: usize) {
    static INIT: Once = Once::new();
    INIT.call_once(|| measure(shared));
    let _g = list_lock();
    // Pushed in reverse so the list reads worker 0 first.
    for (i, slot) in shared.slots.iter().enumerate().rev() {
        let view = &slot.registry.view;
        view.session.store(session, Relaxed);
        view.worker.store(i, Relaxed);
        view.next
            .store(FIBRA_DEBUGGER_ANCHOR.views.load(Relaxed), Relaxed);
        let me = std::ptr::from_ref(view).cast_mut();
        FIBRA_DEBUGGER_ANCHOR.views.store(me, Relaxed);
    }
}

/// The registry is going away: takes its view off the list (if it is on it).
pub(crate) fn unlink(view: &RegistryView) {
    let _g = list_lock();
    let me = std::ptr::from_ref(view).cast_mut();
    let mut link = &FIBRA_DEBUGGER_ANCHOR.views;
    loop {
        let cur = link.load(Relaxed);
        if cur.is_null() {
            return; // never linked (a runtime built but not run)
        }
        if cur == me {
            link.store(view.next.load(Relaxed), Relaxed);
            return;
        }
        // SAFETY: every view on the list is alive: a view is linked by `link` and taken off
        // here, by its registry's `Drop`, before its memory goes; both hold `LIST_LOCK`.
        link = unsafe { &(*cur).next };
    }
}

/// Fills in the two layouts `offset_of!` cannot reach.
fn measure(shared: &super::Shared) {
    let name: Option<Box<str>> = Some("fibra".into());
    // SAFETY: `Option<Box<str>>` is two words (asserted above), both initialised (a non-null
    // pointer and a length); reading them as integers reads no padding.
    let words: [usize; 2] = unsafe { std::mem::transmute_copy(&name) };
    let ptr_word = u32::from(words[0] == 5); // the other word is the length, 5
    FIBRA_DEBUGGER_ANCHOR.name_ptr_word.store(ptr_word, Relaxed);
    if let Some(off) = probe::saved_sp_offset(shared) {
        let at = offset_of!(Header, coroutine) + off;
        FIBRA_DEBUGGER_ANCHOR
            .header_saved_sp
            .store(at as u32, Relaxed);
    }
}

#[cfg(not(any(miri, loom)))]
mod probe {
    use corosensei::{Coroutine, CoroutineResult, Yielder};

    use crate::fiber::switch::{FiberCoroutine, Suspend};

    /// Where, inside an `Option<FiberCoroutine>`, corosensei keeps a suspended coroutine's
    /// stack pointer (a private field). A new coroutine holds its start stack pointer twice
    /// (current and initial); after one suspend exactly one of the two has moved: that is it.
    pub(super) fn saved_sp_offset(shared: &crate::sched::Shared) -> Option<usize> {
        let stack = shared.stacks.take(crate::stack::MIN_STACK_SIZE).ok()?;
        let body = |y: &Yielder<(), Suspend>, ()| {
            y.suspend(Suspend::Yield);
        };
        let mut co: Option<FiberCoroutine> = Some(Coroutine::with_stack(stack, body));
        let before = words(&co);
        let yielded = matches!(co.as_mut()?.resume(()), CoroutineResult::Yield(_));
        let after = words(&co);
        let finished = matches!(co.as_mut()?.resume(()), CoroutineResult::Return(()));
        let coroutine = co.take()?;
        if finished {
            shared.stacks.give(coroutine.into_stack());
        } // else: dropping it unwinds it, and its stack is unmapped with the pool
        let moved: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        match moved[..] {
            [i] if yielded && before.iter().filter(|&&w| w == before[i]).count() == 2 => {
                Some(i * size_of::<usize>())
            }
            _ => None,
        }
    }

    fn words(co: &Option<FiberCoroutine>) -> Vec<usize> {
        const { assert!(size_of::<Option<FiberCoroutine>>() % size_of::<usize>() == 0) };
        let n = size_of::<Option<FiberCoroutine>>() / size_of::<usize>();
        // SAFETY: corosensei's `Coroutine<_, _, _, FiberStack>` holds only word-sized fields
        // (the stack's three words, two stack pointers, a fn pointer, zero-sized markers or
        // the sanitizer's two words) and `Option` stores its tag in a niche, so every byte is
        // initialised; `co` is borrowed for the read.
        let all = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(co).cast::<usize>(), n) };
        all.to_vec()
    }
}

#[cfg(any(miri, loom))]
mod probe {
    /// No stack switching under Miri or loom: the saved stack pointer stays unknown.
    pub(super) fn saved_sp_offset(_: &crate::sched::Shared) -> Option<usize> {
        None
    }
}

/// The address, inside `fiber`'s header, of the word where its coroutine keeps its saved
/// stack pointer while suspended (0 while it runs); `None` if the start-up probe could not
/// find that word. For readers that copy it through the kernel (`sched/lock_holder.rs`).
pub(crate) fn saved_sp_slot(fiber: &Header) -> Option<usize> {
    let off = FIBRA_DEBUGGER_ANCHOR.header_saved_sp.load(Relaxed) as usize;
    (off != 0).then(|| std::ptr::from_ref(fiber) as usize + off)
}

/// Bytes corosensei's switch pushes at a suspended coroutine's saved stack pointer: the
/// resume address, `rbx`, `rbp` (module doc).
pub(crate) const SAVED_WORDS: usize = 3;

/// The anchor's view of `fiber`'s saved registers `(ip, sp after resume, rbx, rbp)` if it is
/// suspended, read the way the gdb script reads them (for the tests).
#[cfg(all(test, not(any(miri, loom)), target_arch = "x86_64"))]
pub(crate) fn saved_registers(fiber: &Header) -> Option<(u64, u64, u64, u64)> {
    let off = FIBRA_DEBUGGER_ANCHOR.header_saved_sp.load(Relaxed) as usize;
    if off == 0 {
        return None;
    }
    let base = std::ptr::from_ref(fiber).cast::<u8>();
    // SAFETY: `off` lies inside `Header` (the coroutine field plus an offset inside it,
    // measured by `probe`), at a word the probe found to be initialised; the caller owns the
    // suspended fiber's run, so the coroutine does not change while we read.
    let sp = unsafe { base.add(off).cast::<usize>().read_unaligned() };
    if sp == 0 {
        return None;
    }
    let sp = sp as *const u64;
    // SAFETY: a suspended coroutine's saved stack pointer points at the three words its
    // switch pushed (module doc), on its stack, which stays mapped while it is suspended.
    let (ip, rbx, rbp) = unsafe { (sp.read(), sp.add(1).read(), sp.add(2).read()) };
    Some((ip, sp as u64 + 24, rbx, rbp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_follow_the_enum() {
        let names: Vec<&str> = REASON_NAMES.trim_end_matches('\0').split('\0').collect();
        for (i, name) in names.iter().enumerate() {
            let r = crate::park::ParkReason::from_u8(i as u8);
            assert_eq!(format!("{r:?}"), *name, "reason {i}");
        }
        // One past the last name is no reason: the table is complete.
        let past = crate::park::ParkReason::from_u8(names.len() as u8);
        assert_eq!(past, crate::park::ParkReason::None);
    }

    /// Does something after its park, so the park is no tail call: a sibling call would
    /// leave no frame of this function on the stack in a release build.
    #[inline(never)]
    fn anchor_test_parks_here() -> u8 {
        crate::park::park(crate::park::ParkReason::User);
        std::hint::black_box(1)
    }

    /// The saved registers the anchor points a debugger at unwind, with the binary's CFI, to
    /// the function that parked and on to the fiber's entry: what `fiber N bt` shows.
    #[test]
    #[cfg(all(not(any(miri, loom)), target_arch = "x86_64"))]
    fn saved_registers_unwind_to_the_parking_function() {
        crate::Runtime::builder()
            .workers(1)
            .build()
            .unwrap()
            .run(|| {
                let h = crate::Builder::new()
                    .name("napper")
                    .spawn(anchor_test_parks_here)
                    .unwrap();
                while h.fiber().park_reason() != crate::ParkReason::User {
                    crate::yield_now();
                }
                let id = h.fiber().id().as_u64();
                let shared =
                    crate::sched::context::with_current_fiber(|f| f.unwrap().shared.clone());
                let fiber = shared.slots[0]
                    .registry
                    .find(id)
                    .expect("a parked fiber is registered");
                assert!(
                    FIBRA_DEBUGGER_ANCHOR.header_saved_sp.load(Relaxed) != 0,
                    "probe failed"
                );
                let (ip, sp, _rbx, rbp) = saved_registers(&fiber).expect("suspended");
                // The stack's top: corosensei's parent link sits 16 bytes below it, and the
                // fiber's yielder points at that link.
                let top = fiber.yielder.get() as u64 + 16;
                assert!(sp < top && top - sp < 64 * 1024, "sp {sp:#x} top {top:#x}");
                // SAFETY: `[sp, top)` is the parked fiber's live stack, mapped while it is
                // suspended, which it stays: only we could unpark it.
                let stack =
                    unsafe { std::slice::from_raw_parts(sp as *const u8, (top - sp) as usize) };
                let frames = crate::sys::symbolise(&crate::sys::unwind(ip, sp, rbp, stack));
                let names: Vec<&str> = frames.iter().map(|f| f.0.as_str()).collect();
                let at = |pat: &str| names.iter().position(|n| n.contains(pat));
                let parked = at("anchor_test_parks_here").unwrap_or_else(|| panic!("{names:#?}"));
                let root = at("fiber_root").unwrap_or_else(|| panic!("{names:#?}"));
                assert!(parked < root, "{names:#?}");
                drop(fiber);
                h.fiber().unpark();
                h.join().unwrap();
            });
    }
}
