import fsp from 'node:fs/promises';
import path from 'node:path';
import { CorruptDataError, CorruptIndexError, LifeboatError, NoSpaceError, PruneRefusedError } from '../errors/errors.ts';
import { faultPoint } from '../util/fault.ts';
import { unseal } from './crypto.ts';
import { type BlobId, type BlobType, BlobType as BT, toHex } from './ids.ts';
import { dropScan, indexedEntries, type PackScan, type PhaseProgress, scanPacks, scannedLoader } from './pack-scan.ts';
import { type FinishedPack, NO_REFS, PackWriter, packPath, TRAILER_ENTRY_BYTES } from './pack.ts';
import { blobRefs } from './refs.ts';
import { Repository } from './repository.ts';
import { shortId, type Snapshot } from './snapshot.ts';
import { readAllRecords } from './snapshot-record.ts';
import type { Store } from './store.ts';
import { walkSnapshot } from './walk.ts';
import { INDEX_DB } from './index-db.ts';

/** Repack a pack once more than a fifth of it is unused: copying a pack to save less is not worth its I/O. */
export const REPACK_UNUSED = 0.2;

export interface PruneOptions {
  /** Repack a pack once more than this share of its bytes is unreferenced. */
  readonly maxUnused: number;
  readonly packSize: number;
  /** Packs scanned, snapshots walked, packs repacked. */
  readonly onProgress?: PhaseProgress;
}

export interface PruneReport {
  /** Indexed pack files deleted: their trailers showed nothing a snapshot needs. */
  readonly packs_deleted: number;
  readonly packs_repacked: number;
  readonly packs_written: number;
  /** Index rows dropped: blobs no snapshot needs, or rows that named no copy. */
  readonly blobs_removed: number;
  readonly bytes_freed: number;
  /** Files of interrupted writes removed: temporary pack files, and finished packs no index row named and nothing needs. */
  readonly orphans_removed: number;
  /** Pack files the index did not name that hold needed blobs: indexed again, not deleted. */
  readonly packs_adopted: number;
  /** Pack files whose trailer does not read: kept, whatever they hold. */
  readonly packs_damaged: number;
  /** Blobs a snapshot needs that no pack holds (verify names where): nothing prune can do, nothing it made worse. */
  readonly blobs_missing: number;
}

interface Usage {
  readonly name: string;
  readonly size: number;
  readonly liveBytes: number;
  /** What repacking would save: the blobs nothing needs, with their trailer entries. */
  readonly deadBytes: number;
}

/**
 * Mark and sweep, decided by what the files say, never by the index alone:
 * the packs' trailers say what each pack holds, the snapshot records say what
 * exists, and the snapshots' trees (or, in a store without the key, the edges
 * the trailers declare) say what each needs. A pack file is deleted only when
 * its own trailer shows that none of its blobs is needed; when what some
 * snapshot needs cannot be accounted for (a tree no pack holds intact), prune
 * deletes nothing. The index comes out agreeing with the packs: rows for
 * needed blobs in packs it had lost are added back, rows naming no copy go.
 *
 * Under the exclusive lock, so no backup runs meanwhile. Two phases, each
 * crash-safe: packs with nothing needed leave the index and then the disk
 * (first, so a full disk gets room before anything is written); then the
 * needed blobs of sparse packs are copied, still sealed, into new packs,
 * fsynced, indexed, and only then the old files deleted.
 */
