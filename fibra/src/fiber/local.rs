//! `fiber_local!`: storage that belongs to the fiber, not to the OS thread under it.
//!
//! Each fiber has a small map from key address to boxed value, created on first access and
//! dropped on the fiber's own stack when it finishes (or is unwound). On a plain OS thread the
//! same key uses a per-thread map instead, so library code works in both places.

use std::any::Any;
use std::cell::UnsafeCell;

use super::header::Header;
use crate::sched::context;

/// A fiber's values: (key address, value). Few keys per program, so a linear scan wins.
/// (key address, value).
type Entry = (usize, Box<dyn Any>);

/// Boxed so a fiber that never uses fiber-locals pays one pointer.
#[derive(Default)]
pub(crate) struct LocalMap {
    #[allow(clippy::box_collection)] // boxed on purpose: 8 bytes in every fiber header, not 24
    entries: Option<Box<Vec<Entry>>>,
}

thread_local! {
    static THREAD_MAP: UnsafeCell<LocalMap> = UnsafeCell::new(LocalMap::default());
}

/// A key for fiber-local storage; declare it with [`fiber_local!`](crate::fiber_local).
///
/// # Migration
/// A `thread_local!` inside a fiber means "the OS thread running me now": that is stable under
/// the sound default (a started fiber never changes threads) but not with the unsafe
/// migration opt-in. A `fiber_local!` always follows the fiber.
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
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey { init }
    }

    /// Runs `f` with this fiber's value, creating it with the initializer on first use.
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
        let key = self as *const Self as usize;
        let value = with_map(|map| find(map, key)).unwrap_or_else(|| {
            let boxed: Box<dyn Any> = Box::new((self.init)()); // may itself use fiber locals
            with_map(|map| match find(map, key) {
                Some(existing) => existing, // the initializer re-entered and set it
                None => {
                    let ptr = &*boxed as *const dyn Any;
                    map.entries
                        .get_or_insert_with(Default::default)
                        .push((key, boxed));
                    ptr
                }
            })
        });
        // SAFETY: the value is boxed (its address is stable while the map grows) and is only
        // removed when the fiber (or thread) ends, which cannot happen during this call; the
        // type is `T` because entries are only inserted under `key`, which is unique to `self`.
        f(unsafe { &*(value as *const T) })
    }
}

fn find(map: &LocalMap, key: usize) -> Option<*const dyn Any> {
    let entries = map.entries.as_deref()?;
    entries
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| &**v as *const dyn Any)
}

/// Runs `f` on the current fiber's map (or the thread's). `f` must not call back into fibra.
fn with_map<R>(f: impl FnOnce(&mut LocalMap) -> R) -> R {
    let from_fiber = context::with_current_fiber(|fiber| {
        // SAFETY: only the fiber itself touches its `locals` (header.rs field table), and `f`
        // does not re-enter, so this `&mut` is unique for its lifetime.
        fiber.map(|h| unsafe { &mut *h.locals.get() } as *mut LocalMap)
    });
    match from_fiber {
        // SAFETY: as above.
        Some(map) => f(unsafe { &mut *map }),
        // SAFETY: the thread's map is only reached from this thread, through here, without
        // re-entrance.
        None => THREAD_MAP.with(|m| f(unsafe { &mut *m.get() })),
    }
}

/// Dropped at the end of a fiber's root function (also during unwinding): drops its locals on
/// its own stack, repeatedly, since a destructor may create another local.
pub(crate) struct DropLocalsOnExit(pub(crate) *const Header);

impl Drop for DropLocalsOnExit {
    fn drop(&mut self) {
        for _ in 0..16 {
            // SAFETY: we run on the fiber's own stack, the only place `locals` is touched; the
            // header outlives the coroutine.
            let taken = std::mem::take(unsafe { &mut *(*self.0).locals.get() });
            if taken.entries.is_none() {
                return;
            }
            drop(taken);
        }
    }
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
            $crate::LocalKey::new(__fibra_init)
        };
        $crate::fiber_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::fiber_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
