#!/usr/bin/env bash
# The memory-error gate: the stress, shutdown and channel tests under valgrind memcheck, zero
# errors. The tests are built with `--cfg fibra_valgrind`, which turns on the client requests
# in fibra/src/sys/valgrind.rs: fiber stacks registered, returned stacks unaddressable. A
# canary test (tests/stack_valgrind_canary.rs) reads a finished fiber's stack, and the gate
# fails unless memcheck reports it, so a build without the requests cannot pass silently.
#
# Installs valgrind from the distribution (apt-get; root or sudo) when it is missing. Builds in
# target/valgrind, so the ordinary build stays warm. Under valgrind code runs 20-50x slower on
# one thread at a time, so the stress tests run at FIBRA_TEST_SCALE (tests/common/mod.rs,
# default here 0.1; set VALGRIND_SCALE to change it), with their exact counts.
#
# Valgrind 3.19 (Debian 12) does not know pidfd_open and warns once per binary ("unhandled
# amd64-linux syscall: 434"); fibra then guards stack slots one `madvise` at a time instead of in
# `process_madvise` batches (stack/region.rs), which is a fallback it has anyway. A warning, not an
# error. No suppressions are needed: leaks count as errors only when definite, and the only
# other leak report, "possibly lost" 48 bytes, is std's mpmc thread-local context of the test
# harness's main thread.
#
# Reproduce one binary's report: the command is printed before each run (add
# --track-origins=yes to see where an undefined value came from).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if [ "$(uname -m)" != x86_64 ]; then
  # The client requests exist for x86_64 only (sys/valgrind.rs); elsewhere every switch
  # between fiber stacks would be reported.
  echo "valgrind: skipped: fiber stack registration is implemented for x86_64 only, not $(uname -m)"
  exit 0
fi

if ! command -v valgrind >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "valgrind: not installed and no apt-get here; install valgrind" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "valgrind: run as root (or install sudo)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "valgrind: installing the valgrind package"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends valgrind
fi
echo "valgrind: $(valgrind --version)"

# The binaries: stress, shutdown and channel tests, and the canary.
tests=(stress_spawn chan_stress sync_stress
       rt_shutdown rt_shutdown_leaks blocking_shutdown net_shutdown
       chan_api)
canary=stack_valgrind_canary

export CARGO_TARGET_DIR=target/valgrind
# `--cfg fibra_valgrind` only: the release profile (optimised, line tables) keeps valgrind's
# slowdown bearable and still names file:line in reports.
export RUSTFLAGS="--cfg fibra_valgrind"
logs=$CARGO_TARGET_DIR/logs
rm -rf "$logs"
mkdir -p "$logs"
args=()
for t in "${tests[@]}" "$canary"; do args+=(--test "$t"); done
echo "valgrind: building ${tests[*]} $canary (release, $RUSTFLAGS, in $CARGO_TARGET_DIR)"
build=(cargo test --release -p fibra --no-run "${args[@]}")
if ! "${build[@]}" --message-format=json >"$logs/build.json"; then
  "${build[@]}" # again, for readable errors
  exit 1
fi
# Each test binary's path, from cargo's artifact messages ("executable":".../deps/<name>-<hash>").
exe() {
  grep -o '"executable":"[^"]*/deps/'"$1"'-[0-9a-f]*"' "$logs/build.json" | head -n1 |
    sed 's/^"executable":"//; s/"$//'
}

vg=(valgrind --tool=memcheck --error-exitcode=99
    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --num-callers=40 --fair-sched=yes)
scale=${VALGRIND_SCALE:-0.1}
ulimit -c 0 # no vgcore files if a test aborts (its watchdog)

# Runs one binary under memcheck; $1 = name, rest = test-harness arguments. Sets `rc`.
run() {
  local name=$1 bin
  shift
  bin=$(exe "$name")
  [ -n "$bin" ] || { echo "valgrind: no binary for $name in cargo's output" >&2; exit 1; }
  echo "valgrind: FIBRA_TEST_SCALE=$scale ${vg[*]} --log-file=$logs/$name.vg $bin --test-threads=1 $*"
  rc=0
  FIBRA_TEST_SCALE=$scale "${vg[@]}" --log-file="$logs/$name.vg" "$bin" --test-threads=1 "$@" \
    >"$logs/$name.out" 2>&1 || rc=$?
}

failed=()
ran=0
summary=()
for t in "${tests[@]}"; do
  t0=$SECONDS
  run "$t"
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$logs/$t.vg" | tail -n1 || true)
  result=$(grep -o 'test result: [a-zA-Z]*\. [0-9]* passed; [0-9]* failed' "$logs/$t.out" | tail -n1 || true)
  line=$(printf '%-18s %-24s %-40s %4ss' "$t" "${errors:-no error summary}" "${result:-no test result}" "$((SECONDS - t0))")
  summary+=("$line")
  echo "valgrind: $line"
  passed=$(sed -n 's/.*test result: ok\. \([0-9]*\) passed.*/\1/p' <<<"$result")
  if [ "$rc" -ne 0 ] || [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
    failed+=("$t")
    echo "---- $t: exit code $rc (99: memcheck errors); test output:"
    grep -v '^fibra: worker [0-9]* stuck' "$logs/$t.out" | tail -n 60
    echo "---- $t: memcheck report ($logs/$t.vg):"
    grep -v '^==[0-9]*== *$' "$logs/$t.vg" | tail -n 200
  else
    ran=$((ran + passed))
  fi
done

# The canary must be caught, alone: one invalid read, of a finished fiber's stack. (Without the
# client requests memcheck misses it and reports thousands of stack switches instead.)
run "$canary" --ignored --exact reads_the_stack_of_a_finished_fiber
if [ "$rc" -eq 99 ] && grep -q 'ERROR SUMMARY: 1 errors from 1 contexts' "$logs/$canary.vg" &&
  grep -A2 'Invalid read of size 1' "$logs/$canary.vg" | grep -q 'stack_valgrind_canary.rs'; then
  echo "valgrind: canary caught: memcheck reported the read of a finished fiber's stack, and nothing else"
else
  failed+=("$canary")
  echo "---- $canary: exit code $rc; memcheck did not report exactly the read of a returned stack," \
    "so fiber stacks are not marked (is the build missing --cfg fibra_valgrind?)"
  grep 'ERROR SUMMARY' "$logs/$canary.vg" || true
  head -n 60 "$logs/$canary.vg"
fi

echo "valgrind: summary (memcheck errors, tests, seconds):"
printf '  %s\n' "${summary[@]}"
echo "valgrind: $ran tests in ${#tests[@]} binaries at FIBRA_TEST_SCALE=$scale, $((SECONDS - start))s in all"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "valgrind: FAILED: ${failed[*]}" >&2
  exit 1
fi
if [ "$ran" -eq 0 ]; then
  echo "valgrind: ran no test" >&2
  exit 1
fi
echo "valgrind: zero memcheck errors"