export async function prune(store: Store, opts: PruneOptions): Promise<PruneReport> {
  const lock = store.lock('exclusive');
  const db = store[INDEX_DB];
  try {
    const scan = await scanPacks(db, store.dir, indexedEntries(store), opts.onProgress);
    db.exec('DROP TABLE IF EXISTS temp.live; CREATE TEMP TABLE live (id BLOB PRIMARY KEY) WITHOUT ROWID;');
    const snapshots = readAllRecords(store.dir);
    if (store instanceof Repository) await markByWalking(store, snapshots, opts.onProgress);
    else markByEdges(store, snapshots);
    const missing = db.prepare('SELECT count(*) FROM temp.live l WHERE NOT EXISTS (SELECT 1 FROM temp.copies c WHERE c.id = l.id)').pluck().get() as number;
    chooseCopies(store);

    const usage = packUsage(store, scan);
    const doomed = usage.filter((p) => p.liveBytes === 0);
    const sparse = usage.filter((p) => p.liveBytes > 0 && p.deadBytes / p.size > opts.maxUnused);
    const doomedNames = new Set(doomed.map((p) => p.name));
    const indexedBefore = new Set(db.prepare('SELECT name FROM packs').pluck().all() as string[]);

    // Phase 1: what nothing needs goes.
    const kept = [...scan.packs.filter((p) => !doomedNames.has(p.name)), ...scan.damaged];
    const removeDoomed = async () => {
      store.dropPackHandles();
      for (const p of doomed) {
        await fsp.rm(packPath(store.dir, p.name), { force: true });
        faultPoint('prune-pack-deleted');
      }
    };
    let blobsRemoved: number;
    try {
      blobsRemoved = syncIndex(store, kept, true);
    } catch (err) {
      if (!(err instanceof NoSpaceError) || doomed.length === 0) throw err;
      // A full disk, and the index needs room to say the packs are gone: their trailers showed
      // nothing any snapshot needs, so their files may go first (rows naming them are dropped next).
      await removeDoomed();
      blobsRemoved = syncIndex(store, kept, true);
    }
    faultPoint('prune-indexed');
    await removeDoomed();

    // Phase 2: sparse packs are copied down to what is needed.
    const moved = await repack(store, sparse, opts.packSize, opts.onProgress);
    faultPoint('prune-repacked');
    const replaced = new Set(sparse.filter((p) => !moved.keep.has(p.name)).map((p) => p.name));
    if (sparse.length > 0) {
      blobsRemoved += syncIndex(store, [...kept.filter((p) => !replaced.has(p.name)), ...moved.packs], false);
      faultPoint('prune-indexed');
      store.dropPackHandles();
      for (const name of replaced) {
        await fsp.rm(packPath(store.dir, name), { force: true });
        faultPoint('prune-pack-deleted');
      }
    }

    let orphanBytes = 0;
    for (const name of scan.temporary) {
      const file = path.join(store.dir, 'packs', name.slice(0, 2), name);
      orphanBytes += await fsp.stat(file).then((s) => s.size, () => 0);
      await fsp.rm(file, { force: true });
      faultPoint('prune-orphan-removed');
    }
    const sizeOf = new Map(usage.map((p) => [p.name, p.size]));
    const freed = [...doomedNames, ...replaced].reduce((n, name) => n + (sizeOf.get(name) ?? 0), 0);
    const orphans = doomed.filter((p) => !indexedBefore.has(p.name)).length;
    return {
      packs_deleted: doomed.length - orphans,
      packs_repacked: replaced.size,
      packs_written: moved.packs.length,
      blobs_removed: blobsRemoved,
      bytes_freed: freed - moved.packs.reduce((n, p) => n + p.size, 0) + orphanBytes,
      orphans_removed: scan.temporary.length + orphans,
      packs_adopted: scan.packs.filter((p) => !doomedNames.has(p.name) && !indexedBefore.has(p.name)).length,
      packs_damaged: scan.damaged.length,
      blobs_missing: missing,
    };
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.live; DROP TABLE IF EXISTS temp.chosen; DROP TABLE IF EXISTS temp.final;');
    dropScan(db);
    lock.release();
  }
}

/**
 * One copy of each needed blob is the one kept (temp.chosen): the one the
 * index names, when its row matches a copy; else any copy. Other copies (two
 * workers that packed the same block, a crashed backup's packs, a damaged
 * copy a repair replaced) are what they are: unneeded.
 */
