import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { type MasterKeys } from './crypto.ts';
import type { BlobId, BlobType } from './ids.ts';
import { encodeTrailer, PackWriter, packPath } from './pack.ts';
import type { BlobLocation } from './repository.ts';
import { blobLocator, blobPresence } from './rows.ts';
import type { PackReport, RepoWorkerInit } from './jobs.ts';

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
  readonly #db: Database.Database;
  readonly #has: (id: BlobId) => boolean;
  readonly #locate: (id: BlobId) => BlobLocation | undefined;
  /**
   * Ids this worker packed that the index cannot show yet: its open pack's,
   * and those of finished packs until the main thread acknowledges indexing
   * them. Without the second part a block met again in that window is packed twice.
   */
  readonly #pending = new Set<string>();
  readonly #unacked = new Map<string, string[]>();
  #open: string[] = [];
  #pack: PackWriter | undefined;
  #finished: PackReport[] = [];

  constructor(init: RepoWorkerInit) {
    this.keys = { enc: Buffer.from(init.enc), mac: Buffer.from(init.mac) };
    this.level = init.level;
    this.repoDir = init.repoDir;
    this.#packSize = init.packSize;
    const db = new Database(path.join(init.repoDir, 'index.db'), { readonly: true, fileMustExist: true });
    this.#db = db;
    db.pragma('busy_timeout = 10000');
    this.#has = blobPresence(db);
    this.#locate = blobLocator(db);
  }

  /** Lets go of the index connection (the worker is about to end). */
  close(): void {
    this.#db.close();
  }

  /**
   * Runs a job's lookups in one read transaction: each lookup on its own
   * opens and ends one, most of its cost (a job of fresh data looks up every
   * block). What the main thread commits meanwhile is seen by the next job.
   */
  inOneRead<T>(job: () => T): T {
    return this.#db.transaction(job)();
  }

  /** True when the repository has the blob or this worker is writing it. */
  has(id: BlobId): boolean {
    return this.#pending.has(id.toString('latin1')) || this.#has(id);
  }

  locate(id: BlobId): BlobLocation | undefined {
    return this.#locate(id);
  }

  write(id: BlobId, type: BlobType, stored: Uint8Array, rawLength: number): void {
    this.#pack ??= new PackWriter(this.repoDir);
    this.#pack.append(id, type, stored, rawLength);
    const key = id.toString('latin1');
    this.#pending.add(key);
    this.#open.push(key);
    if (this.#pack.size >= this.#packSize) this.#finish();
  }

  #finish(): void {
    const done = this.#pack!.finish();
    this.#pack = undefined;
    this.#unacked.set(done.name, this.#open);
    this.#open = [];
    this.#finished.push({ name: done.name, size: done.size, trailer: encodeTrailer(done.entries) });
  }

  /** The main thread has indexed these packs. */
  acknowledge(packs: readonly string[]): void {
    for (const name of packs) {
      for (const key of this.#unacked.get(name) ?? []) this.#pending.delete(key);
      this.#unacked.delete(name);
    }
  }

  /** Packs finished since the last call, for the main thread to index. */
  takeFinished(): PackReport[] {
    const out = this.#finished;
    this.#finished = [];
    return out;
  }

  /**
   * Ends a write session: finishes the open pack and reports what is left.
   * The main thread indexes all of it before the snapshot, or the backup
   * fails; either way nothing here need be remembered past this point.
   */
  endSession(): PackReport[] {
    if (this.#pack) this.#finish();
    this.#forget();
    return this.takeFinished();
  }

  /**
   * Drops a failed session: the open pack is deleted, and so are finished ones
   * not yet reported (no index row names them, so nothing can use them: on a
   * full disk this is the room given back). Reported ones are left to prune.
   */
  reset(): void {
    this.#pack?.abort();
    this.#pack = undefined;
    for (const p of this.#finished) fs.rmSync(packPath(this.repoDir, p.name), { force: true });
    this.#finished = [];
    this.#forget();
  }

  #forget(): void {
    this.#pending.clear();
    this.#unacked.clear();
    this.#open = [];
  }
}
