//! `Select`: a `select!` whose arms are built at run time (any number of them).
//!
//! The same arms and the same `select::run` as the macro, each boxed behind `dyn Arm`; the
//! chosen arm's outcome stays in it until [`SelectedOperation::recv`] or
//! [`SelectedOperation::send`] takes it out, with the type the caller names (checked against
//! the channel the operation was built with).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::error::{
    ReadyTimeoutError, RecvError, SelectTimeoutError, SendError, TryReadyError, TrySelectError,
};
use super::ready;
use super::receiver::Receiver;
use super::select::{run, Arm, Mode, RecvArm, SendArm};
use super::sender::Sender;

/// One registered operation: its arm and the channel it was built with.
struct Op<'a> {
    arm: Box<dyn Arm + 'a>,
    /// The channel's address: identifies it, and through it the arm's item type.
    chan: *const (),
    recv: bool,
}

/// Waits on a list of operations built at run time; completes exactly one per
/// [`select`](Select::select), or reports one that could proceed with
/// [`ready`](Select::ready) (performing nothing).
///
/// `recv` operations can be selected again and again. A `send` operation carries its value
/// (as a case of Go's `reflect.Select`; crossbeam-channel's takes it later): once chosen its
/// value is sent and it is never chosen again; an operation not chosen keeps its value.
///
/// ```
/// use fibra::chan::{self, Select};
/// # fibra::run(|| {
/// let chans: Vec<_> = (0..4).map(|_| chan::unbounded::<usize>()).collect();
/// chans[2].0.send(42).unwrap();
/// let mut sel = Select::new();
/// for (_, rx) in &chans {
///     sel.recv(rx);
/// }
/// let op = sel.select();
/// let i = op.index();
/// assert_eq!((i, op.recv(&chans[i].1)), (2, Ok(42)));
/// # });
/// ```
pub struct Select<'a> {
    ops: Vec<Op<'a>>,
    biased: bool,
}

