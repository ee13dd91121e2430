//! Reaching async Rust: fibra's sockets as async I/O, hyper on fibra, and a bridge to tokio.
//!
//! Every part is behind its own feature and costs nothing when off:
//!
//! | feature        | what it adds                                                                  |
//! |----------------|-------------------------------------------------------------------------------|
//! | `futures-io`   | `futures_io::{AsyncRead, AsyncWrite}` for [`TcpStream`] and [`UnixStream`]      |
//! | `tokio-io`     | `tokio::io::{AsyncRead, AsyncWrite}` for the same (tokio's traits, no runtime)  |
//! | `hyper`        | `hyper::rt::{Read, Write}` for the same, and `compat::hyper`'s `Executor`, `Timer` |
//! | `tokio-compat` | `compat::tokio::run`: a future that needs tokio's runtime, run from a fiber     |
//!
//! (The implementations are on the socket types, so they appear in their docs; the
//! `compat::hyper` and `compat::tokio` modules exist with their features.)
//!
//! # Which route
//! - **A runtime-agnostic async crate** (hyper, async-tungstenite, futures-rustls, anything
//!   generic over `AsyncRead + AsyncWrite`): hand it a fibra socket and drive it with
//!   [`fibra::await_future`](crate::await_future) inside a fiber. Its I/O waits on fibra's
//!   own reactor, exactly as a blocking `read` does, and nothing else runs: no second
//!   runtime, no thread hop. This is the fast route; prefer it.
//! - **A crate that insists on tokio's runtime** (reqwest, sqlx, most SDKs: they call
//!   `tokio::spawn`, `tokio::time` or tokio's sockets): wrap the call in `compat::tokio::run`. The
//!   future runs on a shared tokio runtime while the fiber parks, so each call pays two
//!   cross-thread wake-ups (figures in `compat::tokio`'s docs) and the I/O runs on tokio's threads.
//!   Use it for calls that are few or slow anyway (an HTTP API, a database round trip).
//!
//! # Where futures run (one readiness model for both worlds)
//! A `poll_read` that would block stores `cx.waker()` in the socket's reactor registration
//! where a blocking `read` would park its fiber (`io/reactor/scheduled.rs`, "Futures wait the
//! same way"). A socket registers, at its first wait, with the poller of the fibra worker the
//! wait happens on; that worker's poller wakes whoever waits. So:
//! - **Inside [`fibra::await_future`](crate::await_future)** (or any executor that a fiber
//!   drives, such as a `FuturesUnordered` awaited in a fiber): works, and the waker is the
//!   fiber itself, so a readiness event queues it on its own worker like a blocking read's.
//! - **On another executor's thread** (a tokio or `futures` executor outside fibra): works
//!   for a socket that already waited once on a fibra worker (its registration is there; the
//!   worker's poller wakes the foreign task across threads). A socket that never waited on a
//!   worker cannot be waited on there: the poll fails with an error that says so, rather
//!   than hang with nobody polling for it.
//! - **An executor that blocks a fibra worker thread** (`futures::executor::block_on` called
//!   inside a fiber) must not wait on sockets registered with that worker: the worker that
//!   would report the readiness is the one blocked. Use `fibra::await_future` instead.
//!
//! Read and write timeouts and the non-blocking flag of a socket apply to its blocking
//! calls only: a future is given up by dropping it ([`Sleep`](crate::Sleep) makes timeouts).
//!
//! [`TcpStream`]: crate::net::TcpStream
//! [`UnixStream`]: crate::os::unix::net::UnixStream

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
mod poll;
#[cfg(feature = "tokio-compat")]
pub mod tokio;
#[cfg(feature = "tokio-io")]
mod tokio_io;
