//! `fibra::sync` against std's guarantees: `const` constructors (statics), the read guard's
//! variance, `OnceCell`'s drop check, unwind safety, and the conversions std offers.

use std::panic::{catch_unwind, RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use fibra::sync::{
    Barrier, Condvar, Lazy, Mutex, MutexGuard, Notify, OnceCell, OwnedSemaphorePermit, RwLock,
    RwLockReadGuard, RwLockWriteGuard, Semaphore, SemaphorePermit, WaitGroup,
};

mod common;

static COUNTER: Mutex<u64> = Mutex::new(0);
static TABLE: RwLock<Vec<u32>> = RwLock::new(Vec::new());
static READY: Condvar = Condvar::new();
static ROUND: Barrier = Barrier::new(4);
static NAME: OnceCell<String> = OnceCell::new();
static INIT_RUNS: AtomicUsize = AtomicUsize::new(0);
static SQUARES: Lazy<Vec<u64>> = Lazy::new(|| {
    INIT_RUNS.fetch_add(1, SeqCst);
    (0..16).map(|i| i * i).collect()
});

/// Every primitive with a `new` can be a `static`, and the statics work across fibers.
#[test]
fn primitives_live_in_statics() {
    let _w = common::watchdog("primitives_live_in_statics");
    fibra::run(|| {
        let fibers: Vec<_> = (0..4u32)
            .map(|i| {
                fibra::spawn(move || {
                    for _ in 0..100 {
                        *COUNTER.lock() += 1;
                    }
                    TABLE.write().push(i);
                    let name = NAME.get_or_init(|| format!("first {i}"));
                    ROUND.wait();
                    (name.clone(), SQUARES[i as usize])
                })
            })
            .collect();
        let results: Vec<_> = fibers.into_iter().map(|f| f.join().unwrap()).collect();
        assert_eq!(*COUNTER.lock(), 400);
        let mut table = TABLE.read().clone();
        table.sort();
        assert_eq!(table, [0, 1, 2, 3]);
        assert!(results.iter().all(|(name, _)| name == &results[0].0));
        let squares: Vec<u64> = results.iter().map(|(_, sq)| *sq).collect();
        assert_eq!(squares, [0, 1, 4, 9]);
        assert_eq!(INIT_RUNS.load(SeqCst), 1);

        let guard = COUNTER.lock();
        let (guard, res) = READY.wait_timeout(guard, std::time::Duration::ZERO);
        assert!(res.timed_out());
        assert_eq!(*guard, 400);
    });
}

/// A read guard only hands out `&T`, so, as std's, it is covariant in `T`: this must compile.
fn shorten<'a>(guard: RwLockReadGuard<'a, &'static str>) -> RwLockReadGuard<'a, &'a str> {
    guard
}

#[test]
fn read_guard_is_covariant() {
    let lock = RwLock::new("static str");
    let guard = shorten(lock.read());
    let local = String::from("local");
    let mut best: &str = *guard; // the guard's `&'a str` mixes with a shorter-lived `&str`
    if local.len() > best.len() {
        best = &local;
    }
    assert_eq!(best, "static str");
}

/// std accepts a `OnceLock` holding a reference to a value declared after it (dropped
/// first); so must `OnceCell`, which has no `Drop` impl that could still use the reference.
#[test]
fn once_cell_may_outlive_what_it_borrows() {
    let cell = OnceCell::new();
    let owner = vec![1, 2, 3];
    cell.set(&owner).unwrap();
    assert_eq!(cell.get().map(|v| v.len()), Some(3));

    // The same through `From`, in a field of a struct declared before what it borrows.
    struct Holder<'a> {
        cell: OnceCell<&'a str>,
    }
    let mut holder = Holder {
        cell: OnceCell::new(),
    };
    let text = String::from("borrowed");
    holder.cell = OnceCell::from(text.as_str());
    assert_eq!(holder.cell.get(), Some(&"borrowed"));
}

/// `OnceCell<T>` still drops its value exactly once, and never an unset one.
#[test]
fn once_cell_drops_its_value_once() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    drop(OnceCell::<Counted>::new());
    let cell = OnceCell::new();
    assert!(cell.set(Counted(drops.clone())).is_ok());
    let rejected = cell.set(Counted(drops.clone()));
    assert_eq!(drops.load(SeqCst), 0);
    drop(rejected); // handed back, dropped by us
    assert_eq!(drops.load(SeqCst), 1);
    let mut cell = cell;
    let taken = cell.take();
    drop(cell); // empty now
    assert_eq!(drops.load(SeqCst), 1);
    drop(taken);
    assert_eq!(drops.load(SeqCst), 2);
}

fn unwind_safe<T: ?Sized + UnwindSafe + RefUnwindSafe>() {}

