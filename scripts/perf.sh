#!/usr/bin/env bash
# The profiler gate (docs/DEBUGGING.md, "Profilers"): `perf record` over the perf_target
# example (4 fibers spinning on 2 workers) shows fiber stacks that end cleanly at the
# fiber's entry:
#   -g (frame pointers): the spinning function, then corosensei's fiber entry (its frame
#     record at the stack's base), then the worker thread's frames down to start_thread;
#   --call-graph dwarf: the whole fiber stack, through fibra's fiber_root, ending at
#     corosensei's stack_init_trampoline.
# Skips, with the reason, where perf cannot be installed or may not sample (perf_event_paranoid).
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "perf: skipped: $*"; exit 0; }
fail() { echo "perf: FAILED: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || skip "checked on x86-64 only, not $(uname -m)"
scripts/install-tools.sh perf || skip "perf is not installed and could not be installed"
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 3)
[ "$paranoid" -le 2 ] || [ "$(id -u)" -eq 0 ] || skip "kernel.perf_event_paranoid is $paranoid (> 2)"

cargo build -q -p fibra --example perf_target
exe=$PWD/target/debug/examples/perf_target
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# check MODE: of the samples in fiber_spins, how many end as MODE expects ("ok total").
check() {
  perf script -i "$work/$1.data" -F comm,ip,sym 2>/dev/null | awk -v mode="$1" '
    BEGIN { RS = ""; FS = "\n" }
    {
      spin = 0
      for (i = 2; i <= NF; i++) if ($i ~ /perf_target::fiber_spins/) spin = i
      if (!spin) next
      total++
      ok = 1
      for (i = spin + 1; i <= NF; i++) if ($i ~ /\[unknown\]/) ok = 0
      if (mode == "fp") {
        if ($(spin + 1) !~ /coroutine_func/ || $NF !~ /start_thread|clone/) ok = 0
      } else {
        root = 0
        for (i = spin + 1; i <= NF; i++) if ($i ~ /fibra::fiber::join::fiber_root$/) root = 1
        if (!root || $NF !~ /stack_init_trampoline/) ok = 0
      }
      good += ok
      if (!ok && !shown++) { print "perf: a sample that does not end cleanly:" > "/dev/stderr"; print > "/dev/stderr" }
    }
    END { print good + 0, total + 0 }'
}

for mode in fp dwarf; do
  case $mode in fp) graph=(-g) ;; dwarf) graph=(--call-graph dwarf) ;; esac
  if ! perf record -q "${graph[@]}" -o "$work/$mode.data" -- "$exe" 600 >"$work/$mode.log" 2>&1; then
    grep -qi 'permission\|paranoid\|not supported\|No such device' "$work/$mode.log" &&
      skip "perf record may not sample here: $(head -3 "$work/$mode.log" | tr '\n' ' ')"
    cat "$work/$mode.log"; fail "perf record ($mode)"
  fi
  read -r good total < <(check $mode)
  echo "perf: ${graph[*]}: $good of $total samples in fiber_spins end at the fiber's entry"
  [ "$total" -ge 20 ] || fail "$mode: only $total samples in fiber_spins"
  # dwarf copies 8 KiB of stack per sample: allow a few cut stacks; frame pointers: none.
  if [ $mode = fp ]; then [ "$good" -eq "$total" ] || fail "fp: $((total - good)) stacks end elsewhere"
  else [ $((good * 10)) -ge $((total * 9)) ] || fail "dwarf: $((total - good)) of $total stacks end elsewhere"; fi
done
