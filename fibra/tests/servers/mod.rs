//! Real servers for the hooks tests (`hooks_redis.rs`, `hooks_postgres.rs`): each test starts
//! its own instance on a free loopback port in a fresh temporary directory, and the returned
//! guard stops it and removes the directory, also when the test panics. `scripts/test.sh`
//! installs the servers first (`scripts/install-servers.sh`); when one is missing or does not
//! start, `start_*` says why and returns `None`, and the test skips.
#![allow(dead_code)] // each test binary uses one server

#[path = "base.rs"]
mod base;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base::{find_on_path, free_port, skip, temp_dir, wait_ready};
#[allow(unused_imports)] // the postgres tests start no redis-server
pub use base::{start_redis, Server};

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
