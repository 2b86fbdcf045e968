import fsp from 'node:fs/promises';
import { LifeboatError } from '../errors/errors.ts';
import { type BlobId, toHex } from './ids.ts';
import { listPackFiles, type PackEntry, packPath, readPackTrailer } from './pack.ts';
import type { Repository } from './repository.ts';
import { shortId } from './snapshot.ts';
import { listSnapshots, loadSnapshotMeta } from './snapshots.ts';
import { blobRow, packRow } from './rows.ts';
import { walkSnapshot } from './walk.ts';
import type { RepoWorkers } from '../workers/pool.ts';
import type { CheckReply } from '../workers/protocol.ts';

export interface Problem {
  readonly kind: 'missing-pack' | 'damaged-pack' | 'index-mismatch' | 'missing-blob' | 'damaged-tree' | 'damaged-blob';
  readonly message: string;
  /** The blob (64 hex), for damaged and missing blobs: what `repair` fetches. */
  readonly blob?: string;
  /** The pack, for missing and damaged packs: `repair` fetches every blob the index places there. */
  readonly pack?: string;
  /** Where the damage shows: the snapshots and file paths that need the blob. */
  readonly affects?: readonly { snapshot: string; path: string }[];
}

export interface VerifyReport {
  readonly snapshots: number;
  readonly packs: number;
  readonly blobs: number;
  /** Tree and list blobs read. */
  readonly trees: number;
  readonly blobs_read: number;
  /** Pack files no index row names: leftovers of an interrupted write, removed by prune. */
  readonly unreferenced_packs: number;
  readonly problems: readonly Problem[];
}

/**
 * Structure: every indexed pack exists with the trailer the index expects,
 * every snapshot's trees load and authenticate, every block they name is
 * indexed. With readData, every blob of every pack is decrypted and
 * re-hashed against its id, and damage is traced to snapshot and file.
 */
export async function verify(repo: Repository, pool: RepoWorkers, opts: { readData: boolean }): Promise<VerifyReport> {
  const lock = repo.lock('shared');
  try {
    const problems: Problem[] = [];
    const packs = (repo.db.prepare('SELECT id, name, size FROM packs ORDER BY id').all() as Record<string, unknown>[]).map(packRow);
    const entriesOf = repo.db.prepare('SELECT id, type, offset, length, raw_length AS rawLength FROM blobs WHERE pack = ? ORDER BY offset');
    const unreferenced = await countUnreferencedPacks(repo, new Set(packs.map((p) => p.name)));
    const checks: Promise<CheckReply & { pack: string }>[] = [];
    for (const pack of packs) {
      const file = packPath(repo.dir, pack.name);
      const size = await fsp.stat(file).then((s) => s.size, () => -1);
      if (size < 0) {
        problems.push({ kind: 'missing-pack', message: `pack ${pack.name} is missing`, pack: pack.name });
        continue;
      }
      if (size !== pack.size) {
        problems.push({ kind: 'damaged-pack', message: `pack ${pack.name} is ${size} bytes, the index says ${pack.size}`, pack: pack.name });
        continue;
      }
      let trailer: PackEntry[];
      try {
        trailer = readPackTrailer(file, pack.name);
      } catch (err) {
        if (!(err instanceof LifeboatError)) throw err;
        problems.push({ kind: 'damaged-pack', message: err.message, pack: pack.name });
        continue;
      }
      const byId = new Map(trailer.map((e) => [e.id.toString('latin1'), e]));
      const indexed = (entriesOf.all(pack.id) as Record<string, unknown>[]).map((r) => blobRow(r));
      for (const row of indexed) {
        const t = byId.get(row.id.toString('latin1'));
        if (!t || t.offset !== row.offset || t.length !== row.length || t.type !== row.type) {
          problems.push({ kind: 'index-mismatch', message: `blob ${toHex(row.id).slice(0, 16)}: index and pack ${pack.name} disagree` });
        }
      }
      if (opts.readData) checks.push(pool.check(pack.name).then((c) => ({ ...c, pack: pack.name })));
    }

    const damagedBlobs = new Set<string>();
    let blobsRead = 0;
    for (const c of await Promise.all(checks)) {
      blobsRead += c.blobs;
      // a damaged copy the index no longer uses (repair pointed it elsewhere) waits for prune; it is not a problem
      for (const hex of c.bad) if (repo.locate(Buffer.from(hex, 'hex') as BlobId)?.pack === c.pack) damagedBlobs.add(hex);
    }

    const snapshots = listSnapshots(repo);
    const seenTrees = new Set<string>();
    const missing = new Set<string>();
    let blobs = 0;
    for (const s of snapshots) {
      try {
        await loadSnapshotMeta(repo, s);
        await walkSnapshot(repo, s, {
          enter: (id) => {
            const key = id.toString('latin1');
            if (seenTrees.has(key)) return false;
            seenTrees.add(key);
            return true;
          },
          blocks: (ids) => {
            for (const hex of ids) {
              blobs++;
              if (!repo.hasBlob(Buffer.from(hex, 'hex') as BlobId)) missing.add(hex);
            }
          },
        });
      } catch (err) {
        if (!(err instanceof LifeboatError)) throw err;
        problems.push({ kind: 'damaged-tree', message: `snapshot ${shortId(s.id)}: ${err.message}` });
      }
    }

    if (missing.size > 0 || damagedBlobs.size > 0) {
      const where = await traceBlobs(repo, new Set([...missing, ...damagedBlobs]));
      for (const hex of missing) problems.push({ kind: 'missing-blob', message: `block ${hex.slice(0, 16)} is not in the repository`, blob: hex, affects: where.get(hex) ?? [] });
      for (const hex of damagedBlobs) {
        problems.push({ kind: 'damaged-blob', message: `blob ${hex.slice(0, 16)} is damaged`, blob: hex, affects: where.get(hex) ?? [] });
      }
    }
    return {
      snapshots: snapshots.length,
      packs: packs.length,
      blobs,
      trees: seenTrees.size,
      blobs_read: blobsRead,
      unreferenced_packs: unreferenced,
      problems,
    };
  } finally {
    lock.release();
  }
}

/** Walks every snapshot (no tree dedup: each path counts) to say where the given blobs are used. */
async function traceBlobs(repo: Repository, hexIds: Set<string>): Promise<Map<string, { snapshot: string; path: string }[]>> {
  const where = new Map<string, { snapshot: string; path: string }[]>();
  const note = (hex: string, snapshot: string, p: string) => where.set(hex, [...(where.get(hex) ?? []), { snapshot, path: p }]);
  for (const s of listSnapshots(repo)) {
    await walkSnapshot(repo, s, {
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

async function countUnreferencedPacks(repo: Repository, indexed: Set<string>): Promise<number> {
  let n = 0;
  for (const name of await listPackFiles(repo.dir)) if (!indexed.has(name)) n++;
  return n;
}
