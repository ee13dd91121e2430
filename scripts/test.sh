#!/usr/bin/env bash
# The project's test command (README): every gate prints what it ran; any failure stops here.
set -euo pipefail
cd "$(dirname "$0")/.."

gate() { printf '\n==> %s\n' "$*"; }

gate "unit, integration and doc tests (debug)"
cargo test --workspace

gate "libc hooks (feature hooks): std sockets, sleeps and epoll on fibers; unchanged redis, postgres, ureq clients against real servers"
scripts/install-servers.sh
cargo test -p fibra --features hooks --test 'hooks_*'

gate "async adapters and bridges (features futures-io, tokio-io, hyper, tokio-compat): tests and doctests"
cargo test -p fibra --features futures-io,tokio-io,hyper,tokio-compat --test 'async_*'
cargo test -p fibra --features futures-io,tokio-io,hyper,tokio-compat --doc compat

gate "stress tests at full size (release)"
cargo test --release -p fibra --tests

gate "loom models: state word, run queue, idle/wake protocol"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test --release -p fibra --lib loom -- --nocapture 2>&1 | tee target/loom-run.log
grep -Eq 'test result: ok\. [1-9][0-9]* passed' target/loom-run.log || { echo "loom gate ran no test"; exit 1; }

gate "memory errors: valgrind memcheck over the stress, shutdown and channel tests (scripts/valgrind.sh)"
scripts/valgrind.sh

gate "memory errors: AddressSanitizer over the same tests (scripts/asan.sh; skipped without nightly)"
scripts/asan.sh

gate "debuggers: the gdb extension on a live process and a core dump (scripts/gdb.sh; skipped without gdb or ptrace)"
scripts/gdb.sh

gate "debuggers: the lldb extension on a live process and a core dump (scripts/lldb.sh; skipped without lldb's Python or ptrace)"
scripts/lldb.sh

gate "profilers: perf record -g and --call-graph dwarf end fiber stacks at the fiber's entry (scripts/perf.sh; skipped without perf or permission)"
scripts/perf.sh

gate "all gates passed"