/// The std types' unwind-safety, as static assertions (a missing impl fails to compile).
#[test]
fn primitives_are_unwind_safe() {
    unwind_safe::<Mutex<Vec<u8>>>();
    unwind_safe::<Mutex<dyn Fn()>>();
    unwind_safe::<RwLock<Vec<u8>>>();
    unwind_safe::<MutexGuard<'static, u8>>();
    unwind_safe::<RwLockReadGuard<'static, u8>>();
    unwind_safe::<RwLockWriteGuard<'static, u8>>();
    unwind_safe::<Condvar>();
    unwind_safe::<Barrier>();
    unwind_safe::<Semaphore>();
    unwind_safe::<SemaphorePermit<'static>>();
    unwind_safe::<OwnedSemaphorePermit>();
    unwind_safe::<Notify>();
    unwind_safe::<WaitGroup>();
    unwind_safe::<OnceCell<String>>();
    unwind_safe::<Lazy<String>>();
    unwind_safe::<Arc<Mutex<u8>>>();
}

/// `catch_unwind` takes a closure using a `&Mutex` without `AssertUnwindSafe`, and the lock
/// is free and usable after the panic (no poisoning: the data is what the section left).
#[test]
fn a_panic_under_the_lock_releases_it() {
    let m = Mutex::new(vec![1]);
    let lock = RwLock::new(0);
    let caught = catch_unwind(|| {
        let mut g = m.lock();
        g.push(2);
        let _w = lock.write();
        panic!("in the critical section");
    });
    assert!(caught.is_err());
    assert_eq!(*m.try_lock().expect("released by the unwind"), [1, 2]);
    assert!(lock.try_write().is_some());
}

/// A panicking initialiser leaves a `OnceCell` empty (the next caller initialises it) and a
/// `Lazy` failed for good, both through `catch_unwind` without `AssertUnwindSafe`.
#[test]
fn a_panicking_initialiser_leaves_nothing_half_built() {
    let cell: OnceCell<String> = OnceCell::new();
    assert!(catch_unwind(|| cell.get_or_init(|| panic!("init failed")).len()).is_err());
    assert_eq!(cell.get(), None);
    assert_eq!(cell.get_or_init(|| "second".into()), "second");

    let lazy: Lazy<u8> = Lazy::new(|| panic!("init failed"));
    assert!(catch_unwind(|| *lazy).is_err());
    assert!(
        catch_unwind(|| *lazy).is_err(),
        "a failed Lazy stays failed"
    );
    assert_eq!(Lazy::get(&lazy), None);
}

/// A downgraded write guard lets a reader that was waiting behind it in while the downgraded
/// hold is still held, and keeps a writer out until it drops.
#[test]
fn downgrade_admits_readers_and_keeps_writers_out() {
    let _w = common::watchdog("downgrade_admits_readers_and_keeps_writers_out");
    let lock = Arc::new(RwLock::new(0));
    let mut w = lock.write();
    let l = lock.clone();
    let reader = std::thread::spawn(move || *l.read());
    *w = 5;
    let r = RwLockWriteGuard::downgrade(w);
    assert_eq!(
        reader.join().unwrap(),
        5,
        "the reader got in while we still read"
    );
    let l = lock.clone();
    let writer = std::thread::spawn(move || *l.write() += 1);
    assert_eq!(*r, 5);
    assert!(!writer.is_finished(), "a writer got in beside a reader");
    drop(r);
    writer.join().unwrap();
    assert_eq!(*lock.read(), 6);
}

#[test]
fn rwlock_and_once_cell_conversions() {
    let lock = RwLock::from(vec![1]);
    assert_eq!(lock.into_inner(), [1]);

    let cell = OnceCell::from(String::from("x"));
    let copy = cell.clone();
    assert_eq!(copy, cell);
    assert_eq!(copy.get().map(String::as_str), Some("x"));
    assert_ne!(cell, OnceCell::new());
    assert_eq!(OnceCell::<u8>::new(), OnceCell::<u8>::new().clone());
}

/// A clone taken while another fiber runs the initialiser is empty, and stays so: it does not
/// wait for, or share, the original's value.
#[test]
fn once_cell_clone_does_not_wait_for_a_running_initialiser() {
    let _w = common::watchdog("once_cell_clone_does_not_wait_for_a_running_initialiser");
    fibra::run(|| {
        let cell = Arc::new(OnceCell::new());
        let (started_tx, started_rx) = fibra::chan::bounded::<()>(0);
        let (finish_tx, finish_rx) = fibra::chan::bounded::<()>(0);
        let c = cell.clone();
        let init = fibra::spawn(move || {
            *c.get_or_init(|| {
                started_tx.send(()).unwrap();
                finish_rx.recv().unwrap();
                7
            })
        });
        started_rx.recv().unwrap();
        let copy = (*cell).clone();
        finish_tx.send(()).unwrap();
        assert_eq!(init.join().unwrap(), 7);
        assert_eq!(copy.get(), None);
        assert_eq!(cell.get(), Some(&7));
    });
}

#[test]
fn lazy_default_and_force_mut() {
    let mut lazy: Lazy<Vec<u8>> = Lazy::default();
    assert_eq!(Lazy::get(&lazy), None);
    Lazy::force_mut(&mut lazy).push(1);
    lazy.push(2); // DerefMut
    assert_eq!(*lazy, [1, 2]);

    let mut failed: Lazy<u8> = Lazy::new(|| panic!("init failed"));
    assert!(
        catch_unwind(std::panic::AssertUnwindSafe(|| *Lazy::force_mut(
            &mut failed
        )))
        .is_err()
    );
    assert!(
        catch_unwind(|| *failed).is_err(),
        "force_mut's failure is final too"
    );
}
