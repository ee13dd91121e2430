#!/usr/bin/env bash
# Installs the lab's optional peers from the distribution's packages: Go (the `go` contender)
# and wrk (HTTP load for the `io` experiment). Skips what is already on PATH. Debian/Ubuntu
# (apt-get); run as root or with sudo available.
set -euo pipefail

need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v wrk >/dev/null 2>&1 || need+=(wrk)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-peers: go and wrk are already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: no apt-get here; install these yourself: ${need[*]}" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-peers: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-peers: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
command -v go >/dev/null 2>&1 && go version
command -v wrk >/dev/null 2>&1 && echo "wrk: $(command -v wrk)"
