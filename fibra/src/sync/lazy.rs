//! `Lazy<T>`: a value computed on first use (std's `LazyLock`), on top of `OnceCell`.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::panic::{RefUnwindSafe, UnwindSafe};

use super::once::OnceCell;

/// A value initialised by `F` on first access; concurrent first accesses park until the one
/// initialiser finishes (see [`OnceCell::get_or_init`]).
///
/// If the initialiser panics, the value stays uninitialised and every later access panics
/// (like std's `LazyLock`), so a panic never leaves a half-built value behind: `Lazy` is
/// `UnwindSafe`/`RefUnwindSafe` on std's `LazyLock` bounds. [`Lazy::new`] is `const`, so a
/// `Lazy` can be a `static`:
/// ```
/// static TABLE: fibra::sync::Lazy<Vec<u32>> = fibra::sync::Lazy::new(|| (0..4).map(|i| i * i).collect());
/// # fibra::run(|| {
/// assert_eq!(TABLE[3], 9);
/// # });
/// ```
///
/// ```
/// # fibra::run(|| {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
/// let lazy = Arc::new(fibra::sync::Lazy::new(|| { RUNS.fetch_add(1, SeqCst); 42 }));
/// let fibers: Vec<_> = (0..4).map(|_| { let l = lazy.clone(); fibra::spawn(move || **l) }).collect();
/// assert!(fibers.into_iter().all(|f| f.join().unwrap() == 42));
/// assert_eq!(RUNS.load(SeqCst), 1);
/// # });
/// ```
pub struct Lazy<T, F = fn() -> T> {
    cell: OnceCell<T>,
    init: UnsafeCell<Option<F>>,
}

// SAFETY: `init` is taken only by the one initialiser (the holder of the cell's RUNNING state),
// possibly on another thread (`F: Send`); the value is shared like `OnceCell`'s (`T: Send +
// Sync`).
unsafe impl<T: Send + Sync, F: Send> Sync for Lazy<T, F> {}

// See the type's docs; the bounds are std's `LazyLock`'s.
impl<T: RefUnwindSafe + UnwindSafe, F: UnwindSafe> RefUnwindSafe for Lazy<T, F> {}
impl<T: UnwindSafe, F: UnwindSafe> UnwindSafe for Lazy<T, F> {}

impl<T, F: FnOnce() -> T> Lazy<T, F> {
    crate::loom::const_fn! {
        /// A lazy value that `f` computes on first access. `const`, so a `Lazy` can be a
        /// `static` (see the type's docs).
        ///
        /// ```
        /// let lazy = fibra::sync::Lazy::new(|| 1 + 1);
        /// assert_eq!(*lazy, 2);
        /// ```
        pub fn new(f: F) -> Lazy<T, F> {
            Lazy {
                cell: OnceCell::new(),
                init: UnsafeCell::new(Some(f)),
            }
        }
    }

    /// Forces the initialisation and returns the value (the same as dereferencing).
    ///
    /// # Panics
    /// If the initialiser panics now or panicked before.
    ///
    /// ```
    /// let lazy = fibra::sync::Lazy::new(|| String::from("hi"));
    /// assert_eq!(fibra::sync::Lazy::force(&lazy), "hi");
    /// ```
    pub fn force(this: &Lazy<T, F>) -> &T {
        this.cell.get_or_init(|| {
            // SAFETY: this closure runs only in the one initialiser holding the cell's RUNNING
            // state, so no other access to `init` overlaps.
            match unsafe { (*this.init.get()).take() } {
                Some(f) => f(),
                None => panic!("fibra::sync::Lazy: the initialiser panicked earlier"),
            }
        })
    }

    /// Forces the initialisation through exclusive access (no waiting, no parking) and returns
    /// the value mutably.
    ///
    /// # Panics
    /// If the initialiser panics now or panicked before.
    ///
    /// ```
    /// use fibra::sync::Lazy;
    /// let mut lazy = Lazy::new(|| vec![1]);
    /// Lazy::force_mut(&mut lazy).push(2);
    /// assert_eq!(*lazy, [1, 2]);
    /// ```
    pub fn force_mut(this: &mut Lazy<T, F>) -> &mut T {
        if this.cell.get_mut().is_none() {
            // `&mut` is exclusive: no initialiser runs elsewhere. If `f` panics, `init` stays
            // `None` and the cell empty: later accesses panic, as after a panic in `force`.
            let value = match this.init.get_mut().take() {
                Some(f) => f(),
                None => panic!("fibra::sync::Lazy: the initialiser panicked earlier"),
            };
            this.cell = OnceCell::from(value);
        }
        this.cell.get_mut().expect("initialised just above")
    }

    /// The value if it has been initialised, without forcing it.
    ///
    /// ```
    /// let lazy = fibra::sync::Lazy::new(|| 5);
    /// assert_eq!(fibra::sync::Lazy::get(&lazy), None);
    /// let _ = *lazy;
    /// assert_eq!(fibra::sync::Lazy::get(&lazy), Some(&5));
    /// ```
    pub fn get(this: &Lazy<T, F>) -> Option<&T> {
        this.cell.get()
    }
}

impl<T, F: FnOnce() -> T> Deref for Lazy<T, F> {
    type Target = T;
    fn deref(&self) -> &T {
        Lazy::force(self)
    }
}

impl<T, F: FnOnce() -> T> DerefMut for Lazy<T, F> {
    /// [`Lazy::force_mut`].
    fn deref_mut(&mut self) -> &mut T {
        Lazy::force_mut(self)
    }
}

impl<T: Default> Default for Lazy<T> {
    /// A lazy `T::default()`.
    ///
    /// ```
    /// let lazy: fibra::sync::Lazy<String> = Default::default();
    /// assert_eq!(fibra::sync::Lazy::get(&lazy), None);
    /// assert_eq!(*lazy, "");
    /// ```
    fn default() -> Lazy<T> {
        Lazy::new(T::default)
    }
}

impl<T: std::fmt::Debug, F> std::fmt::Debug for Lazy<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Lazy").field(&self.cell.get()).finish()
    }
}
