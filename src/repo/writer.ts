import { type BlobId, type BlobType } from './ids.ts';
import { type PackEntry, PackWriter } from './pack.ts';
import type { Repository } from './repository.ts';

export interface WriterStats {
  blobsNew: number;
  /** Plaintext bytes of the blobs added. */
  bytesNew: number;
  /** Bytes written to pack files, trailers included. */
  bytesStored: number;
}

/**
 * Appends sealed blobs to packs of about `packSize` bytes and commits each
 * pack's index rows only after the pack is fsynced and renamed into place:
 * the first two steps of the write order (pack, index, snapshot). Blobs in a
 * pack not yet committed are remembered here, so dedup sees them too.
 */
export class BlobWriter {
  readonly stats: WriterStats = { blobsNew: 0, bytesNew: 0, bytesStored: 0 };
  readonly #repo: Repository;
  readonly #packSize: number;
  readonly #pending = new Set<string>();
  #current: Promise<PackWriter> | undefined;
  #finishing: Promise<void>[] = [];

  constructor(repo: Repository, packSize: number) {
    this.#repo = repo;
    this.#packSize = packSize;
  }

  has(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#repo.hasBlob(id);
  }

  /** Returns false when the blob was already stored (by this writer or before). */
  async add(id: BlobId, type: BlobType, stored: Buffer, rawLength: number): Promise<boolean> {
    let pack: PackWriter;
    for (;;) {
      const next = (this.#current ??= PackWriter.create(this.#repo.dir));
      pack = await next;
      if (next === this.#current) break; // another add rotated the pack while this one waited
    }
    const key = id.toString('latin1');
    if (this.#pending.has(key) || this.#repo.hasBlob(id)) return false;
    this.#pending.add(key);
    pack.append(id, type, stored, rawLength);
    this.stats.blobsNew++;
    this.stats.bytesNew += rawLength;
    if (pack.size >= this.#packSize) {
      this.#current = undefined;
      this.#finishing.push(this.#commit(pack));
    }
    return true;
  }

  async #commit(pack: PackWriter): Promise<void> {
    const done = await pack.finish();
    this.stats.bytesStored += done.size;
    commitPack(this.#repo, done.name, done.size, done.entries);
    for (const e of done.entries) this.#pending.delete(e.id.toString('latin1'));
  }

  /** Finishes the open pack and waits until every pack written so far is in the index. */
  async flush(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    if (current) {
      const pack = await current;
      if (pack.entries.length > 0) this.#finishing.push(this.#commit(pack));
      else await pack.abort();
    }
    const all = this.#finishing;
    this.#finishing = [];
    await Promise.all(all);
  }

  /** Drops the open pack; committed packs stay (unreferenced until prune). */
  async abort(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await Promise.allSettled(this.#finishing);
    if (current) await (await current).abort();
  }
}

/** Index rows for a finished pack, in one transaction. */
export function commitPack(repo: Repository, name: string, size: number, entries: readonly PackEntry[]): void {
  const insertPack = repo.db.prepare('INSERT INTO packs (name, size, created) VALUES (?, ?, ?)');
  const insertBlob = repo.db.prepare(
    'INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)',
  );
  repo.db.transaction(() => {
    const packId = insertPack.run(name, size, new Date().toISOString()).lastInsertRowid;
    for (const e of entries) insertBlob.run(e.id, e.type, packId, e.offset, e.length, e.rawLength);
  })();
}
