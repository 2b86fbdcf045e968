#!/usr/bin/env bash
# Replication benchmark: Lifeboat's push to a peer agent vs rsync --no-whole-file, across a veth
# link into a network namespace. Installs the Debian tools it needs if missing, then runs
# bench/replication.ts on the pinned node (arguments are passed through, e.g. --size-mib 64).
# Needs root (ip netns).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib/install.sh
install_missing rsync:rsync ip:iproute2 /usr/bin/time:time

node=node_modules/.bin/node
[ -x "$node" ] || node=node
exec "$node" bench/replication.ts "$@"
