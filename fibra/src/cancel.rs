//! Cancellation: stopping one fiber, and telling a whole tree of work to stop.
//!
//! Two tools, for two situations:
//! - [`JoinHandle::cancel`](crate::JoinHandle::cancel) stops *one fiber* from outside: it
//!   unwinds at its next park, its destructors run, and `join` returns
//!   [`JoinError::Cancelled`](crate::JoinError::Cancelled). Nothing in the fiber has to
//!   cooperate; a [`scope`](crate::scope) passes it on to its fibers.
//! - A [`CancellationToken`] (Go's `context` cancellation, tokio-util's token) is
//!   *cooperative*: code checks [`is_cancelled`](CancellationToken::is_cancelled), waits on
//!   [`cancelled`](CancellationToken::cancelled) in a [`select!`](crate::select) next to its
//!   real work, and winds down in its own way (flushes, replies "shutting down"). Tokens form
//!   a tree: cancelling one cancels its [child tokens](CancellationToken::child_token), not
//!   its parent.
//!
//! ```
//! use fibra::CancellationToken;
//! # fibra::run(|| {
//! let root = CancellationToken::new();
//! let (tx, rx) = fibra::chan::unbounded::<u32>();
//! let workers: Vec<_> = (0..3)
//!     .map(|_| {
//!         let (token, rx) = (root.child_token(), rx.clone());
//!         fibra::spawn(move || {
//!             let mut handled = 0;
//!             loop {
//!                 fibra::select! {
//!                     recv(rx) -> job => { job.unwrap(); handled += 1 },
//!                     recv(token.cancelled()) -> _ => return handled,
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for job in 0..30 { tx.send(job).unwrap(); }
//! while !rx.is_empty() { fibra::yield_now(); }
//! root.cancel(); // every worker's child token is cancelled too
//! let total: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
//! assert_eq!(total, 30);
//! # });
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, Weak};

use crate::chan::{self, Receiver, Sender};

/// A cancellation flag shared by clones, with child tokens cancelled along with it.
///
/// Clones are the same token. [`child_token`](Self::child_token) makes a new token that is
/// cancelled when this one is (or on its own), never the other way round. Any thread may
/// use it, inside or outside a runtime.
///
/// # Memory ordering
/// Everything a thread did before [`cancel`](Self::cancel) is visible to code that sees the
/// token (or a child) cancelled: `is_cancelled` returning true, `wait` or a `cancelled()`
/// arm returning.
///
/// ```
/// let token = fibra::CancellationToken::new();
/// let child = token.child_token();
/// assert!(!child.is_cancelled());
/// token.cancel();
/// assert!(child.is_cancelled());
/// ```
#[derive(Clone)]
pub struct CancellationToken {
    node: Arc<Node>,
}

struct Node {
    /// Set once, by `cancel`, before the children are told.
    cancelled: AtomicBool,
    /// Disconnects when the token is cancelled (its only sender is dropped): what
    /// `cancelled()` hands to `select!` and `wait` receives from.
    closed: Receiver<()>,
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` once cancelled.
    sender: Option<Sender<()>>,
    children: Vec<Weak<Node>>,
}

impl CancellationToken {
    /// A token that is not cancelled, with no parent.
    ///
    /// ```
    /// assert!(!fibra::CancellationToken::new().is_cancelled());
    /// ```
    pub fn new() -> CancellationToken {
        let (sender, closed) = chan::bounded(0);
        CancellationToken {
            node: Arc::new(Node {
                cancelled: AtomicBool::new(false),
                closed,
                inner: Mutex::new(Inner {
                    sender: Some(sender),
                    children: Vec::new(),
                }),
            }),
        }
    }

    /// A new token cancelled when this one is (at once if it already is). Cancelling the
    /// child leaves this token alone. A child does not keep its parent alive, nor the parent
    /// its dropped children.
    ///
    /// ```
    /// let parent = fibra::CancellationToken::new();
    /// let child = parent.child_token();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    /// let other = parent.child_token();
    /// parent.cancel();
    /// assert!(other.is_cancelled());
    /// assert!(parent.child_token().is_cancelled()); // born cancelled
    /// ```
    pub fn child_token(&self) -> CancellationToken {
        let child = CancellationToken::new();
        let mut inner = self.node.lock();
        if inner.sender.is_none() {
            drop(inner);
            child.cancel();
            return child;
        }
        let children = &mut inner.children;
        if children.len() >= 8 && children.len().is_power_of_two() {
            // Amortised: a long-lived parent keeps only the children still alive.
            children.retain(|c| c.strong_count() > 0);
        }
        children.push(Arc::downgrade(&child.node));
        child
    }

