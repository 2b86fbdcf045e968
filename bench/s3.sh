#!/usr/bin/env bash
# Object-storage benchmark: Lifeboat's backup + target push vs restic's backup to the same real
# Ceph RADOS Gateway. Installs Ceph and restic from Debian if missing, then runs
# bench/s3-bench.ts (arguments are passed through, e.g. --size-mib 64).
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/lib/install.sh
install_missing restic:restic /usr/bin/time:time radosgw:radosgw ceph-mon:ceph-mon ceph-osd:ceph-osd ceph:ceph-common

node=node_modules/.bin/node
[ -x "$node" ] || node=node
exec "$node" bench/s3-bench.ts "$@"
