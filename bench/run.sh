#!/usr/bin/env bash
# Repository benchmark: Lifeboat vs restic vs borg. Installs the Debian tools it needs if
# missing, then runs bench/repo-bench.ts (arguments are passed through, e.g. --size-mib 64).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib/install.sh
install_missing restic:restic borg:borgbackup /usr/bin/time:time

node=node_modules/.bin/node
[ -x "$node" ] || node=node
exec "$node" bench/repo-bench.ts "$@"
