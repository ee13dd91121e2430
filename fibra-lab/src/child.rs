//! The child-process protocol, both ends.
//!
//! Parent: [`launch`] runs `<program> child <experiment> <contender> <n> --workers <w>
//! [--case <c>]`, kills it after a timeout, and turns a crash, a non-zero exit or a timeout into
//! a one-line reason. `<program>` is this binary re-executed, or the Go peer's program, which
//! speaks the same protocol. Child: [`main`] runs one measurement and prints ONE JSON line
//! `{"figures":{...}}` on stdout, or a reason on stderr and exits 1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::experiments::{spawn, Experiment, Params};
use crate::machine;
use crate::peers::{self, Contender};

/// How the child's panic hook starts its one line.
const PANIC_MARK: &str = "panicked: ";

/// Named figures of one measurement (e.g. `"ns_per_round_trip" -> 98.4`).
pub type Figures = BTreeMap<String, f64>;

#[derive(Serialize, Deserialize)]
struct ChildOutput {
    figures: Figures,
}

/// Child side: run one measurement in this process and report it on stdout.
pub fn main(
    experiment: Experiment,
    contender: Contender,
    n: u64,
    workers: usize,
    case: Option<&str>,
) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // One line, so the parent can quote it as the failure reason.
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string payload)".to_string());
        let at = info.location().map_or(String::new(), |l| {
            let file = l.file().rsplit('/').next().unwrap_or(l.file());
            format!(" [at {file}:{}]", l.line())
        });
        let spawned = spawn::units_spawned();
        let context = if spawned > 0 {
            format!(" (after {spawned} units were spawned)")
        } else {
            String::new()
        };
        eprintln!("{PANIC_MARK}{}{at}{context}", msg.replace('\n', " "));
    }));
    match peers::measure(experiment, contender, n, workers, case) {
        Ok(figures) => match serde_json::to_string(&ChildOutput { figures }) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("could not encode figures: {e}");
                ExitCode::FAILURE
            }
        },
        Err(reason) => {
            eprintln!("{}", reason.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// What a server child (the io experiment) prints first: where it listens.
#[derive(Serialize, Deserialize)]
struct Listening {
    listening: SocketAddr,
}

/// Child side of a server: announce the bound address on stdout, at once.
pub fn announce(addr: std::io::Result<SocketAddr>) -> Result<(), String> {
    let addr = addr.map_err(|e| format!("no local address: {e}"))?;
    let line = serde_json::to_string(&Listening { listening: addr })
        .map_err(|e| format!("could not encode the address: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("could not announce the address: {e}"))
}

/// A server child process (the io experiment), killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Option<thread::JoinHandle<String>>,
}

/// How long a server child may take to announce its address.
const SERVER_START: Duration = Duration::from_secs(15);

impl Server {
    /// Starts `program` (or this binary) as a server, with `envs` added to its environment,
    /// and waits for its address.
    pub fn start(
        program: Option<&Path>,
        experiment: Experiment,
        contender: Contender,
        params: &Params,
        envs: &[(&str, &str)],
    ) -> Result<Server, String> {
        let mut child = command(program, experiment, contender, params)?
            .envs(envs.iter().copied())
            .spawn()
            .map_err(|e| format!("could not start the server process: {e}"))?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        // Reads the announcement, then keeps draining so the server never blocks on stdout.
        thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(l) = serde_json::from_str::<Listening>(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(l.listening);
                    }
                }
            }
        });
        let mut server = Server {
            stderr: Some(drain(child.stderr.take())),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match rx.recv_timeout(SERVER_START) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            // Closed stdout without an address: the server is exiting; give it a moment so
            // its own reason is the one reported.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let until = Instant::now() + Duration::from_secs(2);
                loop {
                    if let Some(reason) = server.died() {
                        break Err(reason);
                    }
                    if Instant::now() >= until {
                        break Err("the server closed its stdout without an address".into());
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the server announced no address within {} s",
                SERVER_START.as_secs()
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Why the server is gone, if it is: its exit status and last stderr line.
    pub fn died(&mut self) -> Option<String> {
        let status = match self.child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => status,
            Err(e) => return Some(format!("could not wait for the server: {e}")),
        };
        let stderr = self.stderr.take().and_then(|h| h.join().ok());
        let last_err = stderr.as_deref().and_then(last_line);
        Some(format!(
            "the server exited: {}",
            failure_reason(status, last_err)
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parent side: run one measurement in a fresh child process: `program`, or this binary if
/// `None`, with `envs` added to its environment.
pub fn launch(
    program: Option<&Path>,
    experiment: Experiment,
    contender: Contender,
    params: &Params,
    timeout: Duration,
    envs: &[(&str, &str)],
) -> Result<Figures, String> {
    let mut cmd = command(program, experiment, contender, params)?;
    cmd.envs(envs.iter().copied());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start child process: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("could not wait for child process: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let last_err = last_line(&stderr);
    let with_detail = |head: String| match &last_err {
        Some(line) => format!("{head}: {line}"),
        None => head,
    };

    if timed_out {
        return Err(with_detail(format!(
            "timed out after {} s (killed)",
            timeout.as_secs()
        )));
    }
    match status {
        Some(status) if status.success() => {
            parse(&stdout).ok_or_else(|| with_detail("child printed no figures".to_string()))
        }
        Some(status) => Err(failure_reason(status, last_err)),
        None => Err(with_detail("child vanished".to_string())),
    }
}

/// `<program> child <experiment> <contender> <n> --workers <w> [--case <c>]`, pinned if asked,
/// with stdout and stderr piped.
fn command(
    program: Option<&Path>,
    experiment: Experiment,
    contender: Contender,
    params: &Params,
) -> Result<Command, String> {
    let exe = match program {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?,
    };
    let mut cmd = if params.pin_one_cpu {
        let mut c = Command::new("taskset");
        c.arg("-c")
            .arg(machine::first_allowed_cpu().to_string())
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("child")
        .arg(experiment.name())
        .arg(contender.name())
        .arg(params.n.to_string())
        .arg("--workers")
        .arg(params.workers.to_string());
    if let Some(case) = &params.case {
        cmd.arg("--case").arg(case);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn parse(stdout: &str) -> Option<Figures> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<ChildOutput>(l).ok())
        .map(|out| out.figures)
}

/// The line of stderr worth quoting: the last panic line of the child's hook if there is one
/// (an abort after a panic ends with a less telling "fatal runtime error"), else the last line
/// that is not the "note: run with RUST_BACKTRACE" hint.
fn last_line(stderr: &str) -> Option<String> {
    let lines = || stderr.lines().rev().map(str::trim);
    lines()
        .find(|l| l.starts_with(PANIC_MARK))
        .or_else(|| {
            lines().find(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        })
        .map(|l| truncate(l, 300))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn failure_reason(status: ExitStatus, last_err: Option<String>) -> String {
    let head = match (status.signal(), status.code()) {
        (Some(sig), _) => format!("killed by signal {sig}{}", signal_name(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => format!("ended abnormally ({status})"),
    };
    match last_err {
        Some(line) => format!("{head}: {line}"),
        None => head,
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_json_line() {
        let out = "noise\n{\"figures\":{\"a\":1.5}}\n";
        assert_eq!(parse(out).unwrap()["a"], 1.5);
        assert!(parse("no json here").is_none());
    }

    #[test]
    fn skips_the_backtrace_hint() {
        let err = "panicked: boom\nnote: run with `RUST_BACKTRACE=1` environment variable\n";
        assert_eq!(last_line(err).as_deref(), Some("panicked: boom"));
    }

    #[test]
    fn prefers_the_panic_line_over_the_abort_line() {
        let err =
            "panicked: no memory [at x.rs:1]\nfatal runtime error: failed to initiate panic\n";
        assert_eq!(
            last_line(err).as_deref(),
            Some("panicked: no memory [at x.rs:1]")
        );
    }
}
