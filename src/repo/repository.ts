import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Db } from '../db/database.ts';
import { CorruptIndexError, NotARepositoryError, RepositoryExistsError, WrongPasswordError } from '../errors/errors.ts';
import { type MasterKeys, unseal } from './crypto.ts';
import { type BlobId, type BlobType } from './ids.ts';
import { generateMasterKeys, parseKeyFile, unwrapKeys, wrapKeys } from './keys.ts';
import { snapshotsDir } from './snapshot-record.ts';
import { FORMAT_VERSION, type OpenOptions, openIndex, readRepositoryConfig, Store } from './store.ts';
import { LocalBackend } from '../backend/local.ts';
import { addKeyFile, readKeyFiles } from './key-files.ts';

export type { BlobLocation } from './store.ts';

/** A store opened with a password: it can read and write what the blobs hold. */
export class Repository extends Store {
  readonly keys: MasterKeys;

  private constructor(dir: string, id: string, keys: MasterKeys, db: Db) {
    super(dir, id, db);
    this.keys = keys;
  }

  static async init(dir: string, password: string): Promise<Repository> {
    const abs = path.resolve(dir);
    const existing = await fsp.readdir(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    if (existing.length > 0) throw new RepositoryExistsError(abs);
    await fsp.mkdir(path.join(abs, 'packs'), { recursive: true, mode: 0o700 });
    await fsp.mkdir(snapshotsDir(abs), { mode: 0o700 });
    const backend = new LocalBackend(abs);
    const config = { lifeboat_repository: FORMAT_VERSION, id: crypto.randomBytes(16).toString('hex'), created: new Date().toISOString() };
    const keys = generateMasterKeys();
    const keyName = crypto.randomBytes(8).toString('hex');
    await addKeyFile(backend, { name: `${keyName}.json`, text: JSON.stringify(wrapKeys(keys, password), null, 2) });
    const db = openIndex(abs, config.id, { create: true });
    // config.json last: its presence is what makes the directory a repository.
    await backend.writeOnce('config', 'config.json', Buffer.from(JSON.stringify(config, null, 2)));
    return new Repository(abs, config.id, keys, db);
  }

  static async open(dir: string, password: string, opts: OpenOptions = {}): Promise<Repository> {
    const abs = path.resolve(dir);
    const config = readRepositoryConfig(abs);
    const keys = await unlock(abs, password);
    return Store.checked(new Repository(abs, config.id, keys, openIndex(abs, config.id, opts)));
  }

  /** The master keys a password opens, without opening the index (what an index rebuild needs). */
  static async keysOf(dir: string, password: string): Promise<MasterKeys> {
    const abs = path.resolve(dir);
    readRepositoryConfig(abs);
    return unlock(abs, password);
  }

  /** Loads and decodes one blob on this thread; for trees and small reads. */
  async loadBlob(id: BlobId, type: BlobType): Promise<Buffer> {
    const loc = this.locate(id);
    if (!loc) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} is referenced but not in the index`);
    if (loc.type !== type) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} has the wrong type`);
    return unseal(this.keys, id, type, await this.readStored(loc), false, loc.rawLength);
  }
}

async function unlock(dir: string, password: string): Promise<MasterKeys> {
  const keyFiles = await readKeyFiles(new LocalBackend(dir));
  if (keyFiles.length === 0) throw new NotARepositoryError(dir, 'no key file');
  // A damaged key file must not lock out the good ones: it only counts when no other opens.
  let damaged: unknown;
  for (const { text } of keyFiles) {
    try {
      return unwrapKeys(parseKeyFile(text, dir), password, dir);
    } catch (err) {
      if (!(err instanceof WrongPasswordError)) damaged ??= err;
    }
  }
  throw damaged ?? new WrongPasswordError(dir);
}
