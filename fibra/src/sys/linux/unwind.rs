//! Unwinding a copied stack (from `capture.rs`, or a parked fiber's saved registers) with the
//! loaded objects' DWARF CFI (`.eh_frame`, found through `PT_GNU_EH_FRAME`), by framehop, and
//! symbolising the addresses with the `backtrace` crate (the binary's debug info). Runs on an
//! ordinary thread, never in a signal handler.

use std::ffi::CStr;
use std::ops::Range;
use std::sync::OnceLock;

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};

/// Frames followed at most (a runaway recursion need not be listed whole).
const MAX_FRAMES: usize = 256;

/// The loaded objects' unwind tables, read once: fibra does not follow `dlopen`s made later
/// (their frames end the unwind).
///
/// # Why the tables may be borrowed for `'static`
/// The unwinder keeps slices of each object's mapped sections. The program itself and the
/// vDSO are never unmapped; every other object is first made undeletable with
/// `dlopen(name, RTLD_NOLOAD | RTLD_NODELETE)` (a no-op for the libraries the program was
/// linked with, which are never unloaded anyway), and only objects that pin succeeds for are
/// read, in a second walk after the pins.
fn unwinder() -> &'static UnwinderX86_64<&'static [u8]> {
    static UNWINDER: OnceLock<UnwinderX86_64<&'static [u8]>> = OnceLock::new();
    UNWINDER.get_or_init(|| {
        let is_fixed = |name: &str| name.is_empty() || name.contains("linux-vdso");
        let mut pinned = Vec::new();
        for name in walk(|info, _| Some(object_name(info))) {
            if is_fixed(&name) {
                continue;
            }
            let Ok(c) = std::ffi::CString::new(name.clone()) else {
                continue;
            };
            let flags = libc::RTLD_NOLOAD | libc::RTLD_NODELETE | libc::RTLD_LAZY;
            // SAFETY: `c` is a NUL-terminated path; RTLD_NOLOAD loads nothing new, it only
            // returns (and, with RTLD_NODELETE, pins) an object already loaded. The handle is
            // deliberately never closed.
            if !unsafe { libc::dlopen(c.as_ptr(), flags) }.is_null() {
                pinned.push(name);
            }
        }
        let mut u = UnwinderX86_64::new();
        let modules = walk(|info, phdrs| {
            let name = object_name(info);
            (is_fixed(&name) || pinned.contains(&name))
                .then(|| module_of(info, phdrs))
                .flatten()
        });
        for m in modules {
            u.add_module(m);
        }
        u
    })
}

/// The loader's name for an object ("" for the program itself).
fn object_name(info: &libc::dl_phdr_info) -> String {
    if info.dlpi_name.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated name owned by the loader, valid during the walk.
    unsafe { CStr::from_ptr(info.dlpi_name) }
        .to_string_lossy()
        .into_owned()
}

type Visit<'a, T> = &'a mut dyn FnMut(&libc::dl_phdr_info, &[libc::Elf64_Phdr]) -> Option<T>;

/// Calls `visit` on each loaded object (`dl_iterate_phdr`) and collects what it returns.
fn walk<T>(mut visit: impl FnMut(&libc::dl_phdr_info, &[libc::Elf64_Phdr]) -> Option<T>) -> Vec<T> {
    unsafe extern "C" fn each<T>(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the
        // call, and `data` is the `&mut state` that `walk` handed it, of this very `T`.
        let (info, state) = unsafe { (&*info, &mut *data.cast::<(Visit<'_, T>, Vec<T>)>()) };
        let phdrs = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) }
        };
        if let Some(v) = (state.0)(info, phdrs) {
            state.1.push(v);
        }
        0
    }
    let mut state: (Visit<'_, T>, Vec<T>) = (&mut visit, Vec::new());
    // SAFETY: `each::<T>` matches the callback type and only uses what it is given; `state`
    // outlives the call. `visit` only reads headers and allocates, so nothing unwinds
    // through the loader's frames.
    unsafe { libc::dl_iterate_phdr(Some(each::<T>), std::ptr::from_mut(&mut state).cast()) };
    state.1
}

fn module_of(
    info: &libc::dl_phdr_info,
    phdrs: &[libc::Elf64_Phdr],
) -> Option<Module<&'static [u8]>> {
    let base = info.dlpi_addr;
    let loads: Vec<Range<u64>> = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD)
        .map(|p| p.p_vaddr..p.p_vaddr + p.p_memsz)
        .collect();
    let text = phdrs
        .iter()
        .find(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
        .map(|p| p.p_vaddr..p.p_vaddr + p.p_memsz)?;
    let hdr = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME)?;
    let hdr_svma = hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz;
    let bytes = |r: &Range<u64>| -> &'static [u8] {
        // SAFETY: the object is loaded (we are inside `dl_iterate_phdr` for it) and stays
        // loaded: only the program, the vDSO and pinned objects get here (`unwinder`). Each
        // range lies in a `PT_LOAD` segment, which is mapped.
        unsafe {
            std::slice::from_raw_parts((base + r.start) as *const u8, (r.end - r.start) as usize)
        }
    };
    let hdr_bytes = bytes(&hdr_svma);
    let eh_frame_start = eh_frame_address(hdr_bytes, hdr_svma.start)?;
    // `.eh_frame`'s length is not recorded; it runs at most to the end of its segment.
    let seg = loads.iter().find(|r| r.contains(&eh_frame_start))?;
    let eh_frame_svma = eh_frame_start..seg.end;
    let name = object_name(info);
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(text.clone()),
        text: Some(bytes(&text)),
        eh_frame_svma: Some(eh_frame_svma.clone()),
        eh_frame: Some(bytes(&eh_frame_svma)),
        eh_frame_hdr_svma: Some(hdr_svma),
        eh_frame_hdr: Some(hdr_bytes),
        ..Default::default()
    };
    Some(Module::new(
        name,
        base + text.start..base + text.end,
        base,
        info,
    ))
}

