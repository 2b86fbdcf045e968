import path from 'node:path';
import Database from 'better-sqlite3';
import { type MasterKeys } from '../repo/crypto.ts';
import type { BlobId, BlobType } from '../repo/ids.ts';
import { encodeTrailer, PackWriter } from '../repo/pack.ts';
import type { BlobLocation } from '../repo/repository.ts';
import type { PackReport, WorkerInit } from './protocol.ts';

/**
 * What a task on a worker thread may use: the keys, a read-only view of the
 * index (WAL lets it read while the main thread commits), pack descriptors for
 * reading, and this worker's own pack for writing.
 */
export class WorkerContext {
  readonly keys: MasterKeys;
  readonly level: number;
  readonly repoDir: string;
  readonly #packSize: number;
  readonly #has: Database.Statement;
  readonly #locate: Database.Statement;
  /** Ids in this worker's open pack: the index cannot show them yet. */
  readonly #pending = new Set<string>();
  #pack: PackWriter | undefined;
  #finished: PackReport[] = [];

  constructor(init: WorkerInit) {
    this.keys = { enc: Buffer.from(init.enc), mac: Buffer.from(init.mac) };
    this.level = init.level;
    this.repoDir = init.repoDir;
    this.#packSize = init.packSize;
    const db = new Database(path.join(init.repoDir, 'index.db'), { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    this.#has = db.prepare('SELECT 1 FROM blobs WHERE id = ?').pluck();
    this.#locate = db.prepare(
      `SELECT b.type AS type, p.name AS pack, b.offset AS offset, b.length AS length, b.raw_length AS rawLength
       FROM blobs b JOIN packs p ON p.id = b.pack WHERE b.id = ?`,
    );
  }

  /** True when the repository has the blob or this worker is writing it. */
  has(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#has.get(id) !== undefined;
  }

  locate(id: BlobId): BlobLocation | undefined {
    return this.#locate.get(id) as BlobLocation | undefined;
  }

  write(id: BlobId, type: BlobType, stored: Uint8Array, rawLength: number): void {
    this.#pack ??= new PackWriter(this.repoDir);
    this.#pack.append(id, type, stored, rawLength);
    this.#pending.add(id.toString('latin1'));
    if (this.#pack.size >= this.#packSize) this.#finish();
  }

  #finish(): void {
    const done = this.#pack!.finish();
    this.#pack = undefined;
    this.#pending.clear();
    this.#finished.push({ name: done.name, size: done.size, trailer: encodeTrailer(done.entries) });
  }

  /** Packs finished since the last call, for the main thread to index. With `all`, the open pack too. */
  takeFinished(all: boolean): PackReport[] {
    if (all && this.#pack) this.#finish();
    const out = this.#finished;
    this.#finished = [];
    return out;
  }
}
