import { CorruptDataError, CorruptIndexError, LifeboatError } from '../errors/errors.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { type CheckReply, checkPackOn } from './jobs.ts';
import type { LoadBlob } from './content.ts';
import { type BlobId, toHex } from './ids.ts';
import { dropScan, indexedEntries, indexedPacks, scanPacks, scannedLoader } from './pack-scan.ts';
import type { Repository } from './repository.ts';
import { shortId, type Snapshot } from './snapshot.ts';
import { listRecordIds, readRecord } from './snapshot-record.ts';
import { listSnapshots, loadSnapshotMeta } from './snapshots.ts';
import { walkSnapshot } from './walk.ts';
import { INDEX_DB } from './index-db.ts';

export interface Problem {
  readonly kind:
    | 'missing-pack'
    | 'damaged-pack'
    | 'index-mismatch'
    | 'not-indexed'
    | 'damaged-index'
    | 'damaged-record'
    | 'missing-blob'
    | 'damaged-tree'
    | 'damaged-blob';
  readonly message: string;
  /** The blob (64 hex), for damaged and missing blobs: what `repair` fetches. */
  readonly blob?: string;
  /** The pack, for missing and damaged packs: `repair` fetches every blob the index places there. */
  readonly pack?: string;
  /** Where the damage shows: the snapshots and file paths that need the blob. */
  readonly affects?: readonly { snapshot: string; path: string }[];
}

/** Damage to the index alone, which `repair --rebuild-index` mends from the packs and records. */
export const INDEX_PROBLEMS: ReadonlySet<Problem['kind']> = new Set(['index-mismatch', 'not-indexed', 'damaged-index']);

export interface VerifyReport {
  readonly snapshots: number;
  readonly packs: number;
  readonly blobs: number;
  /** Tree and list blobs read. */
  readonly trees: number;
  readonly blobs_read: number;
  /** Pack files no index row names: leftovers of an interrupted write (prune removes them), or what a damaged index lost. */
  readonly unreferenced_packs: number;
  readonly problems: readonly Problem[];
}

/** Examples named in one problem's message, at most. */
const SAMPLE = 3;

/**
 * Checks the repository as restore will use it, against the files
 * themselves: the index (SQLite's own check, its rows against the packs'
 * trailers, its snapshot rows against the records); every snapshot's trees;
 * every blob a snapshot needs, which must be indexed in a pack that holds it
 * (what the index alone says does not count). With readData, every pack on
 * disk, indexed or not, is read and every blob in it authenticated and
 * re-hashed, and a needed blob whose indexed copy fails is traced to the
 * snapshots and files that use it.
 */
