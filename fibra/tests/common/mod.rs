//! Helpers shared by the integration tests (each test binary includes this module).
#![allow(dead_code)] // each test binary uses a subset

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Duration;

use fibra::net::{TcpListener, TcpStream};

/// `n` scaled by `FIBRA_TEST_SCALE`, a fraction in (0, 1] (1 when unset), rounded down to a
/// multiple of `step` and at least `step`. The memory-error gate (`scripts/valgrind.sh`) runs
/// the stress tests under valgrind, which is 20-50x slower and runs one thread at a time,
/// with a small scale; the tests keep their exact counts at any size.
pub fn scaled(n: usize, step: usize) -> usize {
    static SCALE: OnceLock<f64> = OnceLock::new();
    let scale = *SCALE.get_or_init(|| match std::env::var("FIBRA_TEST_SCALE") {
        Err(_) => 1.0,
        Ok(s) => match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => f,
            _ => panic!("FIBRA_TEST_SCALE={s:?}: expected a fraction in (0, 1]"),
        },
    });
    let n = (n as f64 * scale) as usize;
    (n - n % step).max(step)
}

/// The memory checker this process runs under, if any: valgrind (its preloaded helper is
/// mapped: valgrind sets `LD_PRELOAD` to `vgpreload_<tool>-<arch>.so`) or AddressSanitizer
/// (`cfg(fibra_asan)`, which `scripts/asan.sh` sets beside `-Zsanitizer=address`). Both map
/// memory of their own into the process as it runs.
pub fn memory_checker() -> Option<&'static str> {
    if cfg!(fibra_asan) {
        return Some("AddressSanitizer");
    }
    std::fs::read_to_string("/proc/self/maps")
        .is_ok_and(|m| m.contains("/vgpreload_"))
        .then_some("valgrind")
}

/// Prints `msg` where the test harness does not capture it (`eprintln!` from a test is
/// captured and shown only when the test fails).
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Aborts the process if the test it guards hangs (a scheduler bug shows as a hang). Dropping
/// it disarms it.
pub struct Watchdog(mpsc::Sender<()>);

/// A watchdog with the default limit of 60 s.
pub fn watchdog(test: &'static str) -> Watchdog {
    watchdog_for(test, Duration::from_secs(60))
}

/// A watchdog that aborts after `limit`.
pub fn watchdog_for(test: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to stderr: `eprintln!` from a test's threads is captured, and lost on abort.
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: `{test}` still running after {limit:?}; aborting"
            );
            std::process::abort();
        }
    });
    Watchdog(tx)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to at least `want` (raising the hard
/// limit too when privileged). Returns the new soft limit, or why it cannot reach `want`.
pub fn raise_nofile(want: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: `raised` is a valid rlimit. Needs CAP_SYS_RESOURCE; failure is handled below.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(want);
        }
    }
    let soft = lim.rlim_max.min(want);
    let raised = libc::rlimit {
        rlim_cur: soft,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    if soft < want {
        return Err(format!(
            "RLIMIT_NOFILE hard limit is {} (< {want}) and cannot be raised",
            lim.rlim_max
        ));
    }
    Ok(soft)
}

/// Open file descriptors of this process (entries of `/proc/self/fd`, minus the one that
/// lists them).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Spawns a fiber that accepts on `listener` until it fails, echoing each connection in a
/// fiber of its own until the peer closes it.
pub fn spawn_echo_server(listener: TcpListener) {
    fibra::spawn(move || {
        while let Ok((mut s, _)) = listener.accept() {
            fibra::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// The `i`-th message of echo client `c`.
fn echo_message(c: u32, i: u32) -> String {
    format!("client {c} message {i}")
}

/// From a fiber: `clients` fibers each connect to the echo server at `addr` and send `rounds`
/// messages, checking every echo. Returns the bytes echoed, which must equal
/// [`echo_bytes(clients, rounds)`](echo_bytes).
pub fn echo_clients(addr: SocketAddr, clients: u32, rounds: u32) -> usize {
    let clients: Vec<_> = (0..clients)
        .map(|c| {
            fibra::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut echoed = 0usize;
                for i in 0..rounds {
                    let msg = echo_message(c, i);
                    s.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0u8; msg.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                    echoed += back.len();
                }
                echoed
            })
        })
        .collect();
    clients.into_iter().map(|h| h.join().unwrap()).sum()
}

/// The bytes [`echo_clients`] sends (and must get back).
pub fn echo_bytes(clients: u32, rounds: u32) -> usize {
    (0..clients)
        .flat_map(|c| (0..rounds).map(move |i| echo_message(c, i).len()))
        .sum()
}

/// Two workers and nothing else that could move a fiber: no monitor, no spare workers.
pub fn two_workers_without_monitor() -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(2)
        .max_spare_workers(0)
        .monitor(false)
        .build()
        .unwrap()
}

/// The highest open fd number of this process.
pub fn max_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap()
}
