import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { type Db, openDatabase } from '../catalog/database.ts';
import {
  CorruptIndexError,
  NotARepositoryError,
  RepositoryExistsError,
  WrongPasswordError,
} from '../errors/errors.ts';
import { type MasterKeys, unseal } from './crypto.ts';
import { type BlobId, type BlobType } from './ids.ts';
import { generateMasterKeys, parseKeyFile, unwrapKeys, wrapKeys } from './keys.ts';
import { type LockKind, RepositoryLock } from './lock.ts';
import { packPath } from './pack.ts';
import { repositoryMigrations } from './schema.ts';

const FORMAT_VERSION = 1;

const configSchema = z.object({
  lifeboat_repository: z.literal(FORMAT_VERSION),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  created: z.string(),
});

export interface BlobLocation {
  readonly type: BlobType;
  readonly pack: string;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/**
 * A repository directory:
 *   config.json   format version and repository id (clear)
 *   keys/*.json   the master keys, each file wrapped by one password
 *   index.db      blob index, packs, snapshots, locks (SQLite)
 *   packs/xx/*    pack files
 */
export class Repository {
  readonly dir: string;
  readonly id: string;
  readonly keys: MasterKeys;
  readonly db: Db;
  readonly #locate: (id: Buffer) => BlobLocation | undefined;
  readonly #has: (id: Buffer) => unknown;
  readonly #fds = new Map<string, number>();

  private constructor(dir: string, id: string, keys: MasterKeys, db: Db) {
    this.dir = dir;
    this.id = id;
    this.keys = keys;
    this.db = db;
    const locate = db.prepare(
      `SELECT b.type AS type, p.name AS pack, b.offset AS offset, b.length AS length, b.raw_length AS rawLength
       FROM blobs b JOIN packs p ON p.id = b.pack WHERE b.id = ?`,
    );
    this.#locate = (blob) => locate.get(blob) as BlobLocation | undefined;
    const has = db.prepare('SELECT 1 FROM blobs WHERE id = ?').pluck();
    this.#has = (blob) => has.get(blob);
  }

  static async init(dir: string, password: string): Promise<Repository> {
    const abs = path.resolve(dir);
    const existing = await fsp.readdir(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    if (existing.length > 0) throw new RepositoryExistsError(abs);
    await fsp.mkdir(path.join(abs, 'keys'), { recursive: true, mode: 0o700 });
    await fsp.mkdir(path.join(abs, 'packs'), { mode: 0o700 });
    const keys = generateMasterKeys();
    const keyName = crypto.randomBytes(8).toString('hex');
    await writeFileDurable(path.join(abs, 'keys', `${keyName}.json`), JSON.stringify(wrapKeys(keys, password), null, 2));
    const config = { lifeboat_repository: FORMAT_VERSION, id: crypto.randomBytes(16).toString('hex'), created: new Date().toISOString() };
    const db = openDatabase(path.join(abs, 'index.db'), { migrations: repositoryMigrations, what: 'repository index' });
    // config.json last: its presence is what makes the directory a repository.
    await writeFileDurable(path.join(abs, 'config.json'), JSON.stringify(config, null, 2));
    return new Repository(abs, config.id, keys, db);
  }

  static async open(dir: string, password: string): Promise<Repository> {
    const abs = path.resolve(dir);
    const configText = await fsp.readFile(path.join(abs, 'config.json'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'no config.json' : `config.json unreadable (${err.code})`;
      throw new NotARepositoryError(abs, why);
    });
    let parsedConfig: z.infer<typeof configSchema>;
    try {
      parsedConfig = configSchema.parse(JSON.parse(configText));
    } catch {
      throw new NotARepositoryError(abs, 'config.json is malformed');
    }
    const keys = await unlock(abs, password);
    if (!fs.existsSync(path.join(abs, 'index.db'))) {
      throw new CorruptIndexError(`repository ${abs} has lost its index (index.db is missing)`);
    }
    const db = openDatabase(path.join(abs, 'index.db'), { migrations: repositoryMigrations, what: 'repository index' });
    try {
      db.prepare('SELECT count(*) FROM packs').get();
    } catch (err) {
      db.close();
      throw new CorruptIndexError(`repository index of ${abs} is unreadable: ${(err as Error).message}`, { cause: err });
    }
    return new Repository(abs, parsedConfig.id, keys, db);
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

  /** Raw stored bytes of a blob, still sealed. Reads share one descriptor per pack. */
  async readStored(loc: Pick<BlobLocation, 'pack' | 'offset' | 'length'>): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(loc.length);
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

  /** Loads and decodes one blob on this thread; for trees and small reads. */
  async loadBlob(id: BlobId, type: BlobType): Promise<Buffer> {
    const loc = this.locate(id);
    if (!loc) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} is referenced but not in the index`);
    if (loc.type !== type) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} has the wrong type`);
    return unseal(this.keys, id, type, await this.readStored(loc));
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

async function unlock(dir: string, password: string): Promise<MasterKeys> {
  const names = await fsp.readdir(path.join(dir, 'keys')).catch(() => {
    throw new NotARepositoryError(dir, 'no keys directory');
  });
  const keyFiles = names.filter((n) => n.endsWith('.json'));
  if (keyFiles.length === 0) throw new NotARepositoryError(dir, 'no key file');
  for (const name of keyFiles) {
    const file = parseKeyFile(await fsp.readFile(path.join(dir, 'keys', name), 'utf8'), dir);
    try {
      return unwrapKeys(file, password, dir);
    } catch (err) {
      if (!(err instanceof WrongPasswordError)) throw err;
    }
  }
  throw new WrongPasswordError(dir);
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
