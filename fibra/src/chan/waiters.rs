//! `Waiters<T>`: a channel's queue of blocked senders (or receivers), and the `Signal` each
//! blocked party waits on.
//!
//! An entry is a [`Node`] owned by the waiting party: on its stack for `send`/`recv` (no
//! allocation per wait), boxed for a future or a `select!` arm. The list links nodes
//! intrusively and lives under the channel's lock. A node's *packet* is the value in transit:
//! a waiting sender's node holds the value it offers; a waiting receiver's node is where a
//! sender puts the value it hands over.
//!
//! A [`Signal`] is the waiting party's selection word and waker. A `send`/`recv` has one
//! node per signal; a `select!` has one node per arm, all sharing its signal, so the first
//! claim through any arm wins and the others see the signal taken.
//!
//! # Readiness watchers
//! A *watcher* (`push_watcher`; `Select::ready`, `ready.rs`) is a node that waits for its
//! operation to become possible and takes nothing: its packet stays empty. It sits in the
//! queue of the side it watches (a receive's watcher among the receivers), so the channel's
//! existing "is anybody queued?" tests cover it and a channel without watchers pays nothing.
//! A partner search (`claim`) passes over watchers, so a send never spends itself on a
//! watcher while a receiver waits behind it; `claim_watchers` wakes them once the state they
//! wait for arrives with nobody to take it (`channel.rs`, "Readiness").
//!
//! # The selection word
//! ```text
//! WAITING ──notifier's CAS (under the lock)──▶ CLAIMING ──store(token, Release)──▶ token
//!    └────owner's CAS: TIMED_OUT | CANCELLED | ABORTED (no lock)──────────────────▶ that
//! ```
//! A notifier that wins `WAITING → CLAIMING` unlinks the node, fills or empties its packet,
//! takes the signal's waker, and stores the token: **that store is its last access to the
//! node and the signal**. It wakes the taken waker after unlocking.
//!
//! # Who removes a node, and when the owner may free it
//! - A notifier unlinks the node it claims, and any *stale* node it meets (whose signal is no
//!   longer `WAITING`: timed out, or claimed through another `select!` arm), under the lock.
//! - The owner unlinks its node itself if it is still linked, under the lock, after it
//!   claimed its own signal (timeout, cancellation, abort), when unwinding, and in `select!`
//!   for every arm.
//! - The owner may free a node once it is unlinked and no notifier can still be touching it:
//!   after it loaded a notifier's token (Acquire; the notifier is done with node and signal),
//!   or after it unlinked the node itself under the lock (a claim in progress holds that lock).
//!   So a `send`/`recv` woken by a claim reads its packet **without re-taking the lock**.

use std::ptr;
use std::task::Waker;

use crate::loom::cell::UnsafeCell;
use crate::loom::{AtomicUsize, Ordering::*};

/// The selection word while its owner still waits.
pub(crate) const WAITING: usize = 0;
/// The owner's own claim: its deadline passed.
pub(crate) const TIMED_OUT: usize = usize::MAX;
/// The owner's own claim: the runtime is unwinding it (shutdown).
pub(crate) const CANCELLED: usize = usize::MAX - 1;
/// The owner's own claim: a `select!` found an arm ready while registering.
pub(crate) const ABORTED: usize = usize::MAX - 2;
/// A notifier won the claim and is filling the packet; its token follows. Transient: the
/// notifier holds the channel lock throughout.
pub(crate) const CLAIMING: usize = usize::MAX - 3;

/// One waiting party's selection word and waker.
pub(crate) struct Signal {
    state: AtomicUsize,
    /// Written by the owner before its first node is linked (or under the lock by a future
    /// re-polled with a new waker, while `WAITING`); taken by the claim winner only.
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: `waker` is accessed by the owner before any node links the signal, and afterwards
// only by whoever won the signal's CAS (a notifier, under its channel's lock) or by the owner
// under the lock of its only channel (futures), never concurrently (see the field's docs).
unsafe impl Sync for Signal {}

impl Signal {
    pub(crate) fn new(waker: Waker) -> Signal {
        Signal {
            state: AtomicUsize::new(WAITING),
            waker: UnsafeCell::new(Some(waker)),
        }
    }

    /// Any thread: the selection word. Acquire pairs with the notifier's Release store of its
    /// token in `Claim::finish`: a token read here makes the notifier's packet change visible.
    pub(crate) fn state(&self) -> usize {
        self.state.load(Acquire)
    }

    /// Owner: claims its own signal with `token` (`TIMED_OUT`, `CANCELLED`, `ABORTED`). True if
    /// it won; then it takes its nodes back under their locks, which orders everything after
    /// (so success is Relaxed). False: a notifier claimed first; the failure's Acquire pairs
    /// with `Claim::finish`'s Release when it already reads the final token.
    pub(crate) fn claim_self(&self, token: usize) -> bool {
        self.state
            .compare_exchange(WAITING, token, Relaxed, Acquire)
            .is_ok()
    }