impl<'a> Select<'a> {
    /// An empty list; operations chosen at random among the ready ones.
    ///
    /// ```
    /// let sel = fibra::chan::Select::new();
    /// assert_eq!(format!("{sel:?}"), "Select { operations: 0, biased: false }");
    /// ```
    pub fn new() -> Select<'a> {
        Select {
            ops: Vec::new(),
            biased: false,
        }
    }

    /// An empty list whose ready operations are chosen in the order they were added (as
    /// [`select_biased!`](crate::select_biased)).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded();
    /// tx.send(1).unwrap();
    /// let mut sel = fibra::chan::Select::new_biased();
    /// let first = sel.recv(&rx);
    /// sel.recv(&rx);
    /// let op = sel.select();
    /// assert_eq!(op.index(), first);
    /// assert_eq!(op.recv(&rx), Ok(1));
    /// # });
    /// ```
    pub fn new_biased() -> Select<'a> {
        Select {
            ops: Vec::new(),
            biased: true,
        }
    }

    /// Adds a receive from `rx`; returns its index.
    ///
    /// ```
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// let mut sel = fibra::chan::Select::new();
    /// assert_eq!(sel.recv(&rx), 0);
    /// assert_eq!(sel.recv(&rx), 1);
    /// ```
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.ops.push(Op {
            arm: Box::new(RecvArm::new(rx)),
            chan: std::sync::Arc::as_ptr(&rx.chan).cast(),
            recv: true,
        });
        self.ops.len() - 1
    }

    /// Adds a send of `value` to `tx`; returns its index. The value is dropped with the
    /// `Select` if the operation is never chosen.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// let mut sel = fibra::chan::Select::new();
    /// let i = sel.send(&tx, "hi");
    /// let op = sel.select();
    /// assert_eq!(op.index(), i);
    /// op.send(&tx).unwrap();
    /// assert_eq!(rx.recv(), Ok("hi"));
    /// # });
    /// ```
    pub fn send<T>(&mut self, tx: &'a Sender<T>, value: T) -> usize {
        self.ops.push(Op {
            arm: Box::new(SendArm::new(tx, value)),
            chan: std::sync::Arc::as_ptr(&tx.chan).cast(),
            recv: false,
        });
        self.ops.len() - 1
    }

    /// Completes one operation, waiting (the fiber parks; a thread blocks) until one can.
    ///
    /// # Panics
    /// If there are no operations (it would wait for ever).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(0);
    /// fibra::spawn(move || tx.send(7).unwrap());
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&rx);
    /// assert_eq!(sel.select().recv(&rx), Ok(7));
    /// # });
    /// ```
    pub fn select(&mut self) -> SelectedOperation<'_, 'a> {
        assert!(!self.ops.is_empty(), "Select::select with no operations");
        match self.run(Mode::Block) {
            Some(op) => op,
            None => unreachable!("a blocking select completes an operation"),
        }
    }

    /// Completes an operation that is ready now, if any.
    ///
    /// # Errors
    /// [`TrySelectError`] if none is ready.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&rx);
    /// assert!(sel.try_select().is_err());
    /// # });
    /// ```
    pub fn try_select(&mut self) -> Result<SelectedOperation<'_, 'a>, TrySelectError> {
        self.run(Mode::NonBlocking).ok_or(TrySelectError)
    }

    /// Like [`select`](Self::select), but gives up after `timeout`.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation completed in time.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (_tx, rx) = fibra::chan::unbounded::<u8>();
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&rx);
    /// assert!(sel.select_timeout(std::time::Duration::from_millis(2)).is_err());
    /// # });
    /// ```
    pub fn select_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SelectedOperation<'_, 'a>, SelectTimeoutError> {
        self.run(Mode::Deadline(Instant::now().checked_add(timeout)))
            .ok_or(SelectTimeoutError)
    }

    /// Like [`select`](Self::select), but gives up at `deadline`.
    ///
    /// # Errors
    /// [`SelectTimeoutError`] if no operation completed in time.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::time::{Duration, Instant};
    /// let tick = fibra::chan::tick(Duration::from_millis(1));
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&tick);
    /// let op = sel.select_deadline(Instant::now() + Duration::from_secs(5)).unwrap();
    /// assert!(op.recv(&tick).is_ok());
    /// # });
    /// ```
    pub fn select_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<SelectedOperation<'_, 'a>, SelectTimeoutError> {
        self.run(Mode::Deadline(Some(deadline)))
            .ok_or(SelectTimeoutError)
    }

    /// Waits until one of the operations could proceed without blocking (the fiber parks; a
    /// thread blocks), and returns its index **without performing it**: a `recv` whose channel
    /// holds an item, has a sender waiting (`bounded(0)`), is disconnected, or is a timer that
    /// fell due; a `send` whose channel has room, has a receiver waiting (`bounded(0)`), or
    /// has lost every receiver. Chosen at random among the ready ones ([`new_biased`]: the
    /// first in order). A `send` operation's value stays in it; send your own.
    ///
    /// Readiness is a snapshot: by the time you act on it another receiver may have taken the
    /// item (or another sender the slot), so follow it with `try_recv`/`try_send` (and call
    /// `ready` again if they fail) or with a blocking operation.
    ///
    /// [`new_biased`]: Self::new_biased
    ///
    /// # Panics
    /// If there are no operations (it would wait for ever).
    ///
    /// ```
    /// use fibra::chan::{self, Select};
    /// # fibra::run(|| {
    /// let (tx1, rx1) = chan::unbounded::<i32>();
    /// let (_tx2, rx2) = chan::unbounded::<i32>();
    /// fibra::spawn(move || tx1.send(10).unwrap());
    /// let mut sel = Select::new();
    /// let a = sel.recv(&rx1);
    /// sel.recv(&rx2);
    /// assert_eq!(sel.ready(), a);
    /// assert_eq!(rx1.len(), 1); // not received: `ready` only looks
    /// assert_eq!(rx1.try_recv(), Ok(10));
    /// # });
    /// ```
    pub fn ready(&mut self) -> usize {
        assert!(!self.ops.is_empty(), "Select::ready with no operations");
        match self.run_ready(Mode::Block) {
            Some(i) => i,
            None => unreachable!("a blocking ready returns an operation"),
        }
    }

    /// The index of an operation that could proceed now without blocking, if any (see
    /// [`ready`](Self::ready)); it is not performed.
    ///
    /// # Errors
    /// [`TryReadyError`] if none is ready.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::bounded(1);
    /// let mut sel = fibra::chan::Select::new();
    /// let r = sel.recv(&rx);
    /// assert!(sel.try_ready().is_err()); // empty
    /// tx.send(1).unwrap();
    /// assert_eq!(sel.try_ready(), Ok(r));
    /// # });
    /// ```
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        self.run_ready(Mode::NonBlocking).ok_or(TryReadyError)
    }

    /// Like [`ready`](Self::ready), but gives up after `timeout`.
    ///
    /// # Errors
    /// [`ReadyTimeoutError`] if no operation became ready in time.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fibra::run(|| {
    /// let (tx, _rx) = fibra::chan::bounded(0);
    /// let mut sel = fibra::chan::Select::new();
    /// sel.send(&tx, 1); // nobody receives
    /// assert!(sel.ready_timeout(Duration::from_millis(2)).is_err());
    /// # });
    /// ```
    pub fn ready_timeout(&mut self, timeout: Duration) -> Result<usize, ReadyTimeoutError> {
        self.run_ready(Mode::Deadline(Instant::now().checked_add(timeout)))
            .ok_or(ReadyTimeoutError)
    }

    /// Like [`ready`](Self::ready), but gives up at `deadline`.
    ///
    /// # Errors
    /// [`ReadyTimeoutError`] if no operation became ready in time.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// # fibra::run(|| {
    /// let tick = fibra::chan::tick(Duration::from_millis(1));
    /// let mut sel = fibra::chan::Select::new();
    /// let t = sel.recv(&tick);
    /// assert_eq!(sel.ready_deadline(Instant::now() + Duration::from_secs(5)), Ok(t));
    /// assert!(tick.try_recv().is_ok()); // the tick is still there to take
    /// # });
    /// ```
    pub fn ready_deadline(&mut self, deadline: Instant) -> Result<usize, ReadyTimeoutError> {
        self.run_ready(Mode::Deadline(Some(deadline)))
            .ok_or(ReadyTimeoutError)
    }

    fn run_ready(&mut self, mode: Mode) -> Option<usize> {
        let mut arms: Vec<&mut dyn Arm> = (self.ops.iter_mut())
            .map(|op| &mut *op.arm as &mut dyn Arm)
            .collect();
        ready::run(&mut arms, mode, self.biased)
    }

    fn run(&mut self, mode: Mode) -> Option<SelectedOperation<'_, 'a>> {
        let mut arms: Vec<&mut dyn Arm> = (self.ops.iter_mut())
            .map(|op| &mut *op.arm as &mut dyn Arm)
            .collect();
        if !run(&mut arms, mode, self.biased) {
            return None;
        }
        drop(arms);
        let index = self.ops.iter_mut().position(|op| op.arm.completed())?;
        Some(SelectedOperation {
            sel: self,
            index,
            done: false,
            _not_send: PhantomData,
        })
    }
}