function chooseCopies(store: Store): void {
  store[INDEX_DB].exec(`
    DROP TABLE IF EXISTS temp.chosen;
    CREATE TEMP TABLE chosen (id BLOB PRIMARY KEY, pack TEXT NOT NULL) WITHOUT ROWID;
    INSERT OR IGNORE INTO temp.chosen (id, pack)
      SELECT b.id, p.name FROM temp.live l JOIN main.blobs b ON b.id = l.id JOIN main.packs p ON p.id = b.pack
      JOIN temp.copies c ON c.id = b.id AND c.pack = p.name AND c.offset = b.offset AND c.length = b.length AND c.type = b.type AND c.raw_length = b.raw_length;
    INSERT OR IGNORE INTO temp.chosen (id, pack)
      SELECT c.id, MIN(c.pack) FROM temp.live l JOIN temp.copies c ON c.id = l.id GROUP BY c.id;
  `);
}

/** Needed and unneeded bytes per readable pack, from the trailers' copies. */
function packUsage(store: Store, scan: PackScan): Usage[] {
  const rows = store[INDEX_DB]
    .prepare(
      `SELECT c.pack AS name, SUM(CASE WHEN ch.id IS NOT NULL THEN c.length ELSE 0 END) AS liveBytes,
         SUM(CASE WHEN ch.id IS NULL THEN c.length + ? ELSE 0 END) AS deadBytes
       FROM temp.copies c LEFT JOIN temp.chosen ch ON ch.id = c.id AND ch.pack = c.pack GROUP BY c.pack`,
    )
    .all(TRAILER_ENTRY_BYTES) as { name: string; liveBytes: number; deadBytes: number }[];
  const byName = new Map(rows.map((r) => [r.name, r]));
  return scan.packs.map((p) => ({ name: p.name, size: p.size, liveBytes: byName.get(p.name)?.liveBytes ?? 0, deadBytes: byName.get(p.name)?.deadBytes ?? 0 }));
}

/**
 * Marks what the snapshots reach by opening their trees, read from the
 * packs' copies (the index is not trusted to say where they are). A tree or
 * list that no pack holds intact hides what it names: prune stops there.
 */
async function markByWalking(repo: Repository, snapshots: readonly Snapshot[], onProgress?: PhaseProgress): Promise<void> {
  const mark = repo[INDEX_DB].prepare('INSERT OR IGNORE INTO temp.live (id) VALUES (?)');
  const marked = repo[INDEX_DB].prepare('SELECT 1 FROM temp.live WHERE id = ?').pluck();
  const load = scannedLoader(repo);
  for (const [i, s] of snapshots.entries()) {
    onProgress?.('walked', i, snapshots.length);
    if (s.meta) mark.run(s.meta);
    try {
      await walkSnapshot(load, s, {
        enter: (id) => {
          if (marked.get(id)) return false;
          mark.run(id);
          return true;
        },
        blocks: (ids) => {
          for (const hex of ids) mark.run(Buffer.from(hex, 'hex'));
        },
      });
    } catch (err) {
      if (!(err instanceof CorruptDataError || err instanceof CorruptIndexError)) throw err;
      throw new PruneRefusedError(`prune deleted nothing: snapshot ${shortId(s.id)} cannot be read whole (${err.message}), so what it needs cannot be told; run \`lifeboat verify\` and \`lifeboat repair\``);
    }
  }
}

/**
 * A store without the key (a replica) marks through the edges the trailers
 * declare (and the index's refs, for packs of the first format). Every tree
 * and list reached must have its edges known, and every blob reached a copy:
 * otherwise part of what is needed is unaccounted for, and prune stops.
 */
