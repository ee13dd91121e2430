#!/usr/bin/env bash
# Installs the debugging tools the gates use, from the distribution's packages: `gdb` (the
# gdb extension's gate, scripts/gdb.sh), `lldb` (the lldb extension's gate, scripts/lldb.sh;
# Debian's `lldb` pulls in lldb-14 and its Python module, python3-lldb-14) and `perf` (the
# profiler gate, scripts/perf.sh; Debian's package is linux-perf).
# Usage: install-tools.sh [gdb] [lldb] [perf] (default: all three).
# Skips what is already on PATH. Debian/Ubuntu (apt-get); run as root or with sudo available.
# Exits non-zero, saying why, when a tool is missing and cannot be installed.
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(gdb lldb perf)
need=()
for tool in "${want[@]}"; do
  case "$tool" in
    gdb) command -v gdb >/dev/null 2>&1 || need+=(gdb) ;;
    lldb) command -v lldb >/dev/null 2>&1 || need+=(lldb) ;;
    perf) command -v perf >/dev/null 2>&1 || need+=(linux-perf) ;;
    *) echo "install-tools: unknown tool $tool (gdb, lldb, perf)" >&2; exit 2 ;;
  esac
done

if [ ${#need[@]} -eq 0 ]; then
  echo "install-tools: ${want[*]} already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: no apt-get here; install these yourself: ${need[*]}" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-tools: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-tools: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