    /// Cancels this token and, transitively, its child tokens. Idempotent; any thread.
    ///
    /// ```
    /// let token = fibra::CancellationToken::new();
    /// token.cancel();
    /// token.cancel(); // no-op
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        // Iterative, so a deep chain of children cannot overflow a small fiber stack.
        let mut pending = vec![self.node.clone()];
        while let Some(node) = pending.pop() {
            let (sender, children) = {
                let mut inner = node.lock();
                // Release (under the lock too): pairs with `is_cancelled`'s Acquire.
                node.cancelled.store(true, Release);
                (inner.sender.take(), std::mem::take(&mut inner.children))
            };
            drop(sender); // wakes every `wait` and `cancelled()` arm, outside the lock
            pending.extend(children.iter().filter_map(Weak::upgrade));
        }
    }

    /// True once this token (or an ancestor) was cancelled.
    ///
    /// ```
    /// let token = fibra::CancellationToken::new();
    /// let t = token.clone(); // the same token
    /// t.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(Acquire)
    }

    /// A receiver that disconnects when the token is cancelled, for a
    /// [`select!`](crate::select) arm: `recv(token.cancelled()) -> _ => ...`. It never
    /// carries a value; `recv` on it returns `Err(RecvError)` once the token is cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fibra::run(|| {
    /// let token = fibra::CancellationToken::new();
    /// let t = token.clone();
    /// let sleeper = fibra::spawn(move || fibra::select! {
    ///     recv(t.cancelled()) -> _ => "cancelled",
    ///     default(Duration::from_secs(3600)) => "slept an hour",
    /// });
    /// token.cancel();
    /// assert_eq!(sleeper.join().unwrap(), "cancelled");
    /// # });
    /// ```
    pub fn cancelled(&self) -> &Receiver<()> {
        &self.node.closed
    }

    /// Waits until the token is cancelled: parks a fiber, blocks a plain thread.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let token = fibra::CancellationToken::new();
    /// let waiter = fibra::spawn({ let t = token.clone(); move || t.wait() });
    /// token.cancel();
    /// waiter.join().unwrap();
    /// # });
    /// ```
    pub fn wait(&self) {
        while !self.is_cancelled() {
            let _ = self.node.closed.recv(); // Err once the sender is gone
        }
    }

    /// A guard that cancels the token when dropped (on return or unwinding alike), unless
    /// [`disarm`](DropGuard::disarm)ed first.
    ///
    /// ```
    /// let token = fibra::CancellationToken::new();
    /// {
    ///     let _guard = token.clone().drop_guard();
    /// } // dropped: cancelled
    /// assert!(token.is_cancelled());
    /// let other = fibra::CancellationToken::new();
    /// let kept = other.clone().drop_guard().disarm();
    /// assert!(!kept.is_cancelled());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard { token: Some(self) }
    }
}

impl Node {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for CancellationToken {
    /// Same as [`CancellationToken::new`].
    ///
    /// ```
    /// let token = fibra::CancellationToken::default();
    /// assert!(!token.is_cancelled());
    /// ```
    fn default() -> CancellationToken {
        CancellationToken::new()
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Cancels its token when dropped; from [`CancellationToken::drop_guard`].
///
/// ```
/// # fibra::run(|| {
/// let token = fibra::CancellationToken::new();
/// let t = token.clone();
/// let h = fibra::spawn(move || {
///     let _cancel_on_exit = t.drop_guard();
///     panic!("the guard cancels on unwinding too");
/// });
/// assert!(h.join().is_err());
/// assert!(token.is_cancelled());
/// # });
/// ```
#[must_use = "dropping the guard cancels the token at once"]
#[derive(Debug)]
pub struct DropGuard {
    token: Option<CancellationToken>,
}

impl DropGuard {
    /// Gives the token back without cancelling it.
    ///
    /// ```
    /// let guard = fibra::CancellationToken::new().drop_guard();
    /// assert!(!guard.disarm().is_cancelled());
    /// ```
    pub fn disarm(mut self) -> CancellationToken {
        self.token
            .take()
            .expect("a guard holds its token until disarmed or dropped")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_chain_cancels_without_recursion() {
        let root = CancellationToken::new();
        let mut tokens = vec![root.clone()];
        for _ in 0..100_000 {
            let next = tokens.last().unwrap().child_token();
            tokens.push(next);
        }
        root.cancel();
        assert!(tokens.iter().all(CancellationToken::is_cancelled));
    }

    #[test]
    fn dropped_children_are_pruned() {
        let root = CancellationToken::new();
        for _ in 0..1000 {
            drop(root.child_token());
        }
        assert!(root.node.lock().children.len() <= 16);
    }

    #[test]
    fn wait_on_a_plain_thread() {
        let token = CancellationToken::new();
        let t = token.clone();
        let waiter = std::thread::spawn(move || t.wait());
        token.cancel();
        waiter.join().unwrap();
    }
}