function markByEdges(store: Store, snapshots: readonly Snapshot[]): void {
  const db = store[INDEX_DB];
  db.exec('DROP TABLE IF EXISTS temp.roots; CREATE TEMP TABLE roots (id BLOB PRIMARY KEY) WITHOUT ROWID;');
  const root = db.prepare('INSERT OR IGNORE INTO temp.roots (id) VALUES (?)');
  for (const s of snapshots) {
    root.run(s.tree);
    if (s.meta) root.run(s.meta);
  }
  // the index's refs (a replica's, from before trailers declared edges) count too: each blob's were written whole, with its pack
  db.exec(`
    INSERT OR IGNORE INTO temp.edges (parent, child) SELECT parent, child FROM main.refs;
    INSERT OR IGNORE INTO temp.known (id) SELECT DISTINCT parent FROM main.refs;
    WITH RECURSIVE reach(id) AS (
      SELECT id FROM temp.roots
      UNION SELECT e.child FROM temp.edges e JOIN reach ON e.parent = reach.id
    )
    INSERT OR IGNORE INTO temp.live (id) SELECT id FROM reach;
    DROP TABLE temp.roots;
  `);
  const blind = db
    .prepare(
      `SELECT l.id FROM temp.live l WHERE NOT EXISTS (SELECT 1 FROM temp.copies c WHERE c.id = l.id)
       OR (EXISTS (SELECT 1 FROM temp.copies c WHERE c.id = l.id AND c.type IN (${BT.tree}, ${BT.list}))
           AND NOT EXISTS (SELECT 1 FROM temp.known k WHERE k.id = l.id))
       LIMIT 1`,
    )
    .pluck()
    .get() as Buffer | undefined;
  if (blind) {
    throw new PruneRefusedError(
      `prune deleted nothing: blob ${toHex(blind).slice(0, 16)}, which a snapshot needs, is in no pack or names blobs no trailer lists, so what the snapshots need cannot be told; the source's \`lifeboat repair\` or a new push mends the replica`,
    );
  }
}

/**
 * Makes the index agree with the packs in `final` (the packs kept, and new
 * ones): each needed blob gets the row of its chosen copy (the one it had,
 * when that still held); every other row goes (blobs nothing needs, spare
 * copies, rows naming no copy); pack rows follow the files. With
 * `dropDead`, the replica's refs of unneeded blobs go too. Returns the rows
 * removed. One transaction.
 */
function syncIndex(store: Store, final: readonly { name: string; size: number }[], dropDead: boolean): number {
  const db = store[INDEX_DB];
  db.exec('DROP TABLE IF EXISTS temp.final; CREATE TEMP TABLE final (name TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;');
  const addFinal = db.prepare('INSERT OR IGNORE INTO temp.final (name, size) VALUES (?, ?)');
  let removed = 0;
  db.transaction(() => {
    for (const p of final) addFinal.run(p.name, p.size);
    removed = db
      .prepare(
        `DELETE FROM blobs WHERE NOT EXISTS (
           SELECT 1 FROM temp.chosen ch JOIN packs p ON p.name = ch.pack JOIN temp.copies c ON c.id = ch.id AND c.pack = ch.pack
           WHERE ch.id = blobs.id AND p.id = blobs.pack AND c.offset = blobs.offset AND c.length = blobs.length AND c.type = blobs.type AND c.raw_length = blobs.raw_length)`,
      )
      .run().changes;
    db.prepare('DELETE FROM packs WHERE name NOT IN (SELECT name FROM temp.final)').run();
    db.prepare('UPDATE packs SET size = (SELECT size FROM temp.final f WHERE f.name = packs.name) WHERE size <> (SELECT size FROM temp.final f WHERE f.name = packs.name)').run();
    db.prepare('INSERT INTO packs (name, size, created) SELECT name, size, ? FROM temp.final WHERE name NOT IN (SELECT name FROM packs)').run(new Date().toISOString());
    db.prepare(
      `INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length)
       SELECT c.id, c.type, p.id, c.offset, c.length, c.raw_length
       FROM temp.chosen ch JOIN temp.copies c ON c.id = ch.id AND c.pack = ch.pack JOIN packs p ON p.name = ch.pack`,
    ).run();
    if (dropDead) {
      db.prepare('DELETE FROM refs WHERE parent NOT IN (SELECT id FROM temp.live)').run();
      if (!(store instanceof Repository)) {
        db.prepare('INSERT OR IGNORE INTO refs (parent, child) SELECT e.parent, e.child FROM temp.edges e JOIN temp.live l ON l.id = e.parent').run();
      }
    }
  })();
  return removed;
}