export async function verify(
  repo: Repository,
  pool: WorkerPool,
  opts: { readData: boolean; onProgress?: (done: { packs: number; bytes: number }, total: { packs: number; bytes: number }) => void },
): Promise<VerifyReport> {
  const lock = repo.lock('shared');
  const db = repo[INDEX_DB];
  try {
    const problems: Problem[] = [];
    const integrity = db.prepare('PRAGMA quick_check').pluck().all() as string[];
    if (integrity.length !== 1 || integrity[0] !== 'ok') {
      problems.push({ kind: 'damaged-index', message: `the index is damaged: ${integrity.slice(0, SAMPLE).join('; ')}` });
    }
    const scan = await scanPacks(db, repo.dir, indexedEntries(repo));
    const onDisk = new Map(scan.packs.map((p) => [p.name, p.size]));
    const damagedPacks = new Set(scan.damaged.map((p) => p.name));
    for (const p of scan.damaged) problems.push({ kind: 'damaged-pack', message: p.message, pack: p.name });
    const indexed = indexedPacks(repo);
    for (const pack of indexed) {
      const size = onDisk.get(pack.name);
      if (size === undefined && !damagedPacks.has(pack.name)) problems.push({ kind: 'missing-pack', message: `pack ${pack.name} is missing`, pack: pack.name });
      else if (size !== undefined && size !== pack.size) {
        problems.push({ kind: 'damaged-pack', message: `pack ${pack.name} is ${size} bytes, the index says ${pack.size}`, pack: pack.name });
      }
    }
    const indexedNames = new Set(indexed.map((p) => p.name));
    const unreferenced = scan.packs.filter((p) => !indexedNames.has(p.name)).length;

    // index rows that name no copy: a restore through them would read the wrong bytes
    const wrong = db
      .prepare(
        `SELECT b.id FROM blobs b JOIN packs p ON p.id = b.pack WHERE NOT EXISTS (
           SELECT 1 FROM temp.copies c WHERE c.id = b.id AND c.pack = p.name AND c.offset = b.offset AND c.length = b.length AND c.type = b.type AND c.raw_length = b.raw_length)
           AND p.name IN (SELECT pack FROM temp.copies)`,
      )
      .pluck()
      .all() as Buffer[];
    if (wrong.length > 0) {
      problems.push({ kind: 'index-mismatch', message: `${wrong.length} index rows disagree with their pack's trailer (${wrong.slice(0, SAMPLE).map((id) => toHex(id).slice(0, 16)).join(', ')})` });
    }

    // the records are what exists; the rows must say the same
    const snapshots: Snapshot[] = [];
    for (const id of listRecordIds(repo.dir)) {
      try {
        snapshots.push(readRecord(repo.dir, id));
      } catch (err) {
        if (!(err instanceof LifeboatError)) throw err;
        problems.push({ kind: 'damaged-record', message: err.message });
      }
    }
    const rows = new Set(listSnapshots(repo).map((s) => s.id));
    const records = new Set(snapshots.map((s) => s.id));
    const unlisted = [...records].filter((id) => !rows.has(id));
    if (unlisted.length > 0) problems.push({ kind: 'index-mismatch', message: `the index lists ${unlisted.length} snapshots fewer than the repository holds (${unlisted.slice(0, SAMPLE).map(shortId).join(', ')})` });

    // every snapshot, walked as restore walks it (through the index), the packs' copies standing in where the index fails
    const viaPacks = scannedLoader(repo);
    const notIndexed = new Set<string>();
    const damagedBlobs = new Set<string>();
    const load: LoadBlob = async (id, type) => {
      try {
        return await repo.loadBlob(id, type);
      } catch (err) {
        if (!(err instanceof CorruptIndexError || err instanceof CorruptDataError)) throw err;
        const plain = await viaPacks(id, type);
        (err instanceof CorruptDataError ? damagedBlobs : notIndexed).add(toHex(id));
        return plain;
      }
    };
    db.exec('DROP TABLE IF EXISTS temp.needed; CREATE TEMP TABLE needed (id BLOB PRIMARY KEY) WITHOUT ROWID;');
    const need = db.prepare('INSERT OR IGNORE INTO temp.needed (id) VALUES (?)');
    const seenTrees = new Set<string>();
    const missing = new Set<string>();
    const inPacks = db.prepare('SELECT 1 FROM temp.copies WHERE id = ?').pluck();
    let blobs = 0;
    for (const s of snapshots) {
      try {
        if (s.meta) {
          need.run(s.meta);
          await loadSnapshotMeta({ loadBlob: load }, s);
        }
        await walkSnapshot(load, s, {
          enter: (id) => {
            const key = id.toString('latin1');
            if (seenTrees.has(key)) return false;
            seenTrees.add(key);
            need.run(id);
            return true;
          },
          blocks: (ids) => {
            for (const hex of ids) {
              blobs++;
              const id = Buffer.from(hex, 'hex') as BlobId;
              need.run(id);
              if (repo.hasBlob(id)) continue;
              if (inPacks.get(id)) notIndexed.add(hex);
              else missing.add(hex);
            }
          },
        });
      } catch (err) {
        if (!(err instanceof LifeboatError)) throw err;
        problems.push({ kind: 'damaged-tree', message: `snapshot ${shortId(s.id)}: ${err.message}` });
      }
    }
    if (notIndexed.size > 0) {
      const sample = [...notIndexed].slice(0, SAMPLE).map((h) => h.slice(0, 16));
      problems.push({ kind: 'not-indexed', message: `${notIndexed.size} blobs that snapshots need are in the packs but not in the index (${sample.join(', ')}): rebuild it with \`lifeboat repair --rebuild-index\`` });
    }

    let blobsRead = 0;
    if (opts.readData) {
      const total = { packs: scan.packs.length, bytes: scan.packs.reduce((n, p) => n + p.size, 0) };
      const done = { packs: 0, bytes: 0 };
      const checks: Promise<CheckReply & { pack: string }>[] = scan.packs.map((p) =>
        checkPackOn(pool, p.name).then((c) => {
          done.packs++;
          done.bytes += p.size;
          opts.onProgress?.(done, total);
          return { ...c, pack: p.name };
        }),
      );
      const isNeeded = db.prepare('SELECT 1 FROM temp.needed WHERE id = ?').pluck();
      for (const c of await Promise.all(checks)) {
        blobsRead += c.blobs;
        for (const hex of c.bad) {
          const id = Buffer.from(hex, 'hex') as BlobId;
          // a needed blob whose indexed copy is bad: restore would fail on it (a bad spare copy waits for prune)
          if (isNeeded.get(id) && repo.locate(id)?.pack === c.pack) damagedBlobs.add(hex);
        }
      }
    }

    if (missing.size > 0 || damagedBlobs.size > 0) {
      const where = await traceBlobs(load, snapshots, new Set([...missing, ...damagedBlobs]));
      for (const hex of missing) problems.push({ kind: 'missing-blob', message: `block ${hex.slice(0, 16)} is not in the repository`, blob: hex, affects: where.get(hex) ?? [] });
      for (const hex of damagedBlobs) {
        problems.push({ kind: 'damaged-blob', message: `blob ${hex.slice(0, 16)} is damaged`, blob: hex, affects: where.get(hex) ?? [] });
      }
    }
    return {
      snapshots: snapshots.length,
      packs: scan.packs.length + scan.damaged.length,
      blobs,
      trees: seenTrees.size,
      blobs_read: blobsRead,
      unreferenced_packs: unreferenced,
      problems,
    };
  } finally {
    db.exec('DROP TABLE IF EXISTS temp.needed');
    dropScan(db);
    lock.release();
  }
}

/** Walks every snapshot (no tree dedup: each path counts) to say where the given blobs are used. */
async function traceBlobs(load: LoadBlob, snapshots: readonly Snapshot[], hexIds: Set<string>): Promise<Map<string, { snapshot: string; path: string }[]>> {
  const where = new Map<string, { snapshot: string; path: string }[]>();
  const note = (hex: string, snapshot: string, p: string) => where.set(hex, [...(where.get(hex) ?? []), { snapshot, path: p }]);
  for (const s of snapshots) {
    if (s.meta && hexIds.has(toHex(s.meta))) note(toHex(s.meta), shortId(s.id), '(container specs and images)');
    await walkSnapshot(load, s, {
      enter: (id, _type, p) => {
        const hex = toHex(id);
        if (hexIds.has(hex)) note(hex, shortId(s.id), p || '/');
        return true;
      },
      blocks: (ids, p) => {
        for (const hex of ids) if (hexIds.has(hex)) note(hex, shortId(s.id), p);
      },
    }).catch(() => {});
  }
  return where;
}
