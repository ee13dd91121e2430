#!/usr/bin/env bash
# Installs the servers the hooks gate's real-server tests run against (fibra/tests/hooks_redis.rs,
# hooks_postgres.rs) from Debian's packages when they are missing: `redis-server` and PostgreSQL
# (`postgresql`, whose binaries Debian keeps off PATH in /usr/lib/postgresql/<major>/bin).
# Never fails the run: a server it cannot install makes those tests print why and skip.
set -uo pipefail

have_pg() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
have_pg || need+=(postgresql)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-servers: redis-server and PostgreSQL are already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-servers: no apt-get here; the tests that need ${need[*]} will skip"
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "install-servers: not root and no password-less sudo; the tests that need ${need[*]} will skip"
    exit 0
  fi
fi
echo "install-servers: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# The package scripts may try to start the system services (and fail in a container without
# an init system); the tests start their own instances on free ports, so that is harmless.
"${sudo[@]}" apt-get install -y -qq "${need[@]}" \
  || { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${need[@]}"; } \
  || echo "install-servers: apt-get could not install ${need[*]}; the tests that need them will skip"
command -v redis-server >/dev/null 2>&1 && echo "redis-server: $(command -v redis-server)"
have_pg && echo "PostgreSQL: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | tail -1)"
exit 0
