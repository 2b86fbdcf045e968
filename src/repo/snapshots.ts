import { AmbiguousSnapshotError, CorruptDataError, CorruptIndexError, SnapshotNotFoundError } from '../errors/errors.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Store } from './store.ts';
import type { Snapshot } from './snapshot.ts';

interface SnapshotRow {
  id: string;
  time: string;
  host: string;
  source: string;
  volume: string | null;
  parent: string | null;
  tree: Buffer;
  meta: Buffer | null;
  tags: string;
  splitter: string;
  stats: string;
}

function fromRow(r: SnapshotRow): Snapshot {
  const json = <T>(text: string, what: string): T => {
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CorruptIndexError(`the index row of snapshot ${String(r.id).slice(0, 8)} is damaged: its ${what} is not JSON`);
    }
  };
  if (!Buffer.isBuffer(r.tree) || r.tree.length !== BLOB_ID_BYTES) throw new CorruptIndexError(`the index row of snapshot ${String(r.id).slice(0, 8)} is damaged: its tree id is not one`);
  return {
    id: r.id,
    time: r.time,
    host: r.host,
    source: r.source,
    volume: r.volume,
    parent: r.parent,
    tree: r.tree as BlobId,
    meta: r.meta as BlobId | null,
    tags: json<string[]>(r.tags, 'tags'),
    splitter: json<Snapshot['splitter']>(r.splitter, 'splitter'),
    stats: json<Snapshot['stats']>(r.stats, 'stats'),
  };
}

/** The last step of the write order: a snapshot row is committed only after its blobs are indexed. */
export function saveSnapshot(repo: Store, s: Snapshot): void {
  repo.db
    .prepare(
      `INSERT INTO snapshots (id, time, host, source, volume, parent, tree, meta, tags, splitter, stats)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(s.id, s.time, s.host, s.source, s.volume, s.parent, s.tree, s.meta, JSON.stringify(s.tags), JSON.stringify(s.splitter), JSON.stringify(s.stats));
}

/** Oldest first. */
export function listSnapshots(repo: Store): Snapshot[] {
  return (repo.db.prepare('SELECT * FROM snapshots ORDER BY time, id').all() as SnapshotRow[]).map(fromRow);
}

/** The newest snapshot of the same host and source: the parent an incremental backup compares against. */
export function latestSnapshotOf(repo: Store, host: string, source: string): Snapshot | undefined {
  const row = repo.db
    .prepare('SELECT * FROM snapshots WHERE host = ? AND source = ? ORDER BY time DESC, id DESC LIMIT 1')
    .get(host, source) as SnapshotRow | undefined;
  return row && fromRow(row);
}

/** Resolves "latest", a full id, or a unique prefix of at least 4 characters. */
export function findSnapshot(repo: Store, ref: string): Snapshot {
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

export function deleteSnapshots(repo: Store, ids: readonly string[]): void {
  const del = repo.db.prepare('DELETE FROM snapshots WHERE id = ?');
  repo.db.transaction(() => {
    for (const id of ids) del.run(id);
  })();
}

/** The sealed metadata a snapshot was saved with (JSON), or null. */
export async function loadSnapshotMeta(repo: Repository, s: Snapshot): Promise<unknown> {
  if (!s.meta) return null;
  try {
    return JSON.parse((await repo.loadBlob(s.meta, BlobType.meta)).toString('utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) throw new CorruptDataError(`metadata of snapshot ${s.id.slice(0, 8)} is not JSON`);
    throw err;
  }
}

/** Snapshots carrying a tag, newest first. */
export function snapshotsTagged(repo: Store, tag: string): Snapshot[] {
  const rows = repo.db
    .prepare('SELECT * FROM snapshots WHERE EXISTS (SELECT 1 FROM json_each(snapshots.tags) WHERE value = ?) ORDER BY time DESC, id DESC')
    .all(tag) as SnapshotRow[];
  return rows.map(fromRow);
}
