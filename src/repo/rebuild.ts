import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from '../db/database.ts';
import { LifeboatError, RepositoryLockedError } from '../errors/errors.ts';
import { type MasterKeys, unseal } from './crypto.ts';
import { type BlobId, BlobType } from './ids.ts';
import { removeStaleLocks } from './lock.ts';
import { dropScan, scanPacks } from './pack-scan.ts';
import { syncDir } from '../util/durable.ts';
import { packPath } from './pack.ts';
import { blobRefs } from './refs.ts';
import { repositoryMigrations } from './schema.ts';
import type { Snapshot } from './snapshot.ts';
import { listRecordIds, parseRecord, readGeneration, readRecord, snapshotsDir, writeRecord } from './snapshot-record.ts';
import { indexGeneration, insertRow, readableRows, setIndexGeneration } from './snapshots.ts';
import { readRepositoryConfig } from './store.ts';

export interface RebuildReport {
  readonly packs: number;
  readonly blobs: number;
  readonly snapshots: number;
  /** Records written again from the old index's rows (missing or damaged), and damaged ones that could not be (moved aside as <name>.damaged). */
  readonly records_rewritten: number;
  readonly records_damaged: readonly string[];
  /** Pack files whose trailer does not read: their blobs are not in the new index (verify names what that costs). */
  readonly damaged_packs: readonly string[];
  /** Where the old index was moved (kept, never deleted), or null when there was none. */
  readonly old_index: string | null;
}

/**
 * Rebuilds index.db from what the repository's files say: the packs'
 * trailers (packs, blobs, and what each tree and list names) and the
 * snapshot records. The old index is moved aside, not deleted. A tree or
 * list whose named blobs are not all present is left out of the new index
 * (restore would fail on it anyway, and a replica relies on an indexed tree
 * meaning its whole subtree is there). With the key, trees of packs of the
 * first format (which list no edges) are opened to learn what they name.
 *
 * The repository must not be in use: a live lock in the old index refuses.
 */
export async function rebuildIndex(dir: string, keys?: MasterKeys): Promise<RebuildReport> {
  const abs = path.resolve(dir);
  const config = readRepositoryConfig(abs);
  const file = path.join(abs, 'index.db');
  refuseIfLocked(file, abs);
  const generation = readGeneration(abs);
  const records = gatherRecords(abs, oldRows(file, config.id, generation));
  const fresh = `${file}.rebuild`;
  const removeFresh = () => {
    for (const f of [fresh, `${fresh}-wal`, `${fresh}-shm`]) fs.rmSync(f, { force: true });
  };
  removeFresh();
  const db = openDatabase(fresh, { migrations: repositoryMigrations, what: 'rebuilt repository index' });
  let report: Omit<RebuildReport, 'old_index'>;
  try {
    db.prepare("INSERT INTO meta (key, value) VALUES ('repository', ?)").run(config.id);
    setIndexGeneration(db, readGeneration(abs));
    const scan = await scanPacks(db, abs);
    if (keys) learnEdges(db, abs, keys);
    const snapshots = records.snapshots;
    db.transaction(() => {
      const now = new Date().toISOString();
      const addPack = db.prepare('INSERT INTO packs (name, size, created) VALUES (?, ?, ?)');
      for (const p of scan.packs) addPack.run(p.name, p.size, now);
      db.exec(`
        INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length)
        SELECT c.id, c.type, p.id, c.offset, c.length, c.raw_length FROM temp.copies c JOIN packs p ON p.name = c.pack;
      `);
      // a tree or list naming what is not here is not indexed, and so, in turn, nor are the trees above it
      const incomplete = db.prepare(
        `DELETE FROM blobs WHERE type IN (${BlobType.tree}, ${BlobType.list})
           AND EXISTS (SELECT 1 FROM temp.edges e WHERE e.parent = blobs.id AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = e.child))`,
      );
      while (incomplete.run().changes > 0);
      if (!keys) db.exec('INSERT OR IGNORE INTO refs (parent, child) SELECT e.parent, e.child FROM temp.edges e JOIN blobs b ON b.id = e.parent');
      for (const s of snapshots) insertRow(db, s);
    })();
    report = {
      packs: scan.packs.length,
      blobs: db.prepare('SELECT count(*) FROM blobs').pluck().get() as number,
      snapshots: snapshots.length,
      records_rewritten: records.rewritten,
      records_damaged: records.damaged,
      damaged_packs: scan.damaged.map((p) => p.name),
    };
    dropScan(db);
  } catch (err) {
    db.close();
    removeFresh();
    throw err;
  }
  db.close();
  // the old index (and its WAL, which would otherwise be read as the new one's) goes aside, whole
  let old: string | null = null;
  if (fs.existsSync(file)) {
    old = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['-wal', '-shm', '']) if (fs.existsSync(file + suffix)) fs.renameSync(file + suffix, old + suffix);
  }
  for (const suffix of ['-wal', '-shm']) fs.rmSync(fresh + suffix, { force: true });
  fs.renameSync(fresh, file);
  syncDir(abs);
  return { ...report, old_index: old };
}

