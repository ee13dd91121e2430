//! Every started, unfinished fiber of a worker: shutdown unwinds them, dumps list them.
//!
//! The slab keeps one raw `*const Header` per slot (null when free) rather than an
//! `Option<FiberRef>`, so a debugger can read it with a fixed layout: the slab's buffer and
//! length are mirrored into `view` (sched/anchor.rs), which gdb walks from the anchor.

use std::sync::Mutex;

use super::anchor::RegistryView;
use crate::fiber::{FiberRef, Header};

#[derive(Default)]
pub(crate) struct Registry {
    slab: Mutex<Slab>,
    /// The slab as a debugger sees it; linked into the anchor's list for the session's life.
    pub(crate) view: RegistryView,
}

/// `entries[k]` is null (free) or came from `FiberRef::into_raw` and owns that count.
#[derive(Default)]
struct Slab {
    entries: Vec<*const Header>,
    free: Vec<usize>,
}

// SAFETY: the raw pointers are owned counts of `Arc<Header>`s (the struct's invariant), and
// `FiberRef` is `Send + Sync`, so moving or sharing the slab moves or shares those counts.
unsafe impl Send for Slab {}

/// A counted reference to `*entry`, if the slot is taken.
fn clone_entry(entry: *const Header) -> Option<FiberRef> {
    if entry.is_null() {
        return None;
    }
    // SAFETY: a non-null entry owns one count (`Slab` invariant) and the caller holds the slab
    // lock, so the count cannot be released meanwhile; we add one for the new reference.
    unsafe {
        std::sync::Arc::increment_strong_count(entry);
        Some(std::sync::Arc::from_raw(entry))
    }
}

impl Registry {
    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.slab.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the key to remove it with.
    pub(crate) fn insert(&self, fiber: FiberRef) -> usize {
        let mut slab = self.slab();
        let raw = FiberRef::into_raw(fiber);
        match slab.free.pop() {
            Some(key) => {
                slab.entries[key] = raw;
                key
            }
            None => {
                slab.entries.push(raw);
                // The buffer may have moved: the debugger's copy follows (under the lock).
                self.view.publish(slab.entries.as_ptr(), slab.entries.len());
                slab.entries.len() - 1
            }
        }
    }

    pub(crate) fn remove(&self, key: usize) -> Option<FiberRef> {
        let mut slab = self.slab();
        let entry = slab.entries.get_mut(key)?;
        let raw = std::mem::replace(entry, std::ptr::null());
        if raw.is_null() {
            return None;
        }
        slab.free.push(key);
        // SAFETY: the entry owned this count (`Slab` invariant) and is now null, so the count
        // passes to the returned reference exactly once.
        Some(unsafe { FiberRef::from_raw(raw) })
    }

    /// The registered fiber with id `id` (the monitor's report looks names up here).
    pub(crate) fn find(&self, id: u64) -> Option<FiberRef> {
        let slab = self.slab();
        let found = slab.entries.iter().copied().find(|&e| {
            // SAFETY: a non-null entry owns a count (`Slab` invariant), held while we hold the
            // lock, so the header is alive for this read.
            !e.is_null() && unsafe { (*e).identity.id } == id
        })?;
        clone_entry(found)
    }

    /// Fibers registered (the monitor's "N fibers wait on this worker").
    pub(crate) fn len(&self) -> usize {
        let slab = self.slab();
        slab.entries.len() - slab.free.len()
    }

    /// No fiber registered (a spare worker retires only then).
    pub(crate) fn is_empty(&self) -> bool {
        let slab = self.slab();
        slab.entries.len() == slab.free.len()
    }

    pub(crate) fn snapshot(&self) -> Vec<FiberRef> {
        let slab = self.slab();
        slab.entries
            .iter()
            .filter_map(|&e| clone_entry(e))
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        super::anchor::unlink(&self.view);
        let slab = self.slab.get_mut().unwrap_or_else(|e| e.into_inner());
        for raw in slab.entries.drain(..).filter(|e| !e.is_null()) {
            // SAFETY: a non-null entry owns one count (`Slab` invariant); draining releases it
            // once.
            drop(unsafe { FiberRef::from_raw(raw) });
        }
    }
}