    /// Owner of a future, under the lock of its channel, while `WAITING`: a re-poll with a
    /// different waker replaces it (a claim needs that lock, so none is in progress).
    pub(crate) fn set_waker(&self, waker: &Waker) {
        // SAFETY: see the field's docs: we hold the only channel lock under which a claim
        // could take the waker, and the state is still `WAITING`.
        self.waker.with_mut(|w| unsafe {
            if !(*w).as_ref().is_some_and(|old| old.will_wake(waker)) {
                *w = Some(waker.clone());
            }
        });
    }
}

/// An entry of a `Waiters` list.
pub(crate) struct Node<T> {
    /// The token a claim through this node stores (`select!`: the arm number).
    token: usize,
    links: UnsafeCell<Links<T>>,
    /// The value in transit; see "Who removes a node" for who may touch it when.
    packet: UnsafeCell<Option<T>>,
}

/// Under the lock of the list the node is (or was last) linked in.
struct Links<T> {
    prev: *const Node<T>,
    next: *const Node<T>,
    linked: bool,
    /// A readiness watcher (module docs): never a partner, woken by `claim_watchers`.
    watcher: bool,
    signal: *const Signal,
}

// SAFETY: a node is shared between its owner and the notifiers of one channel; `links` is
// only accessed under that channel's lock, and `packet` as described in the module docs
// (under the lock, or by the owner after the notifier's last access). `T: Send` because the
// packet's value moves between threads.
unsafe impl<T: Send> Sync for Node<T> {}

impl<T> Node<T> {
    pub(crate) fn new(token: usize, packet: Option<T>) -> Node<T> {
        Node {
            token,
            links: UnsafeCell::new(Links {
                prev: ptr::null(),
                next: ptr::null(),
                linked: false,
                watcher: false,
                signal: ptr::null(),
            }),
            packet: UnsafeCell::new(packet),
        }
    }

    /// Owner: takes the packet. The caller holds the lock the node was linked under after
    /// unlinking it, or has loaded a notifier's token from the signal (module docs).
    pub(crate) fn take_packet(&self) -> Option<T> {
        // SAFETY: per the caller's duty, no notifier can be touching the packet any more, and
        // the lock or the token's Acquire orders their last write before this read.
        self.packet.with_mut(|p| unsafe { (*p).take() })
    }
}

impl<T> Drop for Node<T> {
    fn drop(&mut self) {
        if self.links.with_mut(|l| {
            // SAFETY: `&mut self`: nobody else holds the node.
            unsafe { (*l).linked }
        }) {
            // Freed while a notifier can still reach it: memory would be reused under it.
            fatal!("chan: a waiter's node was freed while still queued");
        }
    }
}

/// A FIFO of nodes, linked intrusively. Not synchronised itself: it lives in the channel's
/// state, under its lock, and every method runs under that lock.
pub(crate) struct Waiters<T> {
    head: *const Node<T>,
    tail: *const Node<T>,
}

// SAFETY: the list only links nodes (`Node<T>: Sync` for `T: Send`), and is only touched under
// the channel's lock.
unsafe impl<T: Send> Send for Waiters<T> {}

impl<T> Waiters<T> {
    pub(crate) const fn new() -> Waiters<T> {
        Waiters {
            head: ptr::null(),
            tail: ptr::null(),
        }
    }

    /// True if nothing is queued (stale nodes included).
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Owner: queues `node`, claimable through `signal`.
    ///
    /// # Safety
    /// `node` is not linked, and is only ever linked in this list. `node` and `signal` stay
    /// valid, and are not moved, until the node is unlinked and no notifier can still touch
    /// it (module docs, "Who removes a node"). The caller holds the lock.
    pub(crate) unsafe fn push(&mut self, node: &Node<T>, signal: &Signal) {
        // SAFETY: the caller's duties are `push_as`'s.
        unsafe { self.push_as(node, signal, false) };
    }

    /// Owner: queues `node` as a readiness watcher (module docs): it is woken by
    /// `claim_watchers` or `claim_all`, never handed a value nor asked for one.
    ///
    /// # Safety
    /// As for `push`; and `node`'s packet is empty.
    pub(crate) unsafe fn push_watcher(&mut self, node: &Node<T>, signal: &Signal) {
        // SAFETY: the caller's duties are `push_as`'s.
        unsafe { self.push_as(node, signal, true) };
    }

