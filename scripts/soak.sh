#!/usr/bin/env bash
# Soak: `scripts/soak.sh SECONDS` (not in CI). One process runs, for SECONDS, fibra's http_hello
# server under the lab's load generator with connection churn, plus spawn churn, channels
# (bounded, rendezvous, unbounded, select!), 1,000 sleepers and blocking excursions
# (`fibra-lab soak`, fibra-lab/src/soak/).
#
# Every 10 s it prints elapsed time, RSS, open fds, threads and live fibers, and each kind of
# operation's rate. fds and threads are also given as a floor, the least of the readings taken
# every 100 ms over the 10 s (or half the warm-up, if less) before the line: churning connections and the blocking pool make
# single readings jitter, a leak raises the floor. Growth compares floors.
#
# Warm-up: the first 20% of the run or 30 s, whichever is less (12 s of a 60 s run, 30 s of a
# 180 s one). Growth compares the last sample with the one at the warm-up's end.
#
# The last line: soak: seconds=N rss_growth_pct=X fd_growth=Y thread_growth=Z lost=L
#   lost  = requests sent - answered + channel items sent - received + fibers spawned -
#           (joined + detached ended) + sleeps begun - ended + blocking jobs submitted -
#           returned + fibers left after the drain beyond the root and the accept loop.
# It exits 1 (one `soak: FAIL` line per reason on stderr) if lost != 0; if a result was wrong
# (a joined value, a channel sum, a sleep that ended early, an HTTP error); if some kind of
# operation made no progress for a whole period; if the clean stop (load stopped, fibers
# joined, runtime shut down) took over 30 s or left fds or threads behind; or if growth passed
# a limit: rss_growth_pct > 10, fd_growth > 16, thread_growth > 4
# (fibra-lab/src/soak/mod.rs says why).
#
# RUST_BACKTRACE=1 makes the one panic that goes through the panic hook (at the start, then
# every 60 s) print a backtrace; that loads the binary's debug info once (~75 MiB resident),
# before the warm-up ends.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 1 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/soak.sh SECONDS" >&2
  exit 2
fi

cargo build --release -p fibra-lab --quiet
exec target/release/fibra-lab soak "$1"
