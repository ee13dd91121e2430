//! `Display` for [`Dump`]: Go's goroutine-dump layout, with fibers that share state, wait
//! reason, spawn location and backtrace folded into one entry with a count.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::dump::{Dump, FiberDump, FiberState};
use super::trace::Trace;

/// Ids listed in a group's header before "… (N more)".
const IDS_SHOWN: usize = 8;

/// The reason as text: `ParkReason` is not `Hash` (and may carry data).
type GroupKey<'a> = (FiberState, Option<String>, &'a str, &'a Trace);

fn key(f: &FiberDump) -> GroupKey<'_> {
    (
        f.state,
        f.reason.map(|r| format!("{r:?}")),
        f.spawned_at.as_str(),
        &f.backtrace,
    )
}

/// The dump's fibers in groups, each in id order, groups by their first id.
pub(crate) fn groups(dump: &Dump) -> Vec<Vec<&FiberDump>> {
    let mut index: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut groups: Vec<Vec<&FiberDump>> = Vec::new();
    for f in &dump.fibers {
        let i = *index.entry(key(f)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(f);
    }
    groups
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn state_label(f: &FiberDump, group: &[&FiberDump]) -> String {
    match f.state {
        FiberState::Running { worker } => format!("running on worker {worker}"),
        FiberState::Runnable => "runnable".into(),
        FiberState::Cancelling => "cancelling".into(),
        FiberState::Parked => {
            let reason = f.reason.map_or("?".into(), |r| format!("{r:?}"));
            let times = group.iter().filter_map(|g| g.parked_for);
            let (lo, hi) = times.fold((u128::MAX, 0), |(lo, hi), t| (lo.min(ms(t)), hi.max(ms(t))));
            let mut s = if lo == hi || lo == u128::MAX {
                format!("{reason}, {hi} ms")
            } else {
                format!("{reason}, {lo}-{hi} ms")
            };
            // A group shares a backtrace, not necessarily the object it waits on.
            let mut chans: Vec<usize> = group.iter().filter_map(|g| g.channel).collect();
            chans.sort_unstable();
            chans.dedup();
            match chans[..] {
                [] => {}
                [c] => s += &format!(", Chan@{c:#x}"),
                _ => s += &format!(", {} channels", chans.len()),
            }
            if let Some(w) = f.waits_for {
                s += &format!(", Mutex@{:#x}", w.mutex);
                if let Some(h) = w.holder {
                    s += &format!(" held by fiber {h}");
                }
            }
            s
        }
    }
}

fn homes(group: &[&FiberDump]) -> String {
    let mut hs: Vec<usize> = group.iter().filter_map(|f| f.home).collect();
    hs.sort_unstable();
    hs.dedup();
    match hs.as_slice() {
        [] => String::new(),
        [h] => format!(", worker {h}"),
        hs => format!(
            ", workers {}",
            hs.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fibra dump: {} live fibers in {} session(s) on {} workers; {} listed, {} not \
             listed (unnamed and never parked)",
            self.live,
            self.sessions,
            self.workers,
            self.fibers.len(),
            self.unlisted
        )?;
        for d in &self.deadlocks {
            writeln!(f, "\nDEADLOCK: {d}")?;
        }
        for group in groups(self) {
            let first = group[0];
            let label = state_label(first, &group);
            let homes = match first.state {
                FiberState::Running { .. } => String::new(), // the label names the worker
                _ => homes(&group),
            };
            writeln!(f)?;
            if group.len() == 1 {
                write!(f, "fiber {}", first.id)?;
                if let Some(name) = &first.name {
                    write!(f, " {name:?}")?;
                }
                writeln!(f, " [{label}{homes}]:")?;
            } else {
                let ids: Vec<String> = group
                    .iter()
                    .take(IDS_SHOWN)
                    .map(|g| g.id.to_string())
                    .collect();
                write!(
                    f,
                    "{} fibers [{label}{homes}]: {}",
                    group.len(),
                    ids.join(", ")
                )?;
                if group.len() > IDS_SHOWN {
                    write!(f, ", … ({} more)", group.len() - IDS_SHOWN)?;
                }
                writeln!(f, ":")?;
            }
            match &first.backtrace {
                Trace::Frames(frames) => {
                    for fr in frames {
                        writeln!(f, "    {}", fr.function)?;
                        if let Some(loc) = &fr.location {
                            writeln!(f, "        at {loc}")?;
                        }
                    }
                }
                Trace::Unavailable(why) => writeln!(f, "    (backtrace unavailable: {why})")?,
            }
            writeln!(f, "  spawned at {}", first.spawned_at)?;
        }
        Ok(())
    }
}