/**
 * Copies the chosen copies in the sparse packs, still sealed, into new
 * packs. With the key each is authenticated first (a damaged one is replaced
 * by another copy); a pack holding a needed blob with no good copy elsewhere
 * is kept. The new packs' trailers carry every tree's and list's edges.
 */
async function repack(store: Store, sparse: readonly Usage[], packSize: number, onProgress?: PhaseProgress): Promise<{ packs: FinishedPack[]; keep: Set<string> }> {
  const db = store[INDEX_DB];
  const out: FinishedPack[] = [];
  const keep = new Set<string>();
  if (sparse.length === 0) return { packs: out, keep };
  const toCopy = db.prepare(
    `SELECT c.id, c.type, c.offset, c.length, c.raw_length AS rawLength FROM temp.chosen ch JOIN temp.copies c ON c.id = ch.id AND c.pack = ch.pack
     WHERE ch.pack = ? ORDER BY c.offset`,
  );
  const others = db.prepare('SELECT pack, offset, length FROM temp.copies WHERE id = ? AND pack <> ?');
  const edges = db.prepare('SELECT child FROM temp.edges WHERE parent = ?').pluck();
  const isKnown = db.prepare('SELECT 1 FROM temp.known WHERE id = ?').pluck();
  const keys = store instanceof Repository ? store.keys : undefined;

  /** A good stored copy of a blob (this pack's, else another's) and its plaintext when the key is at hand. */
  const goodCopy = async (id: BlobId, type: BlobType, rawLength: number, first: { pack: string; offset: number; length: number }) => {
    const candidates = [first, ...(others.all(id, first.pack) as { pack: string; offset: number; length: number }[])];
    for (const c of candidates) {
      const stored = await store.readStored(c).catch((err: unknown) => {
        if (err instanceof LifeboatError) return undefined;
        throw err;
      });
      if (!stored) continue;
      if (!keys) return { stored, plain: undefined };
      try {
        return { stored, plain: unseal(keys, id, type, stored, true, rawLength) };
      } catch (err) {
        if (!(err instanceof CorruptDataError)) throw err;
      }
    }
    return undefined;
  };
  const refsOf = (id: BlobId, type: BlobType, plain: Buffer | undefined): readonly BlobId[] => {
    if (type !== BT.tree && type !== BT.list) return NO_REFS;
    if (isKnown.get(id)) return edges.all(id) as BlobId[];
    // a tree of the first pack format: only the key tells what it names (a keyless store knew it from refs, so it is known)
    return plain ? blobRefs(type, plain) : NO_REFS;
  };

  let writer: PackWriter | undefined;
  const finish = () => {
    if (!writer) return;
    out.push(writer.finish());
    writer = undefined;
  };
  try {
    for (const [i, p] of sparse.entries()) {
      onProgress?.('repacked', i, sparse.length);
      for (const b of toCopy.all(p.name) as { id: BlobId; type: BlobType; offset: number; length: number; rawLength: number }[]) {
        const copy = await goodCopy(b.id, b.type, b.rawLength, { pack: p.name, offset: b.offset, length: b.length });
        if (!copy) {
          keep.add(p.name); // nothing better to put in its place: the pack stays, and verify names the blob
          continue;
        }
        writer ??= new PackWriter(store.dir);
        writer.append(b.id, b.type, copy.stored, b.rawLength, refsOf(b.id, b.type, copy.plain));
        if (writer.size >= packSize) finish();
      }
    }
    finish();
  } catch (err) {
    await writer?.abort();
    throw err;
  }
  // the new copies are the ones kept now
  const addCopy = db.prepare('INSERT OR IGNORE INTO temp.copies (id, pack, type, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)');
  const choose = db.prepare('UPDATE temp.chosen SET pack = ? WHERE id = ?');
  db.transaction(() => {
    for (const pack of out) {
      for (const e of pack.entries) {
        addCopy.run(e.id, pack.name, e.type, e.offset, e.length, e.rawLength);
        choose.run(pack.name, e.id);
      }
    }
  })();
  return { packs: out, keep };
}
