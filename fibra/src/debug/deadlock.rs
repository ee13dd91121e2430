//! Cycles in the waits-for graph of `fibra::sync::Mutex`: fiber → mutex it waits for →
//! fiber holding it → … back to the first.

use std::collections::HashMap;
use std::fmt;

use super::dump::FiberDump;

/// One link of a [`Deadlock`]: `fiber` waits for `mutex`, held by the next link's fiber.
///
/// ```
/// use fibra::debug::{Deadlock, WaitLink};
/// let cycle = Deadlock {
///     links: vec![
///         WaitLink { fiber: 3, mutex: 0x1000, held_by: 4 },
///         WaitLink { fiber: 4, mutex: 0x2000, held_by: 3 },
///     ],
/// };
/// assert_eq!(
///     cycle.to_string(),
///     "fiber 3 waits for Mutex@0x1000 held by fiber 4, \
///      which waits for Mutex@0x2000 held by fiber 3"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WaitLink {
    /// The waiting fiber.
    pub fiber: u64,
    /// The address of the mutex it waits for.
    pub mutex: usize,
    /// The fiber holding that mutex.
    pub held_by: u64,
}

/// Fibers each parked on a mutex held by the next, the last one's held by the first: none of
/// them can ever proceed.
///
/// A fiber that locks a mutex it already holds is a cycle of one:
///
/// ```
/// fibra::Runtime::builder().workers(1).build().unwrap().run(|| {
///     let h = fibra::spawn(|| {
///         let m = fibra::sync::Mutex::new(());
///         let _held = m.lock();
///         let _again = m.lock_timeout(std::time::Duration::from_secs(60)); // waits for itself
///     });
///     while h.fiber().park_reason() != fibra::ParkReason::MutexLock { fibra::yield_now(); }
///     let (id, cycles) = (h.fiber().id().as_u64(), fibra::debug::dump().deadlocks);
///     let link = &cycles[0].links[0];
///     assert_eq!((cycles.len(), link.fiber, link.held_by), (1, id, id));
///     assert!(cycles[0].to_string().starts_with(&format!("fiber {id} waits for Mutex@0x")));
/// }); // the session's end unwinds the stuck fiber: its `lock_timeout` gives up
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Deadlock {
    /// The cycle, starting at its smallest fiber id.
    pub links: Vec<WaitLink>,
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.links.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", which" };
            let who = if i == 0 {
                format!("fiber {}", l.fiber)
            } else {
                String::new()
            };
            write!(
                f,
                "{sep}{who} waits for Mutex@{:#x} held by fiber {}",
                l.mutex, l.held_by
            )?;
        }
        Ok(())
    }
}

/// Every waits-for cycle among `fibers` (each reported once).
pub(crate) fn find_cycles(fibers: &[FiberDump]) -> Vec<Deadlock> {
    let edges: HashMap<u64, (usize, u64)> = fibers
        .iter()
        .filter_map(|f| {
            let w = f.waits_for?;
            Some((f.id, (w.mutex, w.holder?)))
        })
        .collect();
    let mut found: Vec<Deadlock> = Vec::new();
    let mut starts: Vec<u64> = edges.keys().copied().collect();
    starts.sort_unstable();
    for start in starts {
        let mut path: Vec<u64> = vec![start];
        let mut at = start;
        while let Some(&(_, holder)) = edges.get(&at) {
            if let Some(pos) = path.iter().position(|&p| p == holder) {
                let cycle = &path[pos..];
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &id)| id)
                    .map(|(i, _)| i);
                let Some(min) = min else { break };
                let links: Vec<WaitLink> = (0..cycle.len())
                    .map(|k| {
                        let fiber = cycle[(min + k) % cycle.len()];
                        let (mutex, held_by) = edges[&fiber];
                        WaitLink {
                            fiber,
                            mutex,
                            held_by,
                        }
                    })
                    .collect();
                let d = Deadlock { links };
                if !found.contains(&d) {
                    found.push(d);
                }
                break;
            }
            path.push(holder);
            at = holder;
        }
    }
    found
}
