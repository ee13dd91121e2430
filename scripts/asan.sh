#!/usr/bin/env bash
# The AddressSanitizer gate, an extra beside scripts/valgrind.sh: the stress, shutdown and
# channel tests built with `cargo +nightly` and `-Zsanitizer=address`, with corosensei's
# `sanitizer` feature (it announces every stack switch to ASan, so fiber stacks are not taken
# for a stack overflow) and `--cfg fibra_asan` (tests/common/mod.rs: memory accounting
# steps aside). LeakSanitizer runs too (on by default with ASan on Linux).
#
# Skips, with the reason, where no nightly toolchain is installed. The standard library is
# the nightly's prebuilt one (not instrumented): `-Zbuild-std` would instrument it too but needs
# the rust-src component, and the tests need nothing from it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "asan: skipped: no nightly toolchain"
  exit 0
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
case $host in
  x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
  *)
    echo "asan: skipped: -Zsanitizer=address is not supported on $host"
    exit 0
    ;;
esac
echo "asan: $(cargo +nightly --version), target $host"

tests=(stress_spawn chan_stress sync_stress
       rt_shutdown rt_shutdown_leaks blocking_shutdown net_shutdown
       chan_api)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done

export CARGO_TARGET_DIR=target/asan
# `--target` keeps the flags off build scripts (host artifacts); debug builds keep
# debug assertions, which check fibra's invariants as the tests go.
export RUSTFLAGS="-Zsanitizer=address --cfg fibra_asan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
logs=$CARGO_TARGET_DIR/logs
rm -rf "$logs"
mkdir -p "$logs"
build=(cargo +nightly test -p fibra --target "$host" --features corosensei/sanitizer "${args[@]}")
echo "asan: RUSTFLAGS=\"$RUSTFLAGS\" ASAN_OPTIONS=$ASAN_OPTIONS ${build[*]}"
if ! "${build[@]}" --no-run --message-format=json >"$logs/build.json"; then
  "${build[@]}" --no-run # again, for readable errors
  exit 1
fi
exe() {
  grep -o '"executable":"[^"]*/deps/'"$1"'-[0-9a-f]*"' "$logs/build.json" | head -n1 |
    sed 's/^"executable":"//; s/"$//'
}

failed=()
ran=0
summary=()
for t in "${tests[@]}"; do
  t0=$SECONDS
  bin=$(exe "$t")
  [ -n "$bin" ] || { echo "asan: no binary for $t in cargo's output" >&2; exit 1; }
  # Instrumented, with corosensei's switch hooks: otherwise a clean run proves nothing.
  if ! grep -aq __sanitizer_start_switch_fiber "$bin" || ! grep -aq __asan_report_load "$bin"; then
    echo "asan: $bin lacks ASan or corosensei's sanitizer hooks" >&2
    exit 1
  fi
  rc=0
  "$bin" >"$logs/$t.out" 2>&1 || rc=$?
  result=$(grep -o 'test result: [a-zA-Z]*\. [0-9]* passed; [0-9]* failed' "$logs/$t.out" | tail -n1 || true)
  line=$(printf '%-18s exit %-3s %-40s %4ss' "$t" "$rc" "${result:-no test result}" "$((SECONDS - t0))")
  summary+=("$line")
  echo "asan: $line"
  passed=$(sed -n 's/.*test result: ok\. \([0-9]*\) passed.*/\1/p' <<<"$result")
  if [ "$rc" -ne 0 ] || [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
    failed+=("$t")
    echo "---- $t: exit code $rc; output ($logs/$t.out):"
    grep -v '^fibra: worker [0-9]* stuck' "$logs/$t.out" | tail -n 200
  else
    ran=$((ran + passed))
  fi
done

echo "asan: summary (exit code, tests, seconds):"
printf '  %s\n' "${summary[@]}"
echo "asan: $ran tests in ${#tests[@]} binaries, $((SECONDS - start))s in all"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "asan: FAILED: ${failed[*]}" >&2
  exit 1
fi
if [ "$ran" -eq 0 ]; then
  echo "asan: ran no test" >&2
  exit 1
fi
echo "asan: no AddressSanitizer or LeakSanitizer reports"
