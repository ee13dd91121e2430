#!/usr/bin/env bash
# The gdb extension's gate (fibra/gdb/fibra_gdb.py, docs/DEBUGGING.md): runs the gdb_target
# example (fibers parked sleeping, on a channel, in fibra::park), checks `info fibers` and
# `fiber N bt` on the live process, writes a core dump with gdb's `gcore` (not the system's
# core_pattern), kills the process, and checks both commands on the core dump.
# Skips, with the reason, where gdb cannot be installed or may not attach (ptrace).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "gdb: skipped: $*"; exit 0; }
fail() { echo "gdb: FAILED: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || skip "the extension reads x86-64 saved registers only, not $(uname -m)"
scripts/install-tools.sh gdb || skip "gdb is not installed and could not be installed"

tool=gdb
source scripts/debug-target.sh
script=fibra/gdb/fibra_gdb.py

gdb_run() { timeout 120 gdb -batch -nx -ex "source $script" "$@" 2>&1; }

# The live process.
live=$(gdb_run -p "$pid" -ex 'info fibers' -ex "fiber $reader bt") || true
if grep -qi 'ptrace: Operation not permitted\|could not attach' <<<"$live"; then
  skip "gdb may not attach to a process here (ptrace): $(grep -i ptrace <<<"$live" | head -1)"
fi
expect() { # expect NAME TEXT REGEX: REGEX matches a line of TEXT
  grep -Eq "$3" <<<"$2" || { echo "$2" >&2; fail "$1: no line matches /$3/"; }
}
expect "live info fibers" "$live" "^$reader +reader +parked +ChanRecv +worker [0-9]"
expect "live fiber bt" "$live" "in gdb_target::reader_waits at fibra/examples/gdb_target.rs"
expect "live fiber bt" "$live" "in fibra::fiber::join::fiber_root at"

gdb -batch -nx -p "$pid" -ex "gcore $work/core" >"$work/gcore.log" 2>&1 || { cat "$work/gcore.log"; fail "gcore"; }
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

# The core dump: no process, memory and registers only.
core=$(gdb_run "$exe" "$work/core" -ex 'info fibers' -ex "fiber $sleeper bt" -ex "fiber $anon bt" \
  -ex "fiber 999999 bt") || true # the last command fails on purpose
expect "core info fibers" "$core" "^1 +main +parked +Sleep +worker [0-9]"
expect "core info fibers" "$core" "^$sleeper +sleeper +parked +Sleep +worker [0-9]"
expect "core info fibers" "$core" "^$reader +reader +parked +ChanRecv +worker [0-9]"
expect "core info fibers" "$core" "^$anon +- +parked +User +worker [0-9]"
expect "core info fibers" "$core" "^4 fiber\(s\)"
expect "core fiber bt" "$core" "^fiber $sleeper \"sleeper\": parked \(Sleep\), home worker [0-9]"
expect "core fiber bt" "$core" "in fibra::time::sleep at"
expect "core fiber bt" "$core" "in gdb_target::sleeper_waits at fibra/examples/gdb_target.rs"
expect "core fiber bt" "$core" "in gdb_target::anon_parks at fibra/examples/gdb_target.rs"
expect "core bad id" "$core" "no registered fiber 999999"
# Each backtrace ends at the fiber's entry: the line after a fiber_root frame is the next
# command's header (or the error), never another frame.
ends=$(grep -A1 'in fibra::fiber::join::fiber_root at' <<<"$core" | grep -c '^#' || true)
roots=$(grep -c 'in fibra::fiber::join::fiber_root at' <<<"$core" || true)
[ "$roots" -eq 2 ] && [ "$ends" -eq 2 ] || { echo "$core" >&2; fail "backtraces do not end at fiber_root ($roots roots)"; }
echo "gdb: live and core-dump checks passed ($(grep -c '^#' <<<"$core") frames in 2 backtraces)"
