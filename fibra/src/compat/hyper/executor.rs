//! [`Executor`]: hyper's background tasks (HTTP/2 streams and connections) as fibers.

use std::future::Future;

use crate::Handle;

/// A [`hyper::rt::Executor`] that runs each future hyper hands it as a fiber of its own,
/// driving it with [`fibra::await_future`](crate::await_future): HTTP/2 needs one
/// (`hyper::server::conn::http2::Builder::new(Executor::new())`).
///
/// Called inside a fiber, it spawns on the caller's worker, as [`fibra::spawn`](crate::spawn)
/// does; called elsewhere (a foreign executor's thread) it spawns through the [`Handle`] it
/// captured when made, if any.
///
/// ```
/// use hyper::rt::Executor as _;
/// # fibra::run(|| {
/// let (tx, rx) = fibra::chan::bounded(1);
/// fibra::compat::hyper::Executor::new().execute(async move { tx.send(42).unwrap() });
/// assert_eq!(rx.recv().unwrap(), 42);
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct Executor {
    handle: Option<Handle>,
}

impl Executor {
    /// An executor for the runtime running the caller (if any: made outside a runtime, it
    /// can spawn only when called inside a fiber).
    ///
    /// ```
    /// let outside = fibra::compat::hyper::Executor::new();
    /// # fibra::run(move || { let _ = outside; });
    /// ```
    pub fn new() -> Executor {
        Executor {
            handle: Handle::try_current(),
        }
    }

    /// An executor that spawns through `handle` when it is not called inside a fiber.
    ///
    /// ```
    /// let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    /// let exec = fibra::compat::hyper::Executor::with_handle(rt.handle());
    /// # drop(exec);
    /// ```
    pub fn with_handle(handle: Handle) -> Executor {
        Executor {
            handle: Some(handle),
        }
    }
}

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// # Panics
    /// Outside a fiber when made without a runtime, or through a handle whose runtime is not
    /// running. A runtime shutting down drops the future (its fiber would be cancelled).
    fn execute(&self, fut: F) {
        let task = move || {
            crate::await_future(fut);
        };
        let spawned = match &self.handle {
            Some(h) if crate::try_current().is_none() => h.spawn(task),
            _ => crate::Builder::new().spawn(task),
        };
        match spawned {
            Ok(_) | Err(crate::SpawnError::ShuttingDown) => {}
            Err(e) => panic!("fibra::compat::hyper::Executor: cannot spawn hyper's task: {e}"),
        }
    }
}
