import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Db } from '../db/database.ts';
import { CorruptIndexError, KeyRemovalError, NotARepositoryError, RepositoryExistsError, WrongPasswordError } from '../errors/errors.ts';
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
  /** The key file the password opened. */
  readonly keyName: string;

  private constructor(dir: string, id: string, keys: MasterKeys, keyName: string, db: Db) {
    super(dir, id, db);
    this.keys = keys;
    this.keyName = keyName;
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
    const keyName = newKeyName();
    await addKeyFile(backend, { name: keyName, text: JSON.stringify(wrapKeys(keys, password), null, 2) });
    const db = openIndex(abs, config.id, { create: true });
    // config.json last: its presence is what makes the directory a repository.
    await backend.writeOnce('config', 'config.json', Buffer.from(JSON.stringify(config, null, 2)));
    return new Repository(abs, config.id, keys, keyName, db);
  }

  static async open(dir: string, password: string, opts: OpenOptions = {}): Promise<Repository> {
    const abs = path.resolve(dir);
    const config = readRepositoryConfig(abs);
    const { keys, name } = await unlock(abs, password);
    return Store.checked(new Repository(abs, config.id, keys, name, openIndex(abs, config.id, opts)));
  }

  /** The master keys a password opens, without opening the index (what an index rebuild needs). */
  static async keysOf(dir: string, password: string): Promise<MasterKeys> {
    const abs = path.resolve(dir);
    readRepositoryConfig(abs);
    return (await unlock(abs, password)).keys;
  }

  /** Loads and decodes one blob on this thread; for trees and small reads. */
  async loadBlob(id: BlobId, type: BlobType): Promise<Buffer> {
    const loc = this.locate(id);
    if (!loc) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} is referenced but not in the index`);
    if (loc.type !== type) throw new CorruptIndexError(`blob ${id.toString('hex').slice(0, 16)} has the wrong type`);
    return unseal(this.keys, id, type, await this.readStored(loc), false, loc.rawLength);
  }

  /** The key files, and which of them this repository's password opened. */
  async listKeys(): Promise<KeyInfo[]> {
    return (await readKeyFiles(this.backend)).map(({ name, text }) => {
      try {
        const k = parseKeyFile(text, this.dir);
        return { name, created: k.created, kdf: `scrypt N=${k.N} r=${k.r} p=${k.p}`, current: name === this.keyName, damaged: false };
      } catch {
        return { name, created: null, kdf: null, current: false, damaged: true };
      }
    });
  }

  /** Adds a key file: `password` opens the repository too. Returns its name. */
  async addPassword(password: string): Promise<string> {
    const name = newKeyName();
    await this.backend.writeOnce('key', name, Buffer.from(JSON.stringify(wrapKeys(this.keys, password), null, 2)));
    return name;
  }

  /** Replaces the password in use: the new one's key file first, then the old one's, so a failure between leaves both. */
  async changePassword(password: string): Promise<{ added: string; removed: string }> {
    const added = await this.addPassword(password);
    await this.backend.delete('key', this.keyName);
    return { added, removed: this.keyName };
  }

  /**
   * Removes a key file: its password no longer opens this repository (a
   * peer's replica keeps the key files it was sent: replicas never delete).
   * Never the one this repository was opened with, so a typo cannot lock
   * everyone out.
   */
  async removeKey(name: string): Promise<void> {
    if (name === this.keyName) throw new KeyRemovalError(`key ${name} is the one the password in use opened; remove it with another password, or use key passwd`);
    if (!(await this.backend.stat('key', name))) throw new KeyRemovalError(`this repository has no key file ${name}`);
    await this.backend.delete('key', name);
  }
}

export interface KeyInfo {
  readonly name: string;
  readonly created: string | null;
  readonly kdf: string | null;
  /** The key file the password in use opened. */
  readonly current: boolean;
  readonly damaged: boolean;
}

const newKeyName = () => `${crypto.randomBytes(8).toString('hex')}.json`;

async function unlock(dir: string, password: string): Promise<{ keys: MasterKeys; name: string }> {
  const keyFiles = await readKeyFiles(new LocalBackend(dir));
  if (keyFiles.length === 0) throw new NotARepositoryError(dir, 'no key file');
  // A damaged key file must not lock out the good ones: it only counts when no other opens.
  let damaged: unknown;
  for (const { name, text } of keyFiles) {
    try {
      return { keys: unwrapKeys(parseKeyFile(text, dir), password, dir), name };
    } catch (err) {
      if (!(err instanceof WrongPasswordError)) damaged ??= err;
    }
  }
  throw damaged ?? new WrongPasswordError(dir);
}
