//! A worker's inbox: pinned fibers woken from other threads, waiting for their home worker.
//!
//! An intrusive Treiber stack of `Arc`s: any thread pushes with one CAS, the owner takes the
//! whole stack with one swap and reverses it (so wake-ups run in the order they came). A
//! fiber is in at most one queue at a time (the `unpark` that moved it PARKED → SCHEDULED
//! owns its one queue entry), so one link field per fiber suffices. It replaced a
//! `Mutex<Vec>` + flag, which cost a cross-worker hand-off four contended read-modify-writes
//! instead of one on each side.

use std::collections::VecDeque;
use std::ptr;
use std::sync::Arc;

use crate::loom::sync::atomic::{AtomicPtr, Ordering::*};

/// A type with a link for one intrusive inbox.
pub(crate) trait Linked {
    fn inbox_next(&self) -> &AtomicPtr<Self>
    where
        Self: Sized;
}

pub(crate) struct Inbox<T: Linked> {
    head: AtomicPtr<T>,
}

impl<T: Linked> Inbox<T> {
    pub(crate) fn new() -> Inbox<T> {
        Inbox {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Any thread. The caller follows it with `Sleeper::wake_if_sleeping`, whose SeqCst fence
    /// pairs with the sleeping owner's re-check of `is_empty` (idle.rs).
    pub(crate) fn push(&self, item: Arc<T>) {
        let node = Arc::into_raw(item).cast_mut();
        let mut head = self.head.load(Relaxed);
        loop {
            // SAFETY: `node` came from `Arc::into_raw` just above and stays alive (we own its
            // count until the owner takes it); only the pusher writes its link before the CAS.
            unsafe { (*node).inbox_next().store(head, Relaxed) };
            // Release publishes the link and the fiber to `take_all`'s Acquire swap.
            match self
                .head
                .compare_exchange_weak(head, node, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Owner only: appends everything pushed so far to `into`, oldest first.
    pub(crate) fn take_all(&self, into: &mut VecDeque<Arc<T>>) {
        if self.head.load(Relaxed).is_null() {
            return;
        }
        // Acquire pairs with `push`'s CAS: the links and the items are visible.
        let mut node = self.head.swap(ptr::null_mut(), Acquire);
        let start = into.len();
        while !node.is_null() {
            // SAFETY: every node on the stack was pushed with `Arc::into_raw` and its count is
            // ours now that the swap detached the stack; its link was written before its push.
            let item = unsafe { Arc::from_raw(node) };
            node = item.inbox_next().load(Relaxed);
            into.push_back(item);
        }
        // The stack gave newest first: reverse the appended run in place (no allocation).
        let n = into.len() - start;
        for i in 0..n / 2 {
            into.swap(start + i, start + n - 1 - i);
        }
    }

    /// Any thread: a hint; the owner's re-check before sleeping is ordered by fences.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Relaxed).is_null()
    }
}

impl<T: Linked> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.take_all(&mut VecDeque::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) struct Node {
        pub(super) id: usize,
        next: AtomicPtr<Node>,
    }

    impl Node {
        pub(super) fn new(id: usize) -> Arc<Node> {
            Arc::new(Node {
                id,
                next: AtomicPtr::new(ptr::null_mut()),
            })
        }
    }

    impl Linked for Node {
        fn inbox_next(&self) -> &AtomicPtr<Node> {
            &self.next
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn fifo_per_pusher_and_every_item_once() {
        let inbox = Arc::new(Inbox::new());
        let pushers: Vec<_> = (0..4)
            .map(|t| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    (0..10_000).for_each(|i| inbox.push(Node::new(t * 10_000 + i)))
                })
            })
            .collect();
        let mut got = VecDeque::new();
        while got.len() < 40_000 {
            inbox.take_all(&mut got);
        }
        pushers.into_iter().for_each(|p| p.join().unwrap());
        inbox.take_all(&mut got);
        let mut seen = vec![false; 40_000];
        let mut last = [None::<usize>; 4];
        for n in &got {
            assert!(
                !std::mem::replace(&mut seen[n.id], true),
                "item {} twice",
                n.id
            );
            let (t, i) = (n.id / 10_000, n.id % 10_000);
            assert!(
                last[t].is_none_or(|l| l < i),
                "pusher {t}'s items out of order"
            );
            last[t] = Some(i);
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[cfg(not(loom))]
    #[test]
    fn dropping_the_inbox_drops_its_items() {
        let inbox = Inbox::new();
        let n = Node::new(1);
        inbox.push(n.clone());
        assert_eq!(Arc::strong_count(&n), 2);
        drop(inbox);
        assert_eq!(Arc::strong_count(&n), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::tests::Node;
    use super::*;
    use loom::thread;

    /// Two pushers race the owner's take: every item arrives exactly once.
    #[test]
    fn concurrent_push_and_take() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::new());
            let pushers: Vec<_> = (0..2)
                .map(|i| {
                    let inbox = inbox.clone();
                    thread::spawn(move || inbox.push(Node::new(i)))
                })
                .collect();
            let mut got = VecDeque::new();
            inbox.take_all(&mut got);
            pushers.into_iter().for_each(|p| p.join().unwrap());
            inbox.take_all(&mut got);
            let mut ids: Vec<_> = got.iter().map(|n| n.id).collect();
            ids.sort();
            assert_eq!(ids, vec![0, 1]);
        });
    }
}