impl Default for Select<'_> {
    fn default() -> Self {
        Select::new()
    }
}

impl fmt::Debug for Select<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("operations", &self.ops.len())
            .field("biased", &self.biased)
            .finish()
    }
}

/// The operation a [`Select`] completed: name its channel again to take the outcome.
///
/// # Panics
/// Dropped without [`recv`](Self::recv) or [`send`](Self::send) (a received value would be
/// lost), as crossbeam-channel's.
///
/// ```
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::unbounded();
/// tx.send(3).unwrap();
/// let mut sel = fibra::chan::Select::new();
/// sel.recv(&rx);
/// let op: fibra::chan::SelectedOperation<'_, '_> = sel.select();
/// assert_eq!(op.recv(&rx), Ok(3));
/// # });
/// ```
pub struct SelectedOperation<'s, 'a> {
    sel: &'s mut Select<'a>,
    index: usize,
    done: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> SelectedOperation<'_, 'a> {
    /// The index [`Select::recv`] or [`Select::send`] returned for this operation.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded();
    /// let (_tx2, idle) = fibra::chan::unbounded::<i32>();
    /// tx.send(1).unwrap();
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&idle);
    /// let i = sel.recv(&rx);
    /// let op = sel.select();
    /// assert_eq!(op.index(), i);
    /// op.recv(&rx).unwrap();
    /// # });
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// The outcome of the receive this operation completed.
    ///
    /// # Errors
    /// [`RecvError`] if the channel was empty and disconnected.
    ///
    /// # Panics
    /// If `rx` is not the receiver's channel of this operation, or it was a send.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded::<u8>();
    /// drop(tx);
    /// let mut sel = fibra::chan::Select::new();
    /// sel.recv(&rx);
    /// assert!(sel.select().recv(&rx).is_err());
    /// # });
    /// ```
    pub fn recv<T: 'a>(mut self, rx: &Receiver<T>) -> Result<T, RecvError> {
        let op = self.op(std::sync::Arc::as_ptr(&rx.chan).cast(), true, "recv");
        // SAFETY: `op` was built by `Select::recv` from a `&'a Receiver<U>` whose channel is at
        // the address `rx`'s is (checked in `op`); that borrow keeps the channel alive, so
        // both name one allocation, of one type: `U` is `T`, and the arm is a `RecvArm<'a, T>`.
        let arm = unsafe { &mut *(op as *mut dyn Arm).cast::<RecvArm<'a, T>>() };
        let out = arm.take();
        self.done = true;
        out.unwrap_or_else(|| unreachable!("the selected arm holds its outcome"))
    }

