import type { Db } from '../db/database.ts';
import { CorruptDataError, CorruptIndexError, LifeboatError } from '../errors/errors.ts';
import { unseal } from './crypto.ts';
import { type BlobId, type BlobType, BlobType as BT, toHex } from './ids.ts';
import { listPackFiles, type PackEntry, packPath, readPackTrailerAsync } from './pack.ts';
import type { Repository } from './repository.ts';
import { packRow } from './rows.ts';
import type { Store } from './store.ts';
import { INDEX_DB } from './index-db.ts';

/** Trailers read at once: enough to keep a disk (or a network file system) busy. */
const PARALLEL = 8;

export interface ScannedPack {
  readonly name: string;
  readonly size: number;
}

export interface PackScan {
  /** Finished pack files whose trailer reads. */
  readonly packs: readonly ScannedPack[];
  /**
   * Pack files whose trailer does not read: never deleted. Their blobs are
   * taken from the index's rows, where it has any.
   */
  readonly damaged: readonly { name: string; size: number; message: string }[];
  /** Temporary files of interrupted pack writes (`<name>.tmp`). */
  readonly temporary: readonly string[];
}

/**
 * What the pack files hold, read from their trailers into temporary tables of
 * the connection: the truth that prune decides by and the index is rebuilt
 * from, whatever the index says.
 *
 *   temp.copies(id, pack, type, offset, length, raw_length)  every copy of every blob
 *   temp.edges(parent, child)   what each tree and list names, from trailers that say (LBP2)
 *   temp.known(id)              the trees and lists whose edges those trailers give in full
 *
 * `fallback` gives the entries the index has for a pack whose trailer is
 * damaged, so its blobs stay reachable.
 */
/** How far a long repository operation has come: `done` of `total` in its current phase. */
export type PhaseProgress = (phase: string, done: number, total: number) => void;

export async function scanPacks(db: Db, dir: string, fallback?: (pack: string) => readonly PackEntry[], onProgress?: PhaseProgress): Promise<PackScan> {
  db.exec(`
    DROP TABLE IF EXISTS temp.copies; DROP TABLE IF EXISTS temp.edges; DROP TABLE IF EXISTS temp.known;
    CREATE TEMP TABLE copies (id BLOB NOT NULL, pack TEXT NOT NULL, type INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw_length INTEGER NOT NULL, PRIMARY KEY (id, pack)) WITHOUT ROWID;
    CREATE INDEX temp.copies_by_pack ON copies (pack);
    CREATE TEMP TABLE edges (parent BLOB NOT NULL, child BLOB NOT NULL, PRIMARY KEY (parent, child)) WITHOUT ROWID;
    CREATE TEMP TABLE known (id BLOB PRIMARY KEY) WITHOUT ROWID;
  `);
  const addCopy = db.prepare('INSERT OR IGNORE INTO temp.copies (id, pack, type, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)');
  const addEdge = db.prepare('INSERT OR IGNORE INTO temp.edges (parent, child) VALUES (?, ?)');
  const addKnown = db.prepare('INSERT OR IGNORE INTO temp.known (id) VALUES (?)');
  const record = db.transaction((name: string, entries: readonly PackEntry[]) => {
    for (const e of entries) {
      addCopy.run(e.id, name, e.type, e.offset, e.length, e.rawLength);
      if (e.refs === undefined || (e.type !== BT.tree && e.type !== BT.list)) continue;
      addKnown.run(e.id);
      for (const child of e.refs) addEdge.run(e.id, child);
    }
  });

  const names = await listPackFiles(dir);
  const temporary = names.filter((n) => n.endsWith('.tmp'));
  const finished = names.filter((n) => !n.endsWith('.tmp'));
  const packs: ScannedPack[] = [];
  const damaged: { name: string; size: number; message: string }[] = [];
  let next = 0;
  let scanned = 0;
  const worker = async () => {
    while (next < finished.length) {
      const name = finished[next++]!;
      onProgress?.('scanned', scanned++, finished.length);
      try {
        const { size, entries } = await readPackTrailerAsync(packPath(dir, name), name);
        record(name, entries);
        packs.push({ name, size });
      } catch (err) {
        if (!(err instanceof LifeboatError) && (err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        if (!(err instanceof LifeboatError)) throw err;
        const entries = fallback?.(name) ?? [];
        record(name, entries);
        damaged.push({ name, size: entries.reduce((n, e) => Math.max(n, e.offset + e.length), 0), message: err.message });
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  packs.sort((a, b) => (a.name < b.name ? -1 : 1));
  return { packs, damaged, temporary };
}

export function dropScan(db: Db): void {
  db.exec('DROP TABLE IF EXISTS temp.copies; DROP TABLE IF EXISTS temp.edges; DROP TABLE IF EXISTS temp.known;');
}

/** The entries the index holds for a pack, as a trailer would give them (edges unknown); none when its rows do not read. */
export function indexedEntries(store: Store): (pack: string) => PackEntry[] {
  return (pack) => {
    try {
      return store.blobsInPack(pack);
    } catch {
      return [];
    }
  };
}

/** The index's packs, checked rows: name and size. */
export function indexedPacks(store: Store): { id: number; name: string; size: number }[] {
  return (store[INDEX_DB].prepare('SELECT id, name, size FROM packs ORDER BY id').all() as Record<string, unknown>[]).map(packRow);
}

/**
 * Loads a blob from the scanned copies, trying each until one authenticates:
 * a walk that does not depend on the index.
 */
export function scannedLoader(repo: Repository): (id: BlobId, type: BlobType) => Promise<Buffer> {
  const copies = repo[INDEX_DB].prepare('SELECT pack, offset, length, raw_length AS rawLength FROM temp.copies WHERE id = ? AND type = ?');
  return async (id, type) => {
    let damage: unknown;
    for (const c of copies.all(id, type) as { pack: string; offset: number; length: number; rawLength: number }[]) {
      try {
        return unseal(repo.keys, id, type, await repo.readStored(c), false, c.rawLength);
      } catch (err) {
        if (!(err instanceof CorruptDataError || err instanceof CorruptIndexError)) throw err;
        damage ??= err;
      }
    }
    if (damage) throw damage;
    throw new CorruptIndexError(`blob ${toHex(id).slice(0, 16)} is in no pack`);
  };
}
