//! Cycles in the waits-for graph of `fibra::sync::Mutex`: fiber → mutex it waits for →
//! fiber holding it → … back to the first.

use std::collections::HashMap;
use std::fmt;

use super::dump::FiberDump;

/// One link of a [`Deadlock`]: `fiber` waits for `mutex`, held by the next link's fiber.
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
