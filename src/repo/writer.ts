import fs from 'node:fs';
import { noSpace } from '../errors/errors.ts';
import { faultPoint } from '../util/fault.ts';
import { type BlobId, type BlobType } from './ids.ts';
import { type FinishedPack, type PackEntry, PackWriter, packPath } from './pack.ts';
import type { Repository } from './repository.ts';
import type { Store } from './store.ts';
import { INDEX_DB } from './index-db.ts';

export interface WriterStats {
  blobsNew: number;
  /** Plaintext bytes of the blobs added. */
  bytesNew: number;
  /** Bytes written to pack files, trailers included. */
  bytesStored: number;
}

/**
 * The main thread's side of a write session: it writes the blobs it seals
 * itself (trees) into its own packs, and commits the packs the workers
 * finish. Index rows go in only for packs already fsynced and in place, the
 * first two steps of the write order (pack, index, snapshot).
 */
export class BlobWriter {
  readonly stats: WriterStats = { blobsNew: 0, bytesNew: 0, bytesStored: 0 };
  /** Packs this session indexed (its own and the workers'): what a failed session may take back. */
  readonly committed: string[] = [];
  readonly #repo: Repository;
  readonly #packSize: number;
  /** Blobs in this writer's open pack, which the index cannot show yet. */
  readonly #pending = new Set<string>();
  #pack: PackWriter | undefined;

  constructor(repo: Repository, packSize: number) {
    this.#repo = repo;
    this.#packSize = packSize;
  }

  has(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#repo.hasBlob(id);
  }

  /** Returns false when the blob was already stored. `refs`: what a tree or list names. */
  add(id: BlobId, type: BlobType, stored: Uint8Array, rawLength: number, refs?: readonly BlobId[]): boolean {
    if (this.has(id)) return false;
    this.#pack ??= new PackWriter(this.#repo.dir);
    this.#pack.append(id, type, stored, rawLength, refs);
    this.#pending.add(id.toString('latin1'));
    if (this.#pack.size >= this.#packSize) this.#finish();
    return true;
  }

  /** Indexes a pack another thread wrote and fsynced; one the index refused (a full disk) is deleted, as nothing can use it. */
  commit(pack: FinishedPack): void {
    faultPoint('pack-written');
    let added: { blobs: number; rawBytes: number };
    try {
      added = commitPack(this.#repo, pack.name, pack.size, pack.entries);
    } catch (err) {
      fs.rmSync(packPath(this.#repo.dir, pack.name), { force: true });
      throw err;
    }
    this.committed.push(pack.name);
    this.stats.bytesStored += pack.size;
    // Only blobs the index did not have: another worker may have packed the same block meanwhile.
    this.stats.blobsNew += added.blobs;
    this.stats.bytesNew += added.rawBytes;
  }

  #finish(): void {
    const pack = this.#pack!;
    this.#pack = undefined;
    this.commit(pack.finish());
    this.#pending.clear();
  }

  /** Finishes the open pack so that everything added is in the index. */
  flush(): void {
    if (this.#pack) this.#finish();
  }

  /** Drops the open pack; committed packs stay (unreferenced until prune). */
  abort(): void {
    this.#pack?.abort();
    this.#pack = undefined;
    this.#pending.clear();
  }
}

/** Index rows for a finished pack, in one transaction; returns what the index did not already hold. */
export function commitPack(repo: Store, name: string, size: number, entries: readonly PackEntry[]): { blobs: number; rawBytes: number } {
  const insertPack = repo[INDEX_DB].prepare('INSERT INTO packs (name, size, created) VALUES (?, ?, ?)');
  // A row that names a pack the index no longer has is taken over: the blob was stored again because of it.
  const insertBlob = repo[INDEX_DB].prepare(
    `INSERT INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET type = excluded.type, pack = excluded.pack, offset = excluded.offset, length = excluded.length, raw_length = excluded.raw_length
     WHERE NOT EXISTS (SELECT 1 FROM packs WHERE id = blobs.pack)`,
  );
  const added = { blobs: 0, rawBytes: 0 };
  const commit = repo[INDEX_DB].transaction(() => {
    const packId = insertPack.run(name, size, new Date().toISOString()).lastInsertRowid;
    for (const e of entries) {
      if (insertBlob.run(e.id, e.type, packId, e.offset, e.length, e.rawLength).changes === 0) continue;
      added.blobs++;
      added.rawBytes += e.rawLength;
    }
  });
  try {
    commit();
  } catch (err) {
    throw noSpace(err, `the index rows of pack ${name}`);
  }
  faultPoint('pack-indexed');
  return added;
}
