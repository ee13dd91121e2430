//! What this machine is (the report header) and what this process uses (VmRSS).

use std::fs;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub kernel: String,
    pub mem_total_bytes: Option<u64>,
    pub vm_max_map_count: Option<u64>,
    pub kernel_pid_max: Option<u64>,
    pub kernel_threads_max: Option<u64>,
}

/// CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Machine {
    pub fn describe() -> Machine {
        Machine {
            cores: cores(),
            cpu_model: cpu_model(),
            kernel: kernel(),
            mem_total_bytes: proc_kb_field("/proc/meminfo", "MemTotal:").map(|kb| kb * 1024),
            vm_max_map_count: proc_number("/proc/sys/vm/max_map_count"),
            kernel_pid_max: proc_number("/proc/sys/kernel/pid_max"),
            kernel_threads_max: proc_number("/proc/sys/kernel/threads-max"),
        }
    }

    /// One line per fact, for the terminal header.
    pub fn header(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        let mut s = format!(
            "machine: {} cores{} · {}\n",
            self.cores,
            self.cpu_model
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            self.kernel
        );
        s += &format!(
            "         MemTotal {} · vm.max_map_count {} · kernel.pid_max {} · kernel.threads-max {}\n",
            self.mem_total_bytes.map_or("?".to_string(), |b| format!(
                "{:.1} GiB",
                b as f64 / (1u64 << 30) as f64
            )),
            opt(self.vm_max_map_count),
            opt(self.kernel_pid_max),
            opt(self.kernel_threads_max),
        );
        s
    }
}

fn kernel() -> String {
    Command::new("uname")
        .arg("-srm")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|r| format!("Linux {}", r.trim()))
        })
        .unwrap_or_else(|| "unknown kernel".to_string())
}

fn cpu_model() -> Option<String> {
    fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
}

fn proc_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A "Name:   1234 kB" field of a /proc file, in kB.
/// VmRSS of another process (the io experiment's server), in bytes.
pub fn rss_of(pid: u32) -> Result<u64, String> {
    proc_kb_field(&format!("/proc/{pid}/status"), "VmRSS:")
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("cannot read VmRSS of process {pid}"))
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children inherit it) and
/// returns the soft limit now in force.
pub fn raise_nofile() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit`; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

fn proc_kb_field(path: &str, name: &str) -> Option<u64> {
    kb_field(&fs::read_to_string(path).ok()?, name)
}

fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available_bytes() -> Option<u64> {
    proc_kb_field("/proc/meminfo", "MemAvailable:").map(|kb| kb * 1024)
}

/// This process's resident set size, in bytes (VmRSS from /proc/self/status).
pub fn vm_rss_bytes() -> Result<u64, String> {
    proc_kb_field("/proc/self/status", "VmRSS:")
        .map(|kb| kb * 1024)
        .ok_or_else(|| "cannot read VmRSS from /proc/self/status".to_string())
}

/// The first CPU this process may run on (for `taskset -c`).
pub fn first_allowed_cpu() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(|list| {
                    list.trim()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kb_fields() {
        let status = "Name:\tx\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(kb_field(status, "VmRSS:"), Some(2048));
        assert_eq!(kb_field(status, "VmHWM:"), None);
    }

    #[test]
    fn own_rss_is_positive() {
        assert!(vm_rss_bytes().unwrap() > 0);
    }
}
