#!/usr/bin/env bash
# The lldb extension's gate (fibra/lldb/fibra_lldb.py, docs/DEBUGGING.md): runs the gdb_target
# example (fibers parked sleeping, on a channel, in fibra::park), checks `fibers` and
# `fiber N bt` on the live process, writes a core dump with gdb's `gcore` (lldb 14 cannot
# write one for a Linux process), kills the process, and checks both commands on the core.
# First, the unit tests of the extension's CFI unwinder (fibra/lldb/test_fibra_cfi.py).
# Skips, with the reason, where lldb (with its Python) or gdb cannot be installed, or lldb may
# not attach (ptrace).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "lldb: skipped: $*"; exit 0; }
fail() { echo "lldb: FAILED: $*" >&2; exit 1; }

# The CFI unwinder's unit tests need Python 3 only (no lldb, no process).
command -v python3 >/dev/null 2>&1 || skip "no python3 (the extension is a Python script)"
units=$(PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s fibra/lldb -p 'test_*.py' 2>&1) \
  || { echo "$units" >&2; fail "the CFI unwinder's unit tests (fibra/lldb/test_fibra_cfi.py)"; }
echo "lldb: the CFI unwinder's unit tests: $(grep -E '^Ran [0-9]+ tests' <<<"$units"), OK"

[ "$(uname -m)" = x86_64 ] || skip "the extension reads x86-64 saved registers only, not $(uname -m)"
scripts/install-tools.sh lldb gdb || skip "lldb or gdb is not installed and could not be installed"

# Debian 12's lldb 14 looks for its Python module where the package does not put it (`lldb -P`
# names /usr/lib/local/...); point it at the packaged copy (docs/DEBUGGING.md, "lldb").
python_ok() { lldb -b --no-lldbinit -o 'script print("fibra-python-" + "ok")' 2>&1 | grep -q fibra-python-ok; }
if ! python_ok; then
  major=$(lldb --version 2>/dev/null | sed -nE 's/^lldb version ([0-9]+).*/\1/p')
  for d in /usr/lib/llvm-"$major"/lib/python3*/dist-packages; do
    [ -f "$d/lldb/__init__.py" ] && export PYTHONPATH="$d${PYTHONPATH:+:$PYTHONPATH}"
  done
  python_ok || skip "lldb has no working Python (the extension is a Python script)"
fi

tool=lldb
source scripts/debug-target.sh
script=fibra/lldb/fibra_lldb.py

# -b stops at the first command that fails: a failing command goes last.
lldb_run() { timeout 120 lldb -b --no-lldbinit -o "command script import $script" "$@" 2>&1; }
expect() { # expect NAME TEXT REGEX: REGEX matches a line of TEXT
  grep -Eq "$3" <<<"$2" || { echo "$2" >&2; fail "$1: no line matches /$3/"; }
}

# The live process.
live=$(lldb_run -p "$pid" -o 'fibers' -o "fiber $reader bt" -o 'fiber list' -o 'fiber x bt') || true
if grep -qi 'attach failed\|Operation not permitted' <<<"$live"; then
  skip "lldb may not attach to a process here (ptrace): $(grep -i 'attach failed\|not permitted' <<<"$live" | head -1)"
fi
expect "live fibers" "$live" "^$reader +reader +parked +ChanRecv +worker [0-9]"
expect "live fiber bt" "$live" "in gdb_target::reader_waits at .*fibra/examples/gdb_target.rs:[0-9]+"
expect "live fiber bt" "$live" "in fibra::chan::receiver::Receiver<T>::recv at "
expect "live fiber bt" "$live" "in fibra::fiber::join::fiber_root at"
expect "live fiber bt" "$live" "^#0 +0x[0-9a-f]+ in corosensei::"
[ "$(grep -c '^4 fiber(s)' <<<"$live")" -eq 2 ] || { echo "$live" >&2; fail "fiber list is not fibers"; }
expect "live bad usage" "$live" "error: usage: fibers \| fiber list \| fiber N \[bt\]"

gdb -batch -nx -p "$pid" -ex "gcore $work/core" >"$work/gcore.log" 2>&1 || { cat "$work/gcore.log"; fail "gcore"; }
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

# The core dump: no process, memory and registers only.
core=$(lldb_run "$exe" -c "$work/core" -o 'fibers' -o "fiber $sleeper bt" -o "fiber bt $anon" \
  -o "fiber $reader" -o 'fiber 999999 bt') || true # the last command fails on purpose
expect "core fibers" "$core" "^1 +main +parked +Sleep +worker [0-9]"
expect "core fibers" "$core" "^$sleeper +sleeper +parked +Sleep +worker [0-9]"
expect "core fibers" "$core" "^$reader +reader +parked +ChanRecv +worker [0-9]"
expect "core fibers" "$core" "^$anon +- +parked +User +worker [0-9]"
expect "core fibers" "$core" "^4 fiber\(s\)"
expect "core fiber bt" "$core" "^fiber $sleeper \"sleeper\": parked \(Sleep\), home worker [0-9]"
expect "core fiber bt" "$core" "in fibra::time::sleep at .*time/mod.rs:[0-9]+"
expect "core fiber bt" "$core" "in gdb_target::sleeper_waits at .*fibra/examples/gdb_target.rs:[0-9]+"
expect "core fiber bt" "$core" "^fiber $anon \(unnamed\): parked \(User\), home worker [0-9]"
expect "core fiber bt" "$core" "in gdb_target::anon_parks at .*fibra/examples/gdb_target.rs:[0-9]+"
expect "core fiber" "$core" "^fiber $reader \"reader\": parked \(ChanRecv\), home worker [0-9]"
expect "core bad id" "$core" "no registered fiber 999999"
grep -q 'backtrace incomplete' <<<"$core" && { echo "$core" >&2; fail "a backtrace stopped early"; }
# Each backtrace ends at the fiber's entry: the line after a fiber_root frame is the next
# command's echo, never another frame.
ends=$(grep -A1 'in fibra::fiber::join::fiber_root at' <<<"$core" | grep -c '^#' || true)
roots=$(grep -c 'in fibra::fiber::join::fiber_root at' <<<"$core" || true)
[ "$roots" -eq 2 ] && [ "$ends" -eq 2 ] || { echo "$core" >&2; fail "backtraces do not end at fiber_root ($roots roots)"; }
echo "lldb: live and core-dump checks passed ($(grep -c '^#' <<<"$core") frames in 2 backtraces)"
