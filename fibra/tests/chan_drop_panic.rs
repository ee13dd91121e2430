//! Buffered items whose `Drop` panics, dropped with the last `Receiver`: every item is
//! dropped once, the first panic reaches the caller (catchable), and the process does not
//! abort ("panic in a destructor during cleanup", as a `VecDeque` dropped whole does on the
//! second panic). Each case runs in a child process (this binary, re-executed), so an abort
//! fails the case instead of killing the test binary.

use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use fibra::chan;

mod common;

const CHILD: &str = "FIBRA_CHAN_DROP_PANIC_CHILD";

/// Counts its drop, then panics with its number if `panics`.
struct Bomb {
    n: usize,
    panics: bool,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, SeqCst);
        if self.panics {
            std::panic::panic_any(self.n);
        }
    }
}

/// Fills a channel with `items` bombs (those in `panicking` panic when dropped), drops every
/// `Receiver`, and returns (drops counted, payload of the panic that reached the caller).
fn drop_last_receiver(
    cap: Option<usize>,
    items: usize,
    panicking: &[usize],
) -> (usize, Option<usize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = match cap {
        Some(c) => chan::bounded(c),
        None => chan::unbounded(),
    };
    for n in 0..items {
        let bomb = Bomb {
            n,
            panics: panicking.contains(&n),
            dropped: dropped.clone(),
        };
        tx.try_send(bomb)
            .unwrap_or_else(|_| panic!("item {n} must fit"));
    }
    let rx2 = rx.clone();
    drop(rx); // not the last: nothing is dropped
    assert_eq!(dropped.load(SeqCst), 0);
    let caught = panic::catch_unwind(AssertUnwindSafe(|| drop(rx2)));
    let payload = caught
        .err()
        .map(|p| *p.downcast::<usize>().expect("a Bomb's payload"));
    // The channel is closed for senders whatever the drops did.
    let back = tx.try_send(Bomb {
        n: usize::MAX,
        panics: false,
        dropped: dropped.clone(),
    });
    assert!(matches!(back, Err(chan::TrySendError::Disconnected(_))));
    drop(back);
    (dropped.load(SeqCst) - 1, payload)
}

fn child_cases() {
    // Quiet: the panics are expected (the hook would print each one).
    panic::set_hook(Box::new(|_| {}));
    // Two and more panicking items, in both halves of the ring (wrapped around).
    assert_eq!(drop_last_receiver(Some(4), 4, &[1, 2]), (4, Some(1)));
    assert_eq!(drop_last_receiver(None, 10, &[0, 3, 9]), (10, Some(0)));
    assert_eq!(drop_last_receiver(Some(8), 5, &[4]), (5, Some(4)));
    assert_eq!(drop_last_receiver(Some(3), 3, &[]), (3, None));
    // Inside a fiber too: the panic unwinds the fiber's stack and reaches its joiner.
    let joined = fibra::run(|| {
        fibra::spawn(|| drop_last_receiver(Some(2), 2, &[0, 1]))
            .join()
            .unwrap()
    });
    assert_eq!(joined, (2, Some(0)));
    // A ring that wrapped: take one, refill, so the buffer's two slices both hold bombs.
    let dropped = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = chan::bounded(3);
    let bomb = |n| Bomb {
        n,
        panics: n > 0,
        dropped: dropped.clone(),
    };
    for n in 0..3 {
        tx.try_send(bomb(n)).ok().unwrap();
    }
    drop(rx.try_recv().unwrap()); // item 0 does not panic
    tx.try_send(bomb(3)).ok().unwrap();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| drop(rx)));
    assert_eq!(*caught.unwrap_err().downcast::<usize>().unwrap(), 1);
    assert_eq!(dropped.load(SeqCst), 4);
    println!("child: all cases passed");
}

#[test]
fn panicking_drops_of_buffered_items_propagate_the_first_and_do_not_abort() {
    if std::env::var_os(CHILD).is_some() {
        return child_cases();
    }
    let _w =
        common::watchdog("panicking_drops_of_buffered_items_propagate_the_first_and_do_not_abort");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "panicking_drops_of_buffered_items_propagate_the_first_and_do_not_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child: all cases passed"),
        "child failed: status {:?} (signal {:?});\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status,
        out.status.signal()
    );
}