    /// The outcome of the send this operation completed.
    ///
    /// # Errors
    /// [`SendError`] with the value if every receiver was gone.
    ///
    /// # Panics
    /// If `tx` is not the sender's channel of this operation, or it was a receive.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let (tx, rx) = fibra::chan::unbounded::<u8>();
    /// drop(rx);
    /// let mut sel = fibra::chan::Select::new();
    /// sel.send(&tx, 5);
    /// assert_eq!(sel.select().send(&tx).unwrap_err().into_inner(), 5);
    /// # });
    /// ```
    pub fn send<T: 'a>(mut self, tx: &Sender<T>) -> Result<(), SendError<T>> {
        let op = self.op(std::sync::Arc::as_ptr(&tx.chan).cast(), false, "send");
        // SAFETY: as in `recv`, for a `SendArm<'a, T>` built by `Select::send`.
        let arm = unsafe { &mut *(op as *mut dyn Arm).cast::<SendArm<'a, T>>() };
        let out = arm.take();
        self.done = true;
        out.unwrap_or_else(|| unreachable!("the selected arm holds its outcome"))
    }

    fn op(&mut self, chan: *const (), recv: bool, what: &str) -> &mut (dyn Arm + 'a) {
        let op = &mut self.sel.ops[self.index];
        assert!(
            op.recv == recv && std::ptr::eq(op.chan, chan),
            "SelectedOperation::{what}: not the channel of operation {}",
            self.index
        );
        &mut *op.arm
    }
}

impl Drop for SelectedOperation<'_, '_> {
    fn drop(&mut self) {
        if !self.done && !std::thread::panicking() {
            panic!("a SelectedOperation was dropped without recv or send");
        }
    }
}

impl fmt::Debug for SelectedOperation<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedOperation")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}