/**
 * The snapshot rows of the old index that read, by id; none when it does not
 * open, is another repository's, or is older than the records (its rows of
 * snapshots forgotten since must not bring them back).
 */
function oldRows(file: string, repositoryId: string, generation: number): Map<string, Snapshot> {
  if (!fs.existsSync(file)) return new Map();
  try {
    const old = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const owner = old.prepare("SELECT value FROM meta WHERE key = 'repository'").pluck().get();
      return owner === repositoryId && indexGeneration(old) >= generation ? readableRows(old) : new Map();
    } finally {
      old.close();
    }
  } catch {
    return new Map();
  }
}

/**
 * The snapshots a rebuild keeps: every record that reads. A record that is
 * missing or does not read is written again from the old index's row where
 * one reads (the two are copies of each other); a record that reads but sits
 * under another id's name goes to its own; one that cannot be mended is
 * moved aside (`<name>.damaged`) and reported, never deleted.
 */
function gatherRecords(dir: string, rows: Map<string, Snapshot>): { snapshots: Snapshot[]; rewritten: number; damaged: string[] } {
  fs.mkdirSync(snapshotsDir(dir), { recursive: true, mode: 0o700 });
  const found = new Map<string, Snapshot>();
  const damaged: string[] = [];
  let rewritten = 0;
  const aside = (name: string) => fs.renameSync(path.join(snapshotsDir(dir), name), path.join(snapshotsDir(dir), `${name}.damaged`));
  for (const name of listRecordIds(dir)) {
    try {
      found.set(name, readRecord(dir, name));
      continue;
    } catch (err) {
      if (!(err instanceof LifeboatError)) throw err;
    }
    const own = readRecordAnyName(dir, name);
    if (own && !found.has(own.id) && !listRecordIds(dir).includes(own.id)) {
      writeRecord(dir, own);
      found.set(own.id, own);
      rewritten++;
    }
    const row = rows.get(name);
    if (row) {
      writeRecord(dir, row);
      found.set(name, row);
      rewritten++;
    } else {
      aside(name);
      if (!own) damaged.push(name);
    }
  }
  for (const [id, row] of rows) {
    if (found.has(id)) continue;
    writeRecord(dir, row);
    found.set(id, row);
    rewritten++;
  }
  return { snapshots: [...found.values()], rewritten, damaged };
}

/** A record file's content as a snapshot whatever its name says, or undefined when it does not read. */
function readRecordAnyName(dir: string, name: string): Snapshot | undefined {
  try {
    return parseRecord(fs.readFileSync(path.join(snapshotsDir(dir), name)), () => new Error('damaged'));
  } catch {
    return undefined;
  }
}

/**
 * What trees and lists of packs of the first format name, learned by opening
 * them (their trailers list no edges), so the new index can tell complete
 * subtrees from incomplete ones there too.
 */
function learnEdges(db: Database.Database, dir: string, keys: MasterKeys): void {
  const unknown = db
    .prepare(`SELECT id, type, pack, offset, length, raw_length AS rawLength FROM temp.copies c WHERE type IN (${BlobType.tree}, ${BlobType.list}) AND NOT EXISTS (SELECT 1 FROM temp.known k WHERE k.id = c.id)`)
    .all() as { id: BlobId; type: BlobType; pack: string; offset: number; length: number; rawLength: number }[];
  const addEdge = db.prepare('INSERT OR IGNORE INTO temp.edges (parent, child) VALUES (?, ?)');
  const addKnown = db.prepare('INSERT OR IGNORE INTO temp.known (id) VALUES (?)');
  for (const c of unknown) {
    if (db.prepare('SELECT 1 FROM temp.known WHERE id = ?').pluck().get(c.id)) continue;
    let refs: readonly BlobId[];
    try {
      const stored = Buffer.allocUnsafe(c.length);
      const fd = fs.openSync(packPath(dir, c.pack), 'r');
      try {
        fs.readSync(fd, stored, 0, c.length, c.offset);
      } finally {
        fs.closeSync(fd);
      }
      refs = blobRefs(c.type, unseal(keys, c.id, c.type, stored, true, c.rawLength));
    } catch (err) {
      if (err instanceof LifeboatError) continue; // a damaged copy; another may read
      throw err;
    }
    db.transaction(() => {
      addKnown.run(c.id);
      for (const r of refs) addEdge.run(c.id, r);
    })();
  }
}

/** A rebuild replaces the index under everyone: refused while a process that is not gone holds a lock in it. */
function refuseIfLocked(file: string, dir: string): void {
  if (!fs.existsSync(file)) return;
  let remaining: number;
  try {
    const old = new Database(file, { fileMustExist: true });
    try {
      remaining = removeStaleLocks(old).remaining;
    } finally {
      old.close();
    }
  } catch {
    return; // an index whose locks cannot be read holds no lock anyone can honour
  }
  if (remaining > 0) throw new RepositoryLockedError(dir, `${remaining} process(es) that are not gone; stop them (the agent included), then rebuild the index`);
}
