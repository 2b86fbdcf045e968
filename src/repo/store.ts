import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { type Db, openDatabase } from '../catalog/database.ts';
import { CorruptIndexError, NotARepositoryError } from '../errors/errors.ts';
import { type BlobId, type BlobType, MAX_STORED_BLOB } from './ids.ts';
import { type LockKind, RepositoryLock } from './lock.ts';
import { packPath } from './pack.ts';
import { blobLocator } from './rows.ts';
import { repositoryMigrations } from './schema.ts';

export const FORMAT_VERSION = 1;

export const repositoryConfigSchema = z.strictObject({
  lifeboat_repository: z.literal(FORMAT_VERSION),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  created: z.string().max(64),
});
export type RepositoryConfig = z.infer<typeof repositoryConfigSchema>;

export interface BlobLocation {
  readonly type: BlobType;
  readonly pack: string;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/**
 * A repository directory without its keys: config, index, packs and locks.
 * This is all a peer holding a replica ever opens (it never has the
 * password), and what prune, pack writes and sealed-blob reads need.
 * Repository adds the keys.
 *
 *   config.json   format version and repository id (clear)
 *   keys/*.json   the master keys, each file wrapped by one password
 *   index.db      blob index, packs, snapshots, locks (SQLite)
 *   packs/xx/*    pack files
 */
export class Store {
  readonly dir: string;
  readonly id: string;
  readonly db: Db;
  readonly #locate: (id: Buffer) => BlobLocation | undefined;
  readonly #has: (id: Buffer) => unknown;
  readonly #fds = new Map<string, number>();

  protected constructor(dir: string, id: string, db: Db) {
    this.dir = dir;
    this.id = id;
    this.db = db;
    this.#locate = blobLocator(db);
    const has = db.prepare('SELECT 1 FROM blobs WHERE id = ?').pluck();
    this.#has = (blob) => has.get(blob);
  }

  /** Opens the store of an existing repository, keys untouched. */
  static openStore(dir: string): Store {
    const abs = path.resolve(dir);
    return new Store(abs, readRepositoryConfig(abs).id, openIndex(abs));
  }

  lock(kind: LockKind): RepositoryLock {
    return RepositoryLock.acquire(this.db, kind, this.dir);
  }

  hasBlob(id: BlobId): boolean {
    return this.#has(id) !== undefined;
  }

  locate(id: BlobId): BlobLocation | undefined {
    return this.#locate(id);
  }

  /**
   * Raw stored bytes of a blob, still sealed. Reads share one descriptor per
   * pack. Into `into` when it is large enough (a view of it is returned): a
   * reader of many runs reuses its buffers rather than fault in fresh pages.
   */
  async readStored(loc: Pick<BlobLocation, 'pack' | 'offset' | 'length'>, into?: Buffer): Promise<Buffer> {
    if (loc.length > MAX_STORED_BLOB || loc.length < 0) throw new CorruptIndexError(`the index gives a blob in pack ${loc.pack} ${loc.length} bytes, more than any blob may have`);
    const buf = into && into.length >= loc.length ? into.subarray(0, loc.length) : Buffer.allocUnsafe(loc.length);
    const fd = this.#packFd(loc.pack);
    const { bytesRead } = await new Promise<{ bytesRead: number }>((resolve, reject) =>
      fs.read(fd, buf, 0, loc.length, loc.offset, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead }))),
    );
    if (bytesRead !== loc.length) {
      throw new CorruptIndexError(`pack ${loc.pack} is shorter than the index says (blob at ${loc.offset})`);
    }
    return buf;
  }

  #packFd(pack: string): number {
    let fd = this.#fds.get(pack);
    if (fd === undefined) {
      try {
        fd = fs.openSync(packPath(this.dir, pack), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new CorruptIndexError(`pack ${pack} named by the index is missing`);
        }
        throw err;
      }
      if (this.#fds.size >= 64) this.#closeFds();
      this.#fds.set(pack, fd);
    }
    return fd;
  }

  #closeFds(): void {
    for (const fd of this.#fds.values()) fs.closeSync(fd);
    this.#fds.clear();
  }

  /** Forgets cached pack descriptors, after prune replaced packs. */
  dropPackHandles(): void {
    this.#closeFds();
  }

  close(): void {
    this.#closeFds();
    this.db.close();
  }
}

/** config.json, checked: a directory without a valid one is not a repository. */
export function readRepositoryConfig(dir: string): RepositoryConfig {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NotARepositoryError(dir, code === 'ENOENT' ? 'no config.json' : `config.json unreadable (${code})`);
  }
  try {
    return repositoryConfigSchema.parse(JSON.parse(text));
  } catch {
    throw new NotARepositoryError(dir, 'config.json is malformed');
  }
}

/** Opens index.db, which must exist (init makes it), and probes it so damage shows here with its code. */
export function openIndex(dir: string, create = false): Db {
  const file = path.join(dir, 'index.db');
  if (!create && !fs.existsSync(file)) {
    throw new CorruptIndexError(`repository ${dir} has lost its index (index.db is missing)`);
  }
  const db = openDatabase(file, { migrations: repositoryMigrations, what: 'repository index' });
  try {
    db.prepare('SELECT count(*) FROM packs').get();
  } catch (err) {
    db.close();
    throw new CorruptIndexError(`repository index of ${dir} is unreadable: ${(err as Error).message}`, { cause: err });
  }
  return db;
}

export async function writeFileDurable(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}
