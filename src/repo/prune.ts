import fsp from 'node:fs/promises';
import path from 'node:path';
import { faultPoint } from '../util/fault.ts';
import { type BlobId } from './ids.ts';
import { listPackFiles, PackWriter, packPath, TRAILER_ENTRY_BYTES, TRAILER_FOOTER_BYTES } from './pack.ts';
import { Repository } from './repository.ts';
import type { Store } from './store.ts';
import { listSnapshots } from './snapshots.ts';
import { walkSnapshot } from './walk.ts';

/** Repack a pack once more than a fifth of it is unused: copying a pack to save less is not worth its I/O. */
export const REPACK_UNUSED = 0.2;

export interface PruneOptions {
  /** Repack a pack once more than this share of its bytes is unreferenced. */
  readonly maxUnused: number;
  readonly packSize: number;
}

export interface PruneReport {
  readonly packs_deleted: number;
  readonly packs_repacked: number;
  readonly packs_written: number;
  readonly blobs_removed: number;
  readonly bytes_freed: number;
  /** Pack files no index row named (interrupted writes), removed. */
  readonly orphans_removed: number;
}

interface PackUsage {
  id: number;
  name: string;
  size: number;
  live_bytes: number;
  /** What repacking would save: the pack's size minus its live blobs and their trailer entries. */
  unused_bytes: number;
}

/**
 * Mark and sweep under the exclusive lock, so no backup runs meanwhile.
 * Marks go to a temporary SQLite table, not memory. Order keeps every crash
 * safe: repacked blobs are written and fsynced into new packs, then one
 * transaction moves their index rows and drops the old packs' rows, and only
 * then are old files deleted. A crash leaves at worst files no row names,
 * which the next prune sweeps.
 */
export async function prune(store: Store, opts: PruneOptions): Promise<PruneReport> {
  const lock = store.lock('exclusive');
  const db = store.db;
  try {
    db.exec('CREATE TEMP TABLE IF NOT EXISTS live (id BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM temp.live;');
    if (store instanceof Repository) await markByWalking(store);
    else markByRefs(store);

    const usage = db
      .prepare(
        `SELECT id, name, size, live_bytes, size - live_bytes - ? * live_blobs - ? AS unused_bytes FROM (
           SELECT p.id, p.name, p.size,
             COALESCE(SUM(CASE WHEN l.id IS NOT NULL THEN b.length END), 0) AS live_bytes,
             COUNT(l.id) AS live_blobs
           FROM packs p LEFT JOIN blobs b ON b.pack = p.id LEFT JOIN temp.live l ON l.id = b.id
           GROUP BY p.id)`,
      )
      .all(TRAILER_ENTRY_BYTES, TRAILER_FOOTER_BYTES) as PackUsage[];
    const empty = usage.filter((p) => p.live_bytes === 0);
    const sparse = usage.filter((p) => p.live_bytes > 0 && p.unused_bytes / p.size > opts.maxUnused);

    const moved = await repack(store, sparse, opts.packSize);
    faultPoint('prune-repacked');
    const doomed = [...empty, ...sparse];
    let blobsRemoved = 0;
    db.transaction(() => {
      for (const row of moved.rows) {
        db.prepare('UPDATE blobs SET pack = ?, offset = ? WHERE id = ?').run(row.pack, row.offset, row.id);
      }
      // Every dead row goes, also in packs kept for their live part: an indexed tree must
      // imply its whole subtree is indexed, which a replica's push relies on to skip it.
      blobsRemoved = db.prepare('DELETE FROM blobs WHERE id NOT IN (SELECT id FROM temp.live)').run().changes;
      db.prepare('DELETE FROM refs WHERE parent NOT IN (SELECT id FROM temp.live)').run();
      for (const p of doomed) db.prepare('DELETE FROM packs WHERE id = ?').run(p.id);
    })();
    faultPoint('prune-indexed');
    store.dropPackHandles();
    for (const p of doomed) {
      await fsp.rm(packPath(store.dir, p.name), { force: true });
      faultPoint('prune-pack-deleted');
    }

    const orphans = await removeOrphans(store);
    const written = moved.packs.reduce((n, p) => n + p.size, 0);
    return {
      packs_deleted: empty.length,
      packs_repacked: sparse.length,
      packs_written: moved.packs.length,
      blobs_removed: blobsRemoved,
      bytes_freed: doomed.reduce((n, p) => n + p.size, 0) - written + orphans.bytes,
      orphans_removed: orphans.count,
    };
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.live');
    lock.release();
  }
}

