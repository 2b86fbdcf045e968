#!/usr/bin/env bash
# Repository benchmark: Lifeboat vs restic vs borg. Installs the Debian tools it needs if
# missing, then runs bench/repo-bench.ts (arguments are passed through, e.g. --size-mib 64).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v restic >/dev/null || need+=(restic)
command -v borg >/dev/null || need+=(borgbackup)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[bench] installing ${need[*]}" >&2
  # Wait for a concurrent apt/dpkg run instead of failing on its lock.
  $sudo apt-get -o DPkg::Lock::Timeout=1800 update -qq || true
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=1800 install -y -qq "${need[@]}" >&2
fi

node=node_modules/.bin/node
[ -x "$node" ] || node=node
exec "$node" bench/repo-bench.ts "$@"
