//! hyper 1.x on fibra (feature `hyper`): [`hyper::rt::Read`] and [`hyper::rt::Write`] for
//! [`TcpStream`](crate::net::TcpStream) and [`UnixStream`](crate::os::unix::net::UnixStream),
//! an [`Executor`] that runs hyper's background tasks as fibers, and a [`Timer`] on fibra's
//! timers. hyper's servers (HTTP/1 and HTTP/2) and clients then run with nothing from tokio.
//!
//! The shape of a server: accept in a fiber, and serve each connection in a fiber of its own
//! that drives hyper's connection future with [`fibra::await_future`](crate::await_future).
//! A client's connection future runs the same way, beside the fiber that sends requests:
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//!
//! # fibra::run(|| {
//! let listener = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! fibra::spawn(move || loop {
//!     let Ok((stream, _)) = listener.accept() else { return };
//!     fibra::spawn(move || {
//!         let hello = hyper::service::service_fn(|_: Request<Incoming>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("Hello"))))
//!         });
//!         let conn = hyper::server::conn::http1::Builder::new()
//!             .timer(fibra::compat::hyper::Timer)
//!             .serve_connection(stream, hello);
//!         let _ = fibra::await_future(conn);
//!     });
//! });
//!
//! let stream = fibra::net::TcpStream::connect(addr).unwrap();
//! let (mut sender, conn) =
//!     fibra::await_future(hyper::client::conn::http1::handshake(stream)).unwrap();
//! fibra::spawn(move || fibra::await_future(conn));
//! let req = Request::get("/").body(Full::<Bytes>::default()).unwrap();
//! let resp = fibra::await_future(sender.send_request(req)).unwrap();
//! let body = fibra::await_future(resp.into_body().collect()).unwrap().to_bytes();
//! assert_eq!(body, "Hello");
//! # });
//! ```
//!
//! See [`fibra::compat`](crate::compat) for where such futures may run.
//!
//! # Stacks
//! A fiber polling hyper's connection future needs more stack in debug builds than in release
//! ones (unoptimised futures are large and their polls nest): the default 64 KiB served the
//! lab's release server, while the debug-built HTTP/2 tests overflowed it and use 1 MiB
//! ([`RuntimeBuilder::stack_size`](crate::RuntimeBuilder::stack_size); only touched pages
//! cost memory). [`Executor`] spawns with the runtime's default size.

mod executor;
mod io;
mod timer;

pub use executor::Executor;
pub use timer::Timer;