/// The address of `.eh_frame` from the `.eh_frame_hdr` at `hdr_svma`: its second byte says how
/// the pointer at offset 4 is encoded (almost always `pcrel | sdata4`, 0x1b).
fn eh_frame_address(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    let (version, enc) = (*hdr.first()?, *hdr.get(1)?);
    if version != 1 {
        return None;
    }
    let field = hdr.get(4..8)?;
    let v = i32::from_le_bytes(field.try_into().ok()?) as i64;
    match enc {
        0x1b => Some((hdr_svma as i64 + 4 + v) as u64), // pcrel | sdata4
        0x3b => Some((hdr_svma as i64 + v) as u64),     // datarel | sdata4
        0x03 => Some(u32::from_le_bytes(field.try_into().ok()?) as u64), // absptr udata4
        _ => None,
    }
}

/// Return addresses (the first is the instruction pointer) of the stack whose registers are
/// `ip, sp, bp` and whose bytes from `sp` up are `stack`. Stops where the copy ends.
pub(crate) fn unwind(ip: u64, sp: u64, bp: u64, stack: &[u8]) -> Vec<FrameAddress> {
    let mut cache = CacheX86_64::<_>::new();
    let mut read = |addr: u64| -> Result<u64, ()> {
        let off = addr.checked_sub(sp).ok_or(())? as usize;
        let b = stack.get(off..off + 8).ok_or(())?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| ())?))
    };
    let mut frames = Vec::new();
    let mut it =
        unwinder().iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), &mut cache, &mut read);
    while let Ok(Some(f)) = it.next() {
        frames.push(f);
        if frames.len() >= MAX_FRAMES {
            break;
        }
    }
    frames
}

/// One symbolised frame: `(function, file:line:col)`. Inlined calls give several per address.
pub(crate) fn symbolise(frames: &[FrameAddress]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for f in frames {
        let addr = f.address_for_lookup();
        let mut found = false;
        backtrace::resolve(addr as *mut std::ffi::c_void, |sym| {
            found = true;
            let name = sym
                .name()
                .map_or_else(|| format!("{addr:#x}"), |n| format!("{n:#}"));
            let loc = match (sym.filename(), sym.lineno()) {
                (Some(file), Some(line)) => Some(match sym.colno() {
                    Some(col) => format!("{}:{line}:{col}", file.display()),
                    None => format!("{}:{line}", file.display()),
                }),
                _ => None,
            };
            out.push((name, loc));
        });
        if !found {
            out.push((format!("{addr:#x}"), None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here(depth: u32) -> Vec<(String, Option<String>)> {
        if depth > 0 {
            return std::hint::black_box(here(depth - 1));
        }
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers into locals; no memory is touched.
        unsafe {
            std::arch::asm!("lea {}, [rip]", "mov {}, rsp", "mov {}, rbp", out(reg) ip, out(reg) sp, out(reg) bp);
        }
        let (_, hi) = crate::sys::own_stack_bounds().unwrap();
        let len = (hi - sp as usize).min(64 * 1024);
        // SAFETY: `[sp, hi)` is this thread's live stack, mapped while it runs.
        let stack = unsafe { std::slice::from_raw_parts(sp as *const u8, len) }.to_vec();
        symbolise(&unwind(ip, sp, bp, &stack))
    }

    #[test]
    fn unwinds_a_copy_of_its_own_stack() {
        let frames = here(3);
        let names: Vec<_> = frames.iter().map(|f| f.0.as_str()).collect();
        let depth = names
            .iter()
            .filter(|n| n.ends_with("unwind::tests::here"))
            .count();
        assert!(depth >= 4, "{names:#?}");
        assert!(
            names
                .iter()
                .any(|n| n.contains("unwinds_a_copy_of_its_own_stack")),
            "{names:#?}"
        );
    }
}
