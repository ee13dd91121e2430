//! Every runtime session alive in the process, so `fibra::debug` can find them from a plain
//! thread (or a signal's dump thread). A session enters at start and leaves at shutdown; the
//! list holds weak references only, so it never keeps a session alive.

use std::sync::{Arc, Mutex, Weak};

use super::Shared;

/// `(runtime key, session)`: the key tells sessions of different `Runtime`s apart
/// (`Runtime::dump` lists only its own).
static SESSIONS: Mutex<Vec<(usize, Weak<Shared>)>> = Mutex::new(Vec::new());

fn sessions() -> std::sync::MutexGuard<'static, Vec<(usize, Weak<Shared>)>> {
    SESSIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Session start (`Runtime::run`).
pub(crate) fn enter(runtime_key: usize, shared: &Arc<Shared>) {
    /// Sessions started so far: numbers them for debuggers (sched/anchor.rs).
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    super::anchor::link(shared, n);
    sessions().push((runtime_key, Arc::downgrade(shared)));
}

/// Session end: removes it (and any entry whose session is gone).
pub(crate) fn leave(shared: &Arc<Shared>) {
    let me = Arc::as_ptr(shared);
    sessions().retain(|(_, w)| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), me));
}

/// The live sessions, oldest first; of one runtime when `runtime_key` is given.
pub(crate) fn live(runtime_key: Option<usize>) -> Vec<Arc<Shared>> {
    sessions()
        .iter()
        .filter(|(k, _)| runtime_key.is_none_or(|r| r == *k))
        .filter_map(|(_, w)| w.upgrade())
        .collect()
}
