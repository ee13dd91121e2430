//! `fiber_local!`: storage that belongs to the fiber, not to the OS thread under it.
//!
//! Each fiber has a small map from key address to boxed value, created on first access. On a
//! plain OS thread the same key is an ordinary `thread_local!` (the macro declares one beside
//! each key), with std's rules, so library code works in both places.
//!
//! # Lifetime of a fiber's values
//! A fiber's values are created and dropped on its own stack, on its home thread, never
//! anywhere else: `fiber_root` calls [`destroy`] after everything else the fiber owns is gone
//! (its result's destructor may still use a local). `destroy` drops the values one at a time,
//! newest first, each removed from the map just before its drop, so a destructor that reaches
//! another key finds its live value (or makes a fresh one, dropped in turn), until the map is
//! empty; then it closes the map, and a later access gets [`AccessError`]. The values have no
//! `Send` bound, so a header freed on another thread must hold none: `LocalMap`'s drop checks.

use std::any::Any;
use std::fmt;

use super::header::Header;
use super::join::drop_or_abort;
use crate::sched::context;

/// A fiber's values: (key address, value). Few keys per program, so a linear scan wins.
/// Keys are addresses of `LocalKey`s (aligned to 8), so the low bit is free: `destroy` sets it
/// on a key whose value it has dropped, leaving a tombstone (its value a zero-sized
/// `Destroyed`, which does not allocate).
type Entry = (usize, Box<dyn Any>);

/// Set on a destroyed key (see `Entry`).
const DESTROYED: usize = 1;

/// What a destroyed key's entry holds.
struct Destroyed;

/// Boxed so a fiber that never uses fiber-locals pays one pointer.
#[derive(Default)]
pub(crate) struct LocalMap {
    #[allow(clippy::box_collection)] // boxed on purpose: 8 bytes in every fiber header, not 24
    entries: Option<Box<Vec<Entry>>>,
}

/// What a fiber's map holds for a key.
enum Lookup {
    Found(*const dyn Any),
    Missing,
    /// Its value was dropped by `destroy`: it stays gone, as a destroyed `thread_local!`.
    Destroyed,
}

impl LocalMap {
    fn lookup(&self, key: usize) -> Lookup {
        let entries = self.entries.as_deref().map_or(&[][..], |e| &e[..]);
        for (k, v) in entries {
            if *k == key {
                return Lookup::Found(&**v as *const dyn Any);
            }
            if *k == key | DESTROYED {
                return Lookup::Destroyed;
            }
        }
        Lookup::Missing
    }

    /// Adds `value` under `key`. Returns the key's value (none if the key was destroyed), and
    /// `value` back if it was not kept (an initializer that used its own key filled the key
    /// meanwhile), for the caller to drop once the map is no longer borrowed: its destructor
    /// may use fiber-locals.
    fn insert(
        &mut self,
        key: usize,
        value: Box<dyn Any>,
    ) -> (Option<*const dyn Any>, Option<Box<dyn Any>>) {
        match self.lookup(key) {
            Lookup::Found(existing) => (Some(existing), Some(value)),
            Lookup::Destroyed => (None, Some(value)),
            Lookup::Missing => {
                let ptr = &*value as *const dyn Any;
                self.entries
                    .get_or_insert_with(Default::default)
                    .push((key, value));
                (Some(ptr), None)
            }
        }
    }

    /// Takes the newest live value, leaving a tombstone under its key.
    fn take_newest(&mut self) -> Option<Box<dyn Any>> {
        let entries = self.entries.as_mut()?;
        let (key, value) = entries.iter_mut().rev().find(|(k, _)| k & DESTROYED == 0)?;
        *key |= DESTROYED;
        Some(std::mem::replace(value, Box::new(Destroyed)))
    }
}

impl Drop for LocalMap {
    fn drop(&mut self) {
        if self
            .entries
            .as_ref()
            .is_some_and(|e| e.iter().any(|(k, _)| k & DESTROYED == 0))
        {
            // `destroy` empties the map on the fiber's stack before the fiber completes; values
            // left here would be dropped on whichever thread frees the header.
            fatal!("fiber::local: a fiber's locals outlived it");
        }
    }
}

