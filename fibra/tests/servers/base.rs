//! The server-process machinery of `servers/mod.rs` (start on a free loopback port in a fresh
//! temporary directory, wait until ready, stop and clean up on drop) and redis-server. It
//! needs only std and libc, so fibra-lab's client experiment includes this file too
//! (`fibra-lab/src/experiments/client.rs`); PostgreSQL, which needs the `postgres` crate to
//! tell when it is ready, stays in `mod.rs`.
#![allow(dead_code)] // each user starts one kind of server

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections (PostgreSQL's first start on a loaded
/// 2-core machine takes about a second).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running server; dropping it stops the server and removes its directory.
pub struct Server {
    pub(super) child: Child,
    pub(super) dir: PathBuf,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown; redis-server exits on it too.
        // SAFETY: `kill` on our own child's pid, which stays ours until we wait for it.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let until = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn skip(what: &str, why: &str) -> Option<Server> {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: {what}: {why} (scripts/install-servers.sh installs it)\n").as_bytes(),
    );
    None
}

/// A loopback port nothing listens on now.
pub(super) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A fresh directory under the system's temporary directory.
pub(super) fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fibra-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Waits until `port` accepts a connection and `ready` agrees, or the child exits.
pub(super) fn wait_ready(
    child: &mut Child,
    port: u16,
    ready: impl Fn() -> bool,
) -> Result<(), String> {
    let until = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && ready() {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("not accepting connections after {READY_WITHIN:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `redis-server` on a free loopback port, without persistence.
pub fn start_redis() -> Option<Server> {
    let Some(bin) = find_on_path("redis-server") else {
        return skip("redis-server", "not installed");
    };
    let port = free_port();
    let dir = temp_dir("redis");
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut server = match child {
        Ok(child) => Server { child, dir, port },
        Err(e) => return skip("redis-server", &format!("cannot start: {e}")),
    };
    let ping = || {
        let mut s = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(_) => return false,
        };
        let mut buf = [0u8; 7];
        std::io::Write::write_all(&mut s, b"PING\r\n").is_ok()
            && std::io::Read::read_exact(&mut s, &mut buf).is_ok()
            && &buf == b"+PONG\r\n"
    };
    match wait_ready(&mut server.child, port, ping) {
        Ok(()) => Some(server),
        Err(e) => skip("redis-server", &e), // `server` drops: stopped, directory removed
    }
}
