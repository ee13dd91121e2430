# Sourced by the debugger gates (scripts/gdb.sh, scripts/lldb.sh), after they define `fail`
# and set `$tool` (their name in messages): builds and starts the gdb_target example (fibers
# parked sleeping, on a channel, in fibra::park), waits for its ready line, and sets `exe`,
# `work` (a temp dir), `pid`, and the ids `sleeper`, `reader`, `anon`. An EXIT trap kills the
# example and removes `work`.

cargo build -q -p fibra --example gdb_target
exe=target/debug/examples/gdb_target
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# mprotect guard pages: gdb's gcore stops copying a mapping at the first page it cannot read,
# and MADV_GUARD_INSTALL guards are such pages (docs/DEBUGGING.md, "Core dumps").
FIBRA_FORCE_MPROTECT_GUARDS=1 "$exe" 120 >"$work/out" &
pid=$!
for _ in $(seq 300); do
  grep -q '^ready' "$work/out" && break
  kill -0 "$pid" 2>/dev/null || fail "gdb_target exited before it was ready"
  sleep 0.1
done
ready=$(grep '^ready' "$work/out") || fail "gdb_target was not ready within 30 s"
id() { sed -E "s/.* $1=([0-9]+).*/\1/" <<<"$ready"; }
sleeper=$(id sleeper) reader=$(id reader) anon=$(id anon)
echo "$tool: $ready (pid $pid)"