    /// # Safety
    /// As for `push`.
    unsafe fn push_as(&mut self, node: &Node<T>, signal: &Signal, watcher: bool) {
        let tail = self.tail;
        node.links.with_mut(|l| {
            // SAFETY: under the lock (the caller's duty), `links` is ours.
            let l = unsafe { &mut *l };
            debug_assert!(!l.linked);
            *l = Links {
                prev: tail,
                next: ptr::null(),
                linked: true,
                watcher,
                signal,
            };
        });
        let node: *const Node<T> = node;
        if tail.is_null() {
            self.head = node;
        } else {
            // SAFETY: `tail` is linked here, so valid (push's contract).
            unsafe { (*tail).links.with_mut(|l| (*l).next = node) };
        }
        self.tail = node;
    }

    /// Owner, under the lock: unlinks `node` if it is still linked; true if it was.
    ///
    /// # Safety
    /// `node` was only ever pushed into this list.
    pub(crate) unsafe fn remove(&mut self, node: &Node<T>) -> bool {
        // SAFETY: under the lock; linked nodes of this list are valid (push's contract).
        let linked = node.links.with(|l| unsafe { (*l).linked });
        if linked {
            // SAFETY: as above, and it is linked in this list (the caller's duty).
            unsafe { self.unlink(node) };
        }
        linked
    }

    /// # Safety
    /// `node` is linked in this list; the caller holds the lock.
    unsafe fn unlink(&mut self, node: *const Node<T>) {
        // SAFETY: linked nodes are valid (push's contract), their links ours under the lock.
        let (prev, next) = unsafe {
            (*node).links.with_mut(|l| {
                let l = &mut *l;
                l.linked = false;
                (
                    std::mem::replace(&mut l.prev, ptr::null()),
                    std::mem::replace(&mut l.next, ptr::null()),
                )
            })
        };
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: a linked neighbour is valid.
            unsafe { (*prev).links.with_mut(|l| (*l).next = next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).links.with_mut(|l| (*l).prev = prev) };
        }
    }

    /// True if some partner node (not `own`'s, not a watcher) could still be claimed. A hint
    /// under the lock: its owner may time out concurrently, so a claim may still fail.
    pub(crate) fn has_claimable(&self, own: Option<&Signal>) -> bool {
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: under the lock; linked nodes and their signals are valid (push's contract).
            let (signal, next, watcher) = unsafe {
                (*cur)
                    .links
                    .with(|l| ((*l).signal, (*l).next, (*l).watcher))
            };
            if !watcher
                && !is_own(signal, own)
                // SAFETY: as above.
                && unsafe { (*signal).state.load(Relaxed) } == WAITING
            {
                return true;
            }
            cur = next;
        }
        false
    }

    /// Notifier, under the lock: claims the oldest claimable partner node (never one of
    /// `own`'s: a `select!` must not pair its send arm with its own receive arm; never a
    /// watcher, which takes nothing), unlinks it and returns it for the caller to fill or
    /// empty. Stale nodes met on the way are unlinked; waiting watchers stay.
    #[inline]
    pub(crate) fn claim(&mut self, own: Option<&Signal>) -> Option<Claim<'_, T>> {
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: under the lock; linked nodes and their signals are valid (push's contract).
            let (signal, next, watcher) = unsafe {
                (*cur)
                    .links
                    .with(|l| ((*l).signal, (*l).next, (*l).watcher))
            };
            if watcher {
                // Passed over: a send spent on a watcher would strand a receiver behind it.
                // SAFETY: `cur` is linked here and `signal` is its signal.
                unsafe { self.pass_watcher(cur, signal) };
            } else if !is_own(signal, own) {
                // SAFETY: as above.
                if unsafe { self.try_claim(cur, signal) } {
                    return Some(Claim::new(cur, signal));
                }
            }
            cur = next;
        }
        None
    }

    /// Under the lock: leaves a waiting watcher queued, unlinks a stale one.
    ///
    /// # Safety
    /// `node` is linked in this list and `signal` is its signal.
    #[cold]
    unsafe fn pass_watcher(&mut self, node: *const Node<T>, signal: *const Signal) {
        // SAFETY: linked nodes' signals are valid (push's contract).
        if unsafe { (*signal).state.load(Relaxed) } != WAITING {
            // SAFETY: linked here (the caller's duty); we hold the lock.
            unsafe { self.unlink(node) };
        }
    }

    /// Under the lock: CAS `signal` `WAITING → CLAIMING` and unlink `node` (claimed now, or
    /// stale); true if the CAS won, and then the caller must finish a `Claim` of it.
    ///
    /// # Safety
    /// `node` is linked in this list and `signal` is its signal.
    #[inline]
    unsafe fn try_claim(&mut self, node: *const Node<T>, signal: *const Signal) -> bool {
        // Relaxed: the lock orders the packet and the waker; a loss means the owner (or
        // another channel) took the signal, and we touch neither.
        // SAFETY: linked nodes' signals are valid (push's contract).
        let won = unsafe { &(*signal).state }
            .compare_exchange(WAITING, CLAIMING, Relaxed, Relaxed)
            .is_ok();
        // SAFETY: linked here (the caller's duty); we hold the lock.
        unsafe { self.unlink(node) };
        won
    }

    /// Under the lock, once the state a watcher waits for has arrived with no partner to take
    /// it (an item buffered, a slot freed, a partner queued on a rendezvous): claims every
    /// waiting watcher, unlinks stale ones, and returns the wakers to wake after unlocking
    /// (several folded into one). Partner nodes are left alone.
    #[cold] // only with watchers queued: kept out of the `send`/`recv` paths' code
    pub(crate) fn claim_watchers(&mut self) -> Option<Waker> {
        let mut woken = Woken::default();
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: under the lock; linked nodes are valid (push's contract).
            let (signal, next, watcher) = unsafe {
                (*cur)
                    .links
                    .with(|l| ((*l).signal, (*l).next, (*l).watcher))
            };
            if watcher {
                // SAFETY: `cur` is linked here and `signal` is its signal.
                if unsafe { self.try_claim(cur, signal) } {
                    woken.add(Claim::<T>::new(cur, signal).finish());
                }
            }
            cur = next;
        }
        woken.into_waker()
    }

    /// Disconnection, under the lock: claims every claimable node, watchers included, packets
    /// untouched (so they tell their owners what happened); returns the wakers to wake after
    /// unlocking.
    pub(crate) fn claim_all(&mut self) -> Vec<Waker> {
        let mut woken = Vec::new();
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: under the lock; linked nodes are valid (push's contract).
            let (signal, next) = unsafe { (*cur).links.with(|l| ((*l).signal, (*l).next)) };
            // SAFETY: `cur` is linked here and `signal` is its signal.
            if unsafe { self.try_claim(cur, signal) } {
                woken.extend(Claim::<T>::new(cur, signal).finish());
            }
            cur = next;
        }
        woken
    }
}

