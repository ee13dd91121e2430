//! Every started, unfinished fiber of a worker: shutdown unwinds them, dumps list them.

use std::sync::Mutex;

use crate::fiber::FiberRef;

#[derive(Default)]
pub(crate) struct Registry {
    slab: Mutex<Slab>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<FiberRef>>,
    free: Vec<usize>,
}

impl Registry {
    /// Returns the key to remove it with.
    pub(crate) fn insert(&self, fiber: FiberRef) -> usize {
        let mut slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        match slab.free.pop() {
            Some(key) => {
                slab.entries[key] = Some(fiber);
                key
            }
            None => {
                slab.entries.push(Some(fiber));
                slab.entries.len() - 1
            }
        }
    }

    pub(crate) fn remove(&self, key: usize) -> Option<FiberRef> {
        let mut slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        let fiber = slab.entries.get_mut(key)?.take();
        if fiber.is_some() {
            slab.free.push(key);
        }
        fiber
    }

    /// The registered fiber with id `id` (the monitor's report looks names up here).
    pub(crate) fn find(&self, id: u64) -> Option<FiberRef> {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.entries
            .iter()
            .flatten()
            .find(|f| f.identity.id == id)
            .cloned()
    }

    /// Fibers registered (the monitor's "N fibers wait on this worker").
    pub(crate) fn len(&self) -> usize {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.entries.len() - slab.free.len()
    }

    /// No fiber registered (a spare worker retires only then).
    pub(crate) fn is_empty(&self) -> bool {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.entries.len() == slab.free.len()
    }

    pub(crate) fn snapshot(&self) -> Vec<FiberRef> {
        let slab = self.slab.lock().unwrap_or_else(|e| e.into_inner());
        slab.entries.iter().flatten().cloned().collect()
    }
}
