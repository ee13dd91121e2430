//! Per-thread scheduling counters of another process (the io experiment's server), from
//! `/proc/PID/task/*/{status,stat,schedstat}`: how often each thread gave up its core
//! (voluntary: it blocked, in epoll_wait, a futex, a sleep) and how often it lost the core
//! while it could still run (involuntary: preempted, or a `sched_yield` that let another
//! thread in), how long it waited on a run queue, and the CPU time it used.
//!
//! Why: on a machine whose cores the server shares with its clients, how a runtime's workers
//! wait for work decides who holds a core when a request arrives (issue 21). A worker that
//! never blocks is preempted instead, wherever it is, fibers queued behind it included.

use std::collections::BTreeMap;
use std::fs;

/// One thread's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadSample {
    pub voluntary: u64,
    pub involuntary: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Time runnable but not running (waiting on a run queue), in ns (`schedstat`, field 2).
    pub runq_wait_ns: u64,
}

/// Every thread of a process, by thread id.
pub type Snapshot = BTreeMap<u32, ThreadSample>;

/// Context switches and run-queue wait over an interval, summed over the threads that did
/// the work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    pub voluntary: u64,
    pub involuntary: u64,
    pub runq_wait_ns: u64,
}

/// The counters of every thread of `pid` that can still be read (threads come and go).
pub fn snapshot(pid: u32) -> Result<Snapshot, String> {
    let dir = format!("/proc/{pid}/task");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut out = Snapshot::new();
    for entry in entries.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let read = |file: &str| fs::read_to_string(entry.path().join(file)).ok();
        // A thread that exited between the listing and the read is simply left out.
        if let (Some(status), Some(stat), Some(schedstat)) =
            (read("status"), read("stat"), read("schedstat"))
        {
            if let Some(sample) = parse(&status, &stat, &schedstat) {
                out.insert(tid, sample);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no readable thread under {dir}"));
    }
    Ok(out)
}

/// One thread's sample from the text of its `status`, `stat` and `schedstat` files.
fn parse(status: &str, stat: &str, schedstat: &str) -> Option<ThreadSample> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    // `stat` is "tid (comm) state ppid …": comm may hold spaces and parentheses, so the
    // fields are counted from the last ')'. utime and stime are fields 14 and 15 (proc(5)),
    // the 12th and 13th after the comm.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // "<ns on a cpu> <ns waiting on a run queue> <timeslices>"
    let runq_wait_ns = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some(ThreadSample {
        voluntary: field("voluntary_ctxt_switches:")?,
        involuntary: field("nonvoluntary_ctxt_switches:")?,
        cpu_ticks: utime + stime,
        runq_wait_ns,
    })
}

/// The switches between `before` and `after` of the `busiest` threads that used the most CPU
/// in between: a runtime's workers, not its helpers (a timer thread, a monitor, the main
/// thread waiting in `block_on`), whose wake-ups say nothing about serving requests.
/// Threads born in between count from zero.
pub fn busiest_delta(before: &Snapshot, after: &Snapshot, busiest: usize) -> Switches {
    let mut deltas: Vec<(u64, Switches)> = after
        .iter()
        .map(|(tid, a)| {
            let b = before.get(tid).copied().unwrap_or_default();
            let switches = Switches {
                voluntary: a.voluntary.saturating_sub(b.voluntary),
                involuntary: a.involuntary.saturating_sub(b.involuntary),
                runq_wait_ns: a.runq_wait_ns.saturating_sub(b.runq_wait_ns),
            };
            (a.cpu_ticks.saturating_sub(b.cpu_ticks), switches)
        })
        .collect();
    // Most CPU first; ties keep thread-id order (the sort is stable).
    deltas.sort_by_key(|d| std::cmp::Reverse(d.0));
    deltas
        .iter()
        .take(busiest)
        .fold(Switches::default(), |sum, (_, s)| Switches {
            voluntary: sum.voluntary + s.voluntary,
            involuntary: sum.involuntary + s.involuntary,
            runq_wait_ns: sum.runq_wait_ns + s.runq_wait_ns,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const STATUS: &str = "Name:\tworker\nState:\tR (running)\nvoluntary_ctxt_switches:\t14\n\
                          nonvoluntary_ctxt_switches:\t36600\n";

    #[test]
    fn parses_counters_and_cpu_time_past_an_awkward_comm() {
        // comm with a space and a ')' of its own; utime 700, stime 55.
        let stat = "4242 (fibra) w 1) R 1 1 1 0 -1 4194624 10 0 0 0 700 55 0 0 20 0 3 0";
        let s = parse(STATUS, stat, "123456 7890 12\n").expect("parsed");
        assert_eq!(
            s,
            ThreadSample {
                voluntary: 14,
                involuntary: 36600,
                cpu_ticks: 755,
                runq_wait_ns: 7890,
            }
        );
        assert_eq!(parse("Name:\tx\n", stat, "1 2 3"), None, "no counters");
        assert_eq!(
            parse(STATUS, "4242 (x) R 1", "1 2 3"),
            None,
            "truncated stat"
        );
        assert_eq!(parse(STATUS, stat, "1"), None, "truncated schedstat");
    }

    #[test]
    fn counts_only_the_busiest_threads() {
        let at = |v, i, cpu| ThreadSample {
            voluntary: v,
            involuntary: i,
            cpu_ticks: cpu,
            runq_wait_ns: 10 * i,
        };
        let before = Snapshot::from([(1, at(5, 0, 0)), (2, at(0, 0, 0)), (3, at(0, 0, 0))]);
        // Thread 1 (a timer) woke often and used no CPU; 2 and 3 served; 4 was born busy.
        let after = Snapshot::from([
            (1, at(5_005, 1, 0)),
            (2, at(10, 300, 90)),
            (3, at(20, 200, 80)),
            (4, at(7, 1, 100)),
        ]);
        assert_eq!(
            busiest_delta(&before, &after, 2),
            Switches {
                voluntary: 17,
                involuntary: 301,
                runq_wait_ns: 3_010,
            }
        );
        assert_eq!(busiest_delta(&before, &after, 10).voluntary, 5_037);
    }

    #[test]
    fn a_thread_that_blocks_shows_voluntary_switches() {
        let (ready, is_ready) = mpsc::channel();
        let (go, wait_go) = mpsc::channel::<()>();
        let (done, is_done) = mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            ready.send(()).expect("main waits");
            wait_go.recv().expect("main sends go");
            // Each sleep blocks in the kernel: at least one voluntary switch apiece.
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(1));
            }
            done.send(()).expect("main waits");
            // Stay alive, blocked, until main has taken its second snapshot.
            let _ = wait_go.recv();
        });
        is_ready.recv().expect("sleeper started");
        let before = snapshot(std::process::id()).expect("own threads readable");
        go.send(()).expect("sleeper waits");
        is_done.recv().expect("sleeper slept");
        let after = snapshot(std::process::id()).expect("own threads readable");
        drop(go);
        sleeper.join().expect("sleeper ran");
        let all = busiest_delta(&before, &after, after.len());
        assert!(all.voluntary >= 20, "{all:?}");
    }
}
