//! Property tests of `fibra::chan` (issue 13): random programs, checked against a model.
//!
//! - `sequential_programs_match_the_model`: one channel driven by one caller (a plain thread or
//!   a fiber) through try / zero-timeout / blocking-that-cannot-block / `select!`-with-default
//!   operations and clones and drops of either side; every outcome, every `len`, and after every
//!   step every item's drop count is checked exactly against a `VecDeque` model.
//! - `concurrent_programs_lose_nothing`: senders and receivers on fibers and OS threads, each
//!   with its own mix of blocking / try / timeout / `select!` operations, receivers that drop
//!   early, on 1..=3 workers; checked: nothing lost or duplicated, per-sender FIFO, the bound
//!   never exceeded, close semantics, every item dropped once.
//! - `select_delivers_each_item_once`: consumers `select!` over up to three channels of mixed
//!   flavours; each item reaches exactly one consumer, in per-sender order.
//!
//! Case counts: `PROPTEST_CASES` raises (or lowers) every test's count. Failures are not
//! persisted (`failure_persistence: None`, nothing is written into the tree): a failing case
//! prints its shrunk program, which becomes a named regression test by hand.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use fibra::chan::{
    self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[path = "../common/mod.rs"]
mod common;
mod concurrent;
mod select;
mod sequential;

/// A case that runs longer than this has hung.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// `cases` unless `PROPTEST_CASES` says otherwise; no failure files.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// With `PROP_TRACE` set, prints each case before running it (to find a case that hangs:
/// the watchdog aborts without shrinking).
fn trace(case: &dyn fmt::Debug) {
    if std::env::var_os("PROP_TRACE").is_some() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "case: {case:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Items that count their drops.

/// Most items one sender sends in a case.
const MAX_ITEMS: usize = 64;

/// Items made and dropped, by `sender * MAX_ITEMS + seq`.
struct Ledger {
    made: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
}

impl Ledger {
    fn new(senders: usize) -> Arc<Ledger> {
        let counts = || {
            (0..senders * MAX_ITEMS)
                .map(|_| AtomicUsize::new(0))
                .collect()
        };
        Arc::new(Ledger {
            made: counts(),
            dropped: counts(),
        })
    }

    fn made(&self, sender: usize, seq: usize) -> usize {
        self.made[sender * MAX_ITEMS + seq].load(SeqCst)
    }

    fn drops(&self, sender: usize, seq: usize) -> usize {
        self.dropped[sender * MAX_ITEMS + seq].load(SeqCst)
    }
}

/// The `seq`-th item of `sender`.
struct Item {
    sender: usize,
    seq: usize,
    ledger: Arc<Ledger>,
}

impl Item {
    fn new(ledger: &Arc<Ledger>, sender: usize, seq: usize) -> Item {
        assert!(seq < MAX_ITEMS);
        ledger.made[sender * MAX_ITEMS + seq].fetch_add(1, SeqCst);
        Item {
            sender,
            seq,
            ledger: ledger.clone(),
        }
    }

    fn id(&self) -> (usize, usize) {
        (self.sender, self.seq)
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.ledger.dropped[self.sender * MAX_ITEMS + self.seq].fetch_add(1, SeqCst);
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}.{}", self.sender, self.seq)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared vocabulary.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Rendezvous,
    One,
    Bounded(usize),
    Unbounded,
}

impl Flavor {
    fn cap(self) -> Option<usize> {
        match self {
            Flavor::Rendezvous => Some(0),
            Flavor::One => Some(1),
            Flavor::Bounded(n) => Some(n),
            Flavor::Unbounded => None,
        }
    }

    fn make<T>(self) -> (Sender<T>, Receiver<T>) {
        match self.cap() {
            Some(n) => chan::bounded(n),
            None => chan::unbounded(),
        }
    }
}

fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![
        Just(Flavor::Rendezvous),
        Just(Flavor::One),
        (2usize..=4).prop_map(Flavor::Bounded),
        Just(Flavor::Unbounded),
    ]
}

/// Where a participant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Fiber,
    Thread,
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![Just(Place::Fiber), Just(Place::Thread)]
}

/// Lets others run: a fiber yields, a thread yields its core. Every 16th time it returns
/// true instead: the caller then waits in a timed operation (a try-loop must not spin forever
/// against another try-loop, nor starve a busy machine).
fn backoff(place: Place, spins: &mut u32) -> bool {
    *spins += 1;
    if *spins % 16 == 0 {
        return true;
    }
    match place {
        Place::Fiber => fibra::yield_now(),
        Place::Thread => std::thread::yield_now(),
    }
    false
}

/// A runtime with `workers` workers, running `f` as the root fiber.
fn run_on<R: Send + 'static>(workers: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
    fibra::Runtime::builder()
        .workers(workers)
        .build()
        .unwrap()
        .run(f)
}
