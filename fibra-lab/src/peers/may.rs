//! io: `may_minihttp`'s hello server on the `may` runtime (stackful coroutines, M:N, one epoll
//! event loop per worker): the stackful peer issue 21 compares fibra's latency tail with.
//! Only the io experiment; `may` is a dependency of the lab alone.

use std::io;
use std::net::{SocketAddr, TcpListener};

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};

use crate::child::{self, Figures};

/// Coroutine stacks of 32 KiB, as in the measurement. `may` counts stack sizes in
/// machine words (`generator::Stack::new`), so this is 32 KiB / 8.
const STACK_WORDS: usize = 32 * 1024 / std::mem::size_of::<usize>();

/// Tries at finding a free port (see `free_port`).
const BIND_TRIES: usize = 5;

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    /// The same body and content type as the other servers; may_minihttp adds its own
    /// `Server` and `Date` headers, which cannot be turned off.
    fn call(&mut self, _req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain");
        rsp.body("Hello, World!");
        Ok(())
    }
}

struct HelloFactory;

impl HttpServiceFactory for HelloFactory {
    type Service = Hello;

    fn new_service(&self, _id: usize) -> Hello {
        Hello
    }
}

/// io: the server until the lab kills the process. `HttpServiceFactory::start` (the one the
/// may_minihttp examples use) starts each connection's coroutine on the worker that polls
/// its socket (`fd % workers`). may's own defaults stand otherwise, worker pinning to cores
/// included (`config().set_worker_pin`, on by default).
pub fn io_server(workers: usize) -> Result<Figures, String> {
    // Before the first coroutine: the scheduler reads its configuration once, when it starts.
    may::config()
        .set_workers(workers.max(1))
        .set_stack_size(STACK_WORDS);
    let mut last_error = None;
    for _ in 0..BIND_TRIES {
        let addr = free_port()?;
        match HelloFactory.start(addr) {
            Ok(server) => {
                child::announce(Ok(addr))?;
                return match server.join() {
                    Ok(()) => Err("the server stopped".into()),
                    Err(_) => Err("the server's accept coroutine panicked".into()),
                };
            }
            // Taken between `free_port` and the server's own bind: try another.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(format!("cannot bind {addr}: {e}")),
        }
    }
    Err(format!(
        "no free loopback port in {BIND_TRIES} tries: {}",
        last_error.map_or_else(String::new, |e| e.to_string())
    ))
}

/// A loopback port that was free a moment ago. may_minihttp binds the address it is given
/// and does not tell which port `:0` became, so the port is chosen here first.
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))
}