/** Marks what the snapshots reach by opening their trees. */
async function markByWalking(repo: Repository): Promise<void> {
  const mark = repo.db.prepare('INSERT OR IGNORE INTO temp.live (id) VALUES (?)');
  const marked = repo.db.prepare('SELECT 1 FROM temp.live WHERE id = ?').pluck();
  for (const s of listSnapshots(repo)) {
    if (s.meta) mark.run(s.meta);
    await walkSnapshot(repo, s, {
      enter: (id) => {
        if (marked.get(id)) return false;
        mark.run(id);
        return true;
      },
      blocks: (ids) => {
        for (const hex of ids) mark.run(Buffer.from(hex, 'hex'));
      },
    });
  }
}

/** A store without keys (a replica) marks through the edges its source declared, in SQLite: no tree is opened. */
function markByRefs(store: Store): void {
  store.db.exec(`
    WITH RECURSIVE reach(id) AS (
      SELECT tree FROM snapshots
      UNION SELECT meta FROM snapshots WHERE meta IS NOT NULL
      UNION SELECT r.child FROM refs r JOIN reach ON r.parent = reach.id
    )
    INSERT OR IGNORE INTO temp.live (id) SELECT id FROM reach;
  `);
}

/** Copies the live blobs of the given packs, still sealed, into new packs. */
async function repack(repo: Store, packs: PackUsage[], packSize: number) {
  const rows: { id: BlobId; pack: number; offset: number }[] = [];
  const written: { name: string; size: number }[] = [];
  const liveIn = repo.db.prepare(
    'SELECT b.id, b.type, b.offset, b.length, b.raw_length AS rawLength FROM blobs b JOIN temp.live l ON l.id = b.id WHERE b.pack = ? ORDER BY b.offset',
  );
  const insertPack = repo.db.prepare('INSERT INTO packs (name, size, created) VALUES (?, ?, ?)');
  let writer: PackWriter | undefined;
  const finish = () => {
    if (!writer) return;
    const done = writer.finish();
    const packId = Number(insertPack.run(done.name, done.size, new Date().toISOString()).lastInsertRowid);
    for (const e of done.entries) rows.push({ id: e.id, pack: packId, offset: e.offset });
    written.push({ name: done.name, size: done.size });
    writer = undefined;
  };
  for (const p of packs) {
    for (const b of liveIn.all(p.id) as { id: BlobId; type: 0 | 1; offset: number; length: number; rawLength: number }[]) {
      writer ??= new PackWriter(repo.dir);
      writer.append(b.id, b.type, await repo.readStored({ pack: p.name, offset: b.offset, length: b.length }), b.rawLength);
      if (writer.size >= packSize) finish();
    }
  }
  finish();
  return { rows, packs: written };
}

async function removeOrphans(repo: Store): Promise<{ count: number; bytes: number }> {
  const known = new Set((repo.db.prepare('SELECT name FROM packs').pluck().all() as string[]));
  let count = 0;
  let bytes = 0;
  for (const name of await listPackFiles(repo.dir)) {
    const base = name.replace(/\.tmp$/, '');
    if (known.has(base) && base === name) continue;
    const file = path.join(repo.dir, 'packs', base.slice(0, 2), name);
    bytes += await fsp.stat(file).then((s) => s.size, () => 0);
    await fsp.rm(file, { force: true });
    faultPoint('prune-orphan-removed');
    count++;
  }
  return { count, bytes };
}
