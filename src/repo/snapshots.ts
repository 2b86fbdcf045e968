import { AmbiguousSnapshotError, SnapshotNotFoundError } from '../errors/errors.ts';
import type { BlobId } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';

interface SnapshotRow {
  id: string;
  time: string;
  host: string;
  source: string;
  volume: string | null;
  parent: string | null;
  tree: Buffer;
  tags: string;
  splitter: string;
  stats: string;
}

function fromRow(r: SnapshotRow): Snapshot {
  return {
    id: r.id,
    time: r.time,
    host: r.host,
    source: r.source,
    volume: r.volume,
    parent: r.parent,
    tree: r.tree as BlobId,
    tags: JSON.parse(r.tags) as string[],
    splitter: JSON.parse(r.splitter) as Snapshot['splitter'],
    stats: JSON.parse(r.stats) as Snapshot['stats'],
  };
}

/** The last step of the write order: a snapshot row is committed only after its blobs are indexed. */
export function saveSnapshot(repo: Repository, s: Snapshot): void {
  repo.db
    .prepare(
      `INSERT INTO snapshots (id, time, host, source, volume, parent, tree, tags, splitter, stats)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(s.id, s.time, s.host, s.source, s.volume, s.parent, s.tree, JSON.stringify(s.tags), JSON.stringify(s.splitter), JSON.stringify(s.stats));
}

/** Oldest first. */
export function listSnapshots(repo: Repository): Snapshot[] {
  return (repo.db.prepare('SELECT * FROM snapshots ORDER BY time, id').all() as SnapshotRow[]).map(fromRow);
}

/** The newest snapshot of the same host and source: the parent an incremental backup compares against. */
export function latestSnapshotOf(repo: Repository, host: string, source: string): Snapshot | undefined {
  const row = repo.db
    .prepare('SELECT * FROM snapshots WHERE host = ? AND source = ? ORDER BY time DESC, id DESC LIMIT 1')
    .get(host, source) as SnapshotRow | undefined;
  return row && fromRow(row);
}

/** Resolves "latest", a full id, or a unique prefix of at least 4 characters. */
export function findSnapshot(repo: Repository, ref: string): Snapshot {
  if (ref === 'latest') {
    const row = repo.db.prepare('SELECT * FROM snapshots ORDER BY time DESC, id DESC LIMIT 1').get() as SnapshotRow | undefined;
    if (!row) throw new SnapshotNotFoundError(ref);
    return fromRow(row);
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new SnapshotNotFoundError(ref);
  const rows = repo.db.prepare("SELECT * FROM snapshots WHERE id >= ? AND id < ? || 'g' LIMIT 2").all(ref, ref) as SnapshotRow[];
  if (rows.length === 0) throw new SnapshotNotFoundError(ref);
  if (rows.length > 1) throw new AmbiguousSnapshotError(ref, rows.length);
  return fromRow(rows[0]!);
}

export function deleteSnapshots(repo: Repository, ids: readonly string[]): void {
  const del = repo.db.prepare('DELETE FROM snapshots WHERE id = ?');
  repo.db.transaction(() => {
    for (const id of ids) del.run(id);
  })();
}
