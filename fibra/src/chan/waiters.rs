//! `Waiters<T>`: a channel's queue of blocked senders (or receivers), each entry carrying the
//! value being handed over.
//!
//! Like `sync::WaitList`, but an entry has a *packet*: a waiting sender's entry holds the value
//! it offers; a waiting receiver's entry is where a sender puts the value it hands over. The
//! list lives under the channel's lock.
//!
//! # Who removes an entry
//! Only its **owner** (the party that pushed it), under the lock, after it woke, timed out, was
//! cancelled, or dropped its future. A notifier only *claims* an entry (`Waiter::try_select`
//! with the entry's token) and, if the claim won, fills or empties the packet. So after
//! `remove`, the packet tells the owner the whole truth: a receiver's packet holds a value iff
//! a sender's claim won; a sender's packet is empty iff a receiver's claim won. Entries whose
//! claim was lost (timed out, won by another `select!` arm, already filled) are skipped by
//! notifiers until their owner removes them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sync::waiter::{Waiter, WAITING};

pub(crate) struct Entry<T> {
    pub(crate) waiter: Arc<Waiter>,
    pub(crate) token: usize,
    pub(crate) packet: Option<T>,
}

pub(crate) struct Waiters<T> {
    entries: VecDeque<Entry<T>>,
}

impl<T> Waiters<T> {
    pub(crate) const fn new() -> Waiters<T> {
        Waiters {
            entries: VecDeque::new(),
        }
    }

    /// Owner, under the lock.
    pub(crate) fn push(&mut self, waiter: Arc<Waiter>, token: usize, packet: Option<T>) {
        self.entries.push_back(Entry {
            waiter,
            token,
            packet,
        });
    }

    /// Owner, under the lock: takes back its entry registered with `token`.
    pub(crate) fn remove(&mut self, waiter: &Waiter, token: usize) -> Option<Entry<T>> {
        let i = self
            .entries
            .iter()
            .position(|e| e.token == token && std::ptr::eq(&*e.waiter, waiter))?;
        self.entries.remove(i)
    }

    /// True if some entry (not `own`'s) could still be claimed. A hint under the lock: a
    /// waiter may time out concurrently, so the claim itself may still fail.
    pub(crate) fn has_claimable(&self, own: Option<&Waiter>) -> bool {
        self.entries
            .iter()
            .any(|e| !is_own(e, own) && e.waiter.selected() == WAITING)
    }

    /// Notifier, under the lock: claims the oldest claimable entry (never one of `own`'s: a
    /// `select!` must not pair its send arm with its own receive arm) and returns it for the
    /// caller to fill or empty. The caller wakes `entry.waiter` after unlocking.
    pub(crate) fn claim(&mut self, own: Option<&Waiter>) -> Option<&mut Entry<T>> {
        let i = self.entries.iter().position(|e| {
            !is_own(e, own)
                && e.waiter.selected() == WAITING // cheap skip of stale entries before the CAS
                && e.waiter.try_select(e.token)
        })?;
        self.entries.get_mut(i)
    }

    /// Disconnection, under the lock: claims every claimable entry, packets untouched; returns
    /// the waiters to wake after unlocking.
    pub(crate) fn claim_all(&mut self) -> Vec<Arc<Waiter>> {
        self.entries
            .iter()
            .filter(|e| e.waiter.try_select(e.token))
            .map(|e| e.waiter.clone())
            .collect()
    }
}

fn is_own<T>(e: &Entry<T>, own: Option<&Waiter>) -> bool {
    own.is_some_and(|w| std::ptr::eq(&*e.waiter, w))
}