/// Why a fiber-local value could not be reached: its fiber (or thread) is past destroying its
/// locals. Returned by [`LocalKey::try_with`].
///
/// ```
/// use std::cell::Cell;
/// fibra::fiber_local! { static N: Cell<u32> = Cell::new(1); }
/// assert_eq!(N.try_with(|n| n.get()), Ok(1));
/// let e = fibra::AccessError::default();
/// assert!(e.to_string().contains("destroyed"));
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AccessError {
    _private: (),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot access a fiber-local value: its fiber's locals were destroyed")
    }
}

impl std::error::Error for AccessError {}

/// A key for fiber-local storage; declare it with [`fiber_local!`](crate::fiber_local).
///
/// # Migration
/// A `thread_local!` inside a fiber means "the OS thread running me now": that is stable under
/// the sound default (a started fiber never changes threads) but not with the unsafe
/// migration opt-in. A `fiber_local!` always follows the fiber. Inside a
/// [`fibra::run_blocking`](crate::run_blocking) closure, which runs on a pool thread, a fiber-local is
/// that thread's value.
///
/// # Destruction
/// A fiber's values are dropped on its own stack when it finishes or is unwound, after its
/// result, newest first, until none is left; a value created meanwhile (by another value's
/// destructor) is dropped too. A destructor that panics aborts the process, as std does for a
/// `thread_local!`. On a plain thread a key is a `thread_local!`, destroyed by std's rules.
///
/// ```
/// use std::cell::Cell;
/// fibra::fiber_local! { static ID: Cell<u32> = Cell::new(0); }
/// ID.with(|v| v.set(7)); // on a plain thread: that thread's own value
/// fibra::run(|| assert_eq!(ID.with(|v| v.get()), 0)); // the root fiber starts fresh
/// assert_eq!(ID.with(|v| v.get()), 7);
/// ```
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// The key on a plain thread.
    thread: &'static std::thread::LocalKey<T>,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T, thread: &'static std::thread::LocalKey<T>) -> LocalKey<T> {
        LocalKey { init, thread }
    }

    /// Runs `f` with this fiber's value, creating it with the initializer on first use.
    ///
    /// # Panics
    /// If the value cannot be reached ([`try_with`](Self::try_with) says when), or if the
    /// initializer panics.
    ///
    /// ```
    /// use std::cell::Cell;
    /// fibra::fiber_local! { static HITS: Cell<u32> = Cell::new(0); }
    /// fibra::run(|| {
    ///     HITS.with(|h| h.set(h.get() + 1));
    ///     let other = fibra::spawn(|| HITS.with(|h| h.get()));
    ///     assert_eq!(other.join().unwrap(), 0); // a new fiber starts fresh
    ///     assert_eq!(HITS.with(|h| h.get()), 1);
    /// });
    /// ```
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!("fibra::LocalKey::with: {e}; use try_with in destructors"),
        }
    }

    /// Like [`with`](Self::with), but returns [`AccessError`] instead of panicking when the
    /// value is gone: in a fiber, once its locals were destroyed; on a plain thread, during
    /// or after the thread-local's destruction (std's `LocalKey::try_with`). Use it in
    /// destructors that may run late.
    ///
    /// ```
    /// use std::cell::Cell;
    /// fibra::fiber_local! { static N: Cell<u32> = Cell::new(5); }
    /// fibra::run(|| assert_eq!(N.try_with(|n| n.get()), Ok(5)));
    /// ```
    ///
    /// # Errors
    /// [`AccessError`] as above.
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        let key = self as *const Self as usize;
        let value = match with_fiber_map(|map| map.lookup(key)) {
            None => return self.thread.try_with(f).map_err(|_| AccessError::default()),
            Some(Err(closed)) => return Err(closed),
            Some(Ok(Lookup::Destroyed)) => return Err(AccessError::default()),
            Some(Ok(Lookup::Found(value))) => value,
            Some(Ok(Lookup::Missing)) => {
                let boxed: Box<dyn Any> = Box::new((self.init)()); // may itself use fiber locals
                let (value, unused) = match with_fiber_map(|map| map.insert(key, boxed)) {
                    Some(Ok(inserted)) => inserted,
                    Some(Err(closed)) => return Err(closed),
                    None => fatal!("fiber::local: the fiber changed during `with`"),
                };
                drop(unused); // outside the map (see `insert`)
                value.ok_or_else(AccessError::default)?
            }
        };
        // SAFETY: the value is boxed (its address is stable while the map grows) and is only
        // removed by `destroy`, on this fiber's stack, which cannot drop it during this call
        // (it drops one value at a time, never the one a running destructor borrows from its
        // own `with`); the type is `T` because entries are only inserted under `key`, which is
        // unique to `self`.
        Ok(f(unsafe { &*(value as *const T) }))
    }
}

