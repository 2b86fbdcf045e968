import fsp from 'node:fs/promises';
import path from 'node:path';
import { type BlobId } from './ids.ts';
import { listPackFiles, PackWriter, packPath } from './pack.ts';
import type { Repository } from './repository.ts';
import { listSnapshots } from './snapshots.ts';
import { walkSnapshot } from './walk.ts';

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
  dead_blobs: number;
}

/**
 * Mark and sweep under the exclusive lock, so no backup runs meanwhile.
 * Marks go to a temporary SQLite table, not memory. Order keeps every crash
 * safe: repacked blobs are written and fsynced into new packs, then one
 * transaction moves their index rows and drops the old packs' rows, and only
 * then are old files deleted. A crash leaves at worst files no row names,
 * which the next prune sweeps.
 */
export async function prune(repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  const lock = repo.lock('exclusive');
  const db = repo.db;
  try {
    db.exec('CREATE TEMP TABLE IF NOT EXISTS live (id BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM temp.live;');
    const mark = db.prepare('INSERT OR IGNORE INTO temp.live (id) VALUES (?)');
    const marked = db.prepare('SELECT 1 FROM temp.live WHERE id = ?').pluck();
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

    const usage = db
      .prepare(
        `SELECT p.id, p.name, p.size,
           COALESCE(SUM(CASE WHEN l.id IS NOT NULL THEN b.length END), 0) AS live_bytes,
           COUNT(b.id) - COUNT(l.id) AS dead_blobs
         FROM packs p LEFT JOIN blobs b ON b.pack = p.id LEFT JOIN temp.live l ON l.id = b.id
         GROUP BY p.id`,
      )
      .all() as PackUsage[];
    const empty = usage.filter((p) => p.live_bytes === 0);
    const sparse = usage.filter((p) => p.live_bytes > 0 && p.dead_blobs > 0 && 1 - p.live_bytes / p.size > opts.maxUnused);

    const moved = await repack(repo, sparse, opts.packSize);
    const doomed = [...empty, ...sparse];
    let blobsRemoved = 0;
    db.transaction(() => {
      for (const row of moved.rows) {
        db.prepare('UPDATE blobs SET pack = ?, offset = ? WHERE id = ?').run(row.pack, row.offset, row.id);
      }
      for (const p of doomed) {
        blobsRemoved += db.prepare('DELETE FROM blobs WHERE pack = ?').run(p.id).changes;
        db.prepare('DELETE FROM packs WHERE id = ?').run(p.id);
      }
    })();
    repo.dropPackHandles();
    for (const p of doomed) await fsp.rm(packPath(repo.dir, p.name), { force: true });

    const orphans = await removeOrphans(repo);
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

/** Copies the live blobs of the given packs, still sealed, into new packs. */
async function repack(repo: Repository, packs: PackUsage[], packSize: number) {
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

async function removeOrphans(repo: Repository): Promise<{ count: number; bytes: number }> {
  const known = new Set((repo.db.prepare('SELECT name FROM packs').pluck().all() as string[]));
  let count = 0;
  let bytes = 0;
  for (const name of await listPackFiles(repo.dir)) {
    const base = name.replace(/\.tmp$/, '');
    if (known.has(base) && base === name) continue;
    const file = path.join(repo.dir, 'packs', base.slice(0, 2), name);
    bytes += await fsp.stat(file).then((s) => s.size, () => 0);
    await fsp.rm(file, { force: true });
    count++;
  }
  return { count, bytes };
}
