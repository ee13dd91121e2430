//! std or loom, chosen in one place.
//!
//! Lock-free code imports its synchronization primitives from here, never from `std` directly, so
//! that `RUSTFLAGS="--cfg loom"` swaps every one of them for loom's model-checked twin. The module
//! mirrors loom's own layout (`sync`, `sync::atomic`, `cell`, `thread`, `hint`), so a call site
//! reads the same under both cfgs:
//! ```text
//! use crate::loom::{cell::UnsafeCell, sync::atomic::{AtomicU32, Ordering::Release}};
//! ```
//! Capacities that loom must explore exhaustively shrink under it, e.g.
//! `const CAPACITY: usize = if cfg!(loom) { 4 } else { 256 };`.

/// The atomics most files need, also at the top level (`crate::loom::{AtomicU32, Ordering::*}`).
#[allow(unused_imports)] // as below
pub(crate) use self::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) mod sync {
    #[allow(unused_imports)] // the shim offers the whole family; each build uses a subset
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        #[allow(unused_imports)] // as above
        pub(crate) use std::sync::atomic::*;
    }
}

#[cfg(loom)]
pub(crate) mod sync {
    #[allow(unused_imports)] // the shim offers the whole family; each build uses a subset
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        #[allow(unused_imports)] // as above
        pub(crate) use loom::sync::atomic::*;
    }
}

#[cfg(not(loom))]
#[allow(unused_imports)] // used by tests and by some builds only
pub(crate) use std::{hint, thread};

#[cfg(loom)]
#[allow(unused_imports)] // used by tests and by some builds only
pub(crate) use loom::{hint, thread};

#[cfg(loom)]
pub(crate) mod cell {
    pub(crate) use loom::cell::UnsafeCell;
}

#[cfg(not(loom))]
pub(crate) mod cell {
    /// `std::cell::UnsafeCell` with loom's closure API (`with` / `with_mut`), so that code
    /// written against it compiles under both cfgs. Each call compiles to the bare pointer access.
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[allow(dead_code)] // the shim offers loom's whole API; each build uses a subset
    impl<T> UnsafeCell<T> {
        #[inline(always)]
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the value. Loom checks that no `with_mut` overlaps.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a unique raw pointer to the value. Loom checks that no other access overlaps.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// A thread lock for short critical sections that never block, park or run user code (the
/// state of a channel or of a `fibra::sync` primitive).
///
/// Off loom it is `parking_lot::Mutex`: it spins briefly, then parks the thread, and its unlock
/// makes a syscall only when a thread is really parked. std's futex mutex marks itself
/// contended for good once a thread has waited, so under steady contention between two workers
/// every unlock made a `futex` wake call: 8 producers → 1 consumer through `bounded(128)`, with
/// the fibers spread over 2 workers, made ~200k futex calls per 2M items and ran at 110–180 ns
/// per item; with this lock, 20–100 ns (the `fan_in` example). Under loom it is loom's model-
/// checked `Mutex` behind the same API (`lock` returns the guard: no poisoning).
#[cfg(not(loom))]
pub(crate) mod lock {
    #[allow(unused_imports)] // files that include this module by path use a subset
    pub(crate) use parking_lot::{Mutex, MutexGuard};
}

#[cfg(loom)]
pub(crate) mod lock {
    pub(crate) use loom::sync::MutexGuard;

    /// loom's `Mutex` with `parking_lot`'s API.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Defines a `const fn` off loom and a plain `fn` under it, from one definition: loom's atomics
/// and locks have no `const` constructors, and std's (and parking_lot's) do, so the sync
/// primitives' `new` can be `const` (and the primitives `static`s) in every real build.
/// ```text
/// crate::loom::const_fn! {
///     /// Docs.
///     pub fn new() -> Thing { Thing { state: AtomicU32::new(0) } }
/// }
/// ```
#[allow(unused_macros)] // files that include this module by path (benches) use none
macro_rules! const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
#[allow(unused_imports)] // as above
pub(crate) use const_fn;