/// Runs `f` on the current fiber's map, or says it is closed; `None` on a plain thread. `f`
/// must not call back into fibra or user code.
fn with_fiber_map<R>(f: impl FnOnce(&mut LocalMap) -> R) -> Option<Result<R, AccessError>> {
    let (map, closed) = context::with_current_fiber(|fiber| {
        fiber.map(|h| (h.locals.get(), h.locals_closed.get()))
    })?;
    if closed {
        return Some(Err(AccessError::default()));
    }
    // SAFETY: only the fiber itself touches its `locals` (header.rs field table), which is
    // who calls us, and `f` does not re-enter, so this `&mut` is unique for its lifetime.
    Some(Ok(f(unsafe { &mut *map })))
}

/// Keeps `value` with the running fiber's locals, to be dropped with them: after the fiber's
/// side of its packet (and so a detached result) is gone (`fiber_root`). Returns `value` on a
/// plain thread.
pub(crate) fn drop_at_exit<V: 'static>(value: V) -> Result<(), V> {
    /// The key of such values: never looked up, so any address no `LocalKey` has (aligned
    /// like one, see `Entry`).
    static AT_EXIT: u64 = 0;
    let key = &AT_EXIT as *const u64 as usize;
    let mut value = Some(value);
    let kept = with_fiber_map(|map| {
        if let Some(v) = value.take() {
            let boxed: Box<dyn Any> = Box::new(v);
            map.entries
                .get_or_insert_with(Default::default)
                .push((key, boxed));
        }
    });
    match (kept, value) {
        (_, Some(v)) => Err(v),
        _ => Ok(()),
    }
}

/// Drops every value of the fiber's map, newest first, each under a tombstone while it drops
/// (so its key reads as destroyed from then on, as a `thread_local!`'s does), until no live
/// value is left (a destructor may create one under a key not used before), then closes the
/// map. A destructor that panics aborts: there is nowhere to unwind to from the fiber's root.
///
/// # Safety
/// On `header`'s own fiber stack (its root frame), the only place `locals` is touched.
pub(crate) unsafe fn destroy(header: &Header) {
    loop {
        // SAFETY: the caller's promise; the borrow ends before the value is dropped.
        let value = unsafe { &mut *header.locals.get() }.take_newest();
        let Some(value) = value else { break };
        // A cancellation that cut a destructor short ends here, at the root (`fiber_root`).
        let _ = drop_or_abort(value, "a fiber_local! value");
    }
    header.locals_closed.set(true);
    // SAFETY: as above; nothing else borrows the map now. Only tombstones are left.
    unsafe { (*header.locals.get()).entries = None };
}

/// Declares fiber-local storage, like `thread_local!` but per fiber.
///
/// ```
/// use std::cell::RefCell;
/// fibra::fiber_local! {
///     /// Per-connection scratch buffer.
///     static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::new());
/// }
/// fibra::run(|| SCRATCH.with(|s| s.borrow_mut().push(1)));
/// ```
#[macro_export]
macro_rules! fiber_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* $vis static $name: $crate::LocalKey<$t> = {
            fn __fibra_init() -> $t { $init }
            ::std::thread_local! { static __FIBRA_ON_THREAD: $t = __fibra_init(); }
            $crate::LocalKey::new(__fibra_init, &__FIBRA_ON_THREAD)
        };
        $crate::fiber_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::fiber_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
