import { CorruptDataError } from '../errors/errors.ts';
import { unseal } from './crypto.ts';
import { blobRefs } from './refs.ts';
import type { BlobId, BlobType } from './ids.ts';
import { PackWriter } from './pack.ts';
import type { Repository } from './repository.ts';
import { INDEX_DB } from './index-db.ts';

export interface StoredBlob {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly rawLength: number;
  /** As sealed: from a replica, which holds the same bytes the repository once wrote. */
  readonly stored: Buffer;
}

/**
 * Puts good copies of damaged or missing blobs back into the repository: each
 * must authenticate under the repository's key and hash to its id (so a copy
 * from anywhere, a peer included, is trusted only once proven), goes into a
 * new pack, and only once that pack is fsynced does the index point at it.
 * The damaged bytes stay where they were, unreferenced, until prune repacks.
 */
export class BlobMender {
  readonly #repo: Repository;
  readonly #pack: PackWriter;
  readonly #taken = new Set<string>();

  constructor(repo: Repository) {
    this.#repo = repo;
    this.#pack = new PackWriter(repo.dir);
  }

  /** Takes a copy if it proves itself; false (and nothing written) otherwise. */
  offer(b: StoredBlob): boolean {
    const key = b.id.toString('latin1');
    if (this.#taken.has(key)) return true;
    let refs: readonly BlobId[];
    try {
      refs = blobRefs(b.type, unseal(this.#repo.keys, b.id, b.type, b.stored, true, b.rawLength));
    } catch (err) {
      if (err instanceof CorruptDataError) return false;
      throw err;
    }
    this.#pack.append(b.id, b.type, b.stored, b.rawLength, refs);
    this.#taken.add(key);
    return true;
  }

  has(id: BlobId): boolean {
    return this.#taken.has(id.toString('latin1'));
  }

  /** Writes the pack and points the index at it; returns how many blobs were mended. */
  async finish(): Promise<number> {
    if (this.#taken.size === 0) {
      this.#pack.abort();
      return 0;
    }
    const done = await this.#pack.finishAsync();
    const db = this.#repo[INDEX_DB];
    const upsert = db.prepare(
      `INSERT INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET type = excluded.type, pack = excluded.pack, offset = excluded.offset, length = excluded.length, raw_length = excluded.raw_length`,
    );
    db.transaction(() => {
      const packId = db.prepare('INSERT INTO packs (name, size, created) VALUES (?, ?, ?)').run(done.name, done.size, new Date().toISOString()).lastInsertRowid;
      for (const e of done.entries) upsert.run(e.id, e.type, packId, e.offset, e.length, e.rawLength);
      // a lost pack whose every blob came back is no longer the index's
      db.prepare('DELETE FROM packs WHERE id NOT IN (SELECT pack FROM blobs)').run();
    })();
    this.#repo.dropPackHandles();
    return done.entries.length;
  }

  abort(): void {
    this.#pack.abort();
  }
}
