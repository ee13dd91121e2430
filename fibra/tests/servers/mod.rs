//! Real servers for the hooks tests (`hooks_redis.rs`, `hooks_postgres.rs`): each test starts
//! its own instance on a free loopback port in a fresh temporary directory, and the returned
//! guard stops it and removes the directory, also when the test panics. `scripts/test.sh`
//! installs the servers first (`scripts/install-servers.sh`); when one is missing or does not
//! start, `start_*` says why and returns `None`, and the test skips.
#![allow(dead_code)] // each test binary uses one server

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
    child: Child,
    dir: PathBuf,
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

fn skip(what: &str, why: &str) -> Option<Server> {
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: {what}: {why} (scripts/install-servers.sh installs it)\n").as_bytes(),
    );
    None
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(tag: &str) -> PathBuf {
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
fn wait_ready(child: &mut Child, port: u16, ready: impl Fn() -> bool) -> Result<(), String> {
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

fn find_on_path(name: &str) -> Option<PathBuf> {
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

/// PostgreSQL's binaries: Debian keeps them in /usr/lib/postgresql/<major>/bin (the newest
/// major wins), else PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| find_on_path("initdb")?.parent().map(Path::to_path_buf))
}

/// The uid and gid of `user` in /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A throw-away PostgreSQL cluster (trust auth, superuser `fibra`, no fsync) on a free
/// loopback port, allowing `max_connections` clients. PostgreSQL refuses to run as root, so
/// as root it runs as the `postgres` user Debian's package creates.
pub fn start_postgres(max_connections: usize) -> Option<Server> {
    use std::os::unix::process::CommandExt;
    let Some(bin) = postgres_bin() else {
        return skip("PostgreSQL", "not installed");
    };
    // SAFETY: geteuid has no preconditions.
    let ids = if unsafe { libc::geteuid() } == 0 {
        match user_ids("postgres") {
            Some(ids) => Some(ids),
            None => return skip("PostgreSQL", "running as root and no `postgres` user"),
        }
    } else {
        None
    };
    let dir = temp_dir("postgres");
    let data = dir.join("data");
    if let Some((uid, gid)) = ids {
        if let Err(e) = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)) {
            let _ = std::fs::remove_dir_all(&dir);
            return skip("PostgreSQL", &format!("chown of the data directory: {e}"));
        }
    }
    let as_owner = |cmd: &mut Command| {
        if let Some((uid, gid)) = ids {
            cmd.uid(uid).gid(gid);
        }
    };
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "fibra", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_owner(&mut initdb);
    match initdb.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::remove_dir_all(&dir);
            let err = String::from_utf8_lossy(&o.stderr);
            return skip("PostgreSQL", &format!("initdb failed: {}", err.trim()));
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return skip("PostgreSQL", &format!("cannot run initdb: {e}"));
        }
    }
    let port = free_port();
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("max_connections={max_connections}")])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .arg("-k")
        .arg(&dir) // its Unix socket beside the data, not in /var/run/postgresql
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    as_owner(&mut postgres);
    let mut server = match postgres.spawn() {
        Ok(child) => Server { child, dir, port },
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return skip("PostgreSQL", &format!("cannot start: {e}"));
        }
    };
    // Ready once the startup packet gets an answer: the port opens before recovery ends.
    let ready = || {
        postgres::Client::connect(&postgres_url(port), postgres::NoTls)
            .and_then(|mut c| c.simple_query("SELECT 1"))
            .is_ok()
    };
    match wait_ready(&mut server.child, port, ready) {
        Ok(()) => Some(server),
        Err(e) => skip("PostgreSQL", &e),
    }
}

/// The connection string of a `start_postgres` server.
pub fn postgres_url(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=fibra dbname=postgres")
}
