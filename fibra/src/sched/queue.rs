//! Run queues. TEMPORARY crossbeam-backed version; replaced by the bounded ring.

use crossbeam_deque::{Injector, Steal, Stealer as CbStealer, Worker};

pub(crate) struct Local<T> {
    inner: Worker<T>,
}
pub(crate) struct Stealer<T> {
    inner: CbStealer<T>,
}
impl<T> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Stealer {
            inner: self.inner.clone(),
        }
    }
}
pub(crate) struct Inject<T> {
    inner: Injector<T>,
}

pub(crate) fn local<T>() -> (Local<T>, Stealer<T>) {
    let w = Worker::new_fifo();
    let s = w.stealer();
    (Local { inner: w }, Stealer { inner: s })
}

impl<T> Local<T> {
    pub(crate) fn push_back(&mut self, value: T, _inject: &Inject<T>) {
        self.inner.push(value)
    }
    pub(crate) fn pop(&mut self) -> Option<T> {
        self.inner.pop()
    }
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl<T> Stealer<T> {
    pub(crate) fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        loop {
            match self.inner.steal_batch_and_pop(&dst.inner) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

impl<T> Inject<T> {
    pub(crate) fn new() -> Self {
        Inject {
            inner: Injector::new(),
        }
    }
    pub(crate) fn push(&self, value: T) {
        self.inner.push(value)
    }
    pub(crate) fn pop(&self) -> Option<T> {
        loop {
            match self.inner.steal() {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