/// Wakers gathered under a lock, to wake after it: the first kept as is, any more folded into
/// one waker (an allocation only when two or more watchers wait).
#[derive(Default)]
struct Woken {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Woken {
    fn add(&mut self, w: Option<Waker>) {
        match (&self.first, w) {
            (_, None) => {}
            (None, w) => self.first = w,
            (Some(_), Some(w)) => self.more.push(w),
        }
    }

    fn into_waker(mut self) -> Option<Waker> {
        if self.more.is_empty() {
            return self.first;
        }
        self.more.extend(self.first);
        Some(Waker::from(std::sync::Arc::new(Several(self.more))))
    }
}

/// A waker that wakes several.
struct Several(Vec<Waker>);

impl std::task::Wake for Several {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.iter().for_each(Waker::wake_by_ref);
    }
}

fn is_own(signal: *const Signal, own: Option<&Signal>) -> bool {
    own.is_some_and(|o| ptr::eq(signal, o))
}

/// A node this notifier claimed and unlinked. The lock is held while it exists (it borrows
/// the list); `finish` publishes the outcome.
#[must_use = "a claimed waiter must be finished, or it never wakes"]
pub(crate) struct Claim<'a, T> {
    node: *const Node<T>,
    signal: *const Signal,
    _list: std::marker::PhantomData<&'a mut Waiters<T>>,
}

impl<T> Claim<'_, T> {
    /// A node whose signal `try_claim` just won (`CLAIMING`), now unlinked.
    fn new(node: *const Node<T>, signal: *const Signal) -> Self {
        Claim {
            node,
            signal,
            _list: std::marker::PhantomData,
        }
    }

    /// The value a waiting sender offered (taken now; its owner will find the packet empty).
    pub(crate) fn take_offer(&mut self) -> T {
        // SAFETY: the claim is ours and the owner waits for `finish`, so the node is valid and
        // its packet ours until then.
        match unsafe { (*self.node).packet.with_mut(|p| (*p).take()) } {
            Some(v) => v,
            None => fatal!("chan: a claimable sender node had no value"),
        }
    }

    /// Hands `v` to a waiting receiver.
    pub(crate) fn give(&mut self, v: T) {
        // SAFETY: as in `take_offer`.
        unsafe { (*self.node).packet.with_mut(|p| *p = Some(v)) };
    }

    /// Publishes the claim: stores the node's token in the signal, the last access to node and
    /// signal. Returns the waker to wake after unlocking.
    pub(crate) fn finish(self) -> Option<Waker> {
        // SAFETY: the node and signal stay valid until the token is stored (module docs); the
        // waker is ours because our CAS won.
        unsafe {
            let token = (*self.node).token;
            let waker = (*self.signal).waker.with_mut(|w| (*w).take());
            // Release publishes the packet change (and the unlink) to the owner's Acquire load
            // in `Signal::state` / `claim_self`, which may then free the node without the lock.
            (*self.signal).state.store(token, Release);
            waker
        }
    }
}
