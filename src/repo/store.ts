import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { type Db, openDatabase } from '../db/database.ts';
import { CorruptIndexError, NotARepositoryError } from '../errors/errors.ts';
import { type BlobId, type BlobType, MAX_STORED_BLOB } from './ids.ts';
import { type LockKind, removeAllLocks, removeStaleLocks, RepositoryLock, type UnlockReport } from './lock.ts';
import { listRecordIds } from './snapshot-record.ts';
import { packPath } from './pack.ts';
import { type BlobRow, blobLocator, blobPresence, blobRow, packRow } from './rows.ts';
import { keepReserve, releaseReserveIfLow } from './reserve.ts';
import { reconcileSnapshots } from './snapshots.ts';
import { repositoryMigrations } from './schema.ts';
import { INDEX_DB } from './index-db.ts';
import type { Backend } from '../backend/backend.ts';
import { LocalBackend } from '../backend/local.ts';

export const FORMAT_VERSION = 1;

/** How often a long-lived store (the agent's) looks at every pack file's size again. */
const RESTAT_MS = 60_000;
const PACK_FILE = /^[0-9a-f]{32}$/;

export const repositoryConfigSchema = z.strictObject({
  lifeboat_repository: z.literal(FORMAT_VERSION),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  created: z.string().max(64),
});
export type RepositoryConfig = z.infer<typeof repositoryConfigSchema>;

export interface OpenOptions {
  /**
   * 'keep' leaves the repository's reserve of free space alone, for one that
   * will write data (a backup, a replica taking a push), which would fill
   * what was freed; by default a nearly full file system gets it back, so
   * that prune, forget and verify can run.
   */
  readonly reserve?: 'keep' | 'release-if-low';
}

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
  readonly [INDEX_DB]: Db;
  /** Where the repository's files are. */
  readonly backend: Backend;
  readonly #locate: (id: Buffer) => BlobLocation | undefined;
  readonly #has: (id: Buffer) => boolean;
  readonly #fds = new Map<string, number>();
  /** Pack files and sizes seen per packs/ subdirectory, by the directory's mtime: a new look only where something changed. */
  readonly #packDirs = new Map<string, { mtimeMs: number; sizes: Map<string, number> }>();
  /** When every pack file's size was last looked at. */
  #restatAt = 0;

  protected constructor(dir: string, id: string, db: Db) {
    this.dir = dir;
    this.id = id;
    this[INDEX_DB] = db;
    this.backend = new LocalBackend(dir);
    this.#locate = blobLocator(db);
    this.#has = blobPresence(db);
  }

  /** Opens the store of an existing repository, keys untouched. */
  static openStore(dir: string, opts: OpenOptions = {}): Store {
    const abs = path.resolve(dir);
    const { id } = readRepositoryConfig(abs);
    return Store.checked(new Store(abs, id, openIndex(abs, id, opts)));
  }

  /** An opened store whose snapshot rows agree with its records (see reconcileSnapshots); closed if they cannot. */
  protected static checked<S extends Store>(store: S): S {
    try {
      reconcileSnapshots(store);
      return store;
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /** Removes the locks no live process holds, or with 'all' every lock (when nothing else uses the repository). */
  removeLocks(which: 'stale' | 'all'): UnlockReport {
    return which === 'all' ? removeAllLocks(this[INDEX_DB]) : removeStaleLocks(this[INDEX_DB]);
  }

  lock(kind: LockKind): RepositoryLock {
    return RepositoryLock.acquire(this[INDEX_DB], kind, this.dir);
  }

  /** Whether the index places the blob in a pack it knows: a row whose pack row is gone vouches for nothing. */
  hasBlob(id: BlobId): boolean {
    return this.#has(id);
  }

  /** The blobs the index places in a pack (what `repair` fetches when the pack is lost). */
  blobsInPack(name: string): BlobRow[] {
    const rows = this[INDEX_DB].prepare('SELECT b.id, b.type, b.offset, b.length, b.raw_length AS rawLength FROM blobs b JOIN packs p ON p.id = b.pack WHERE p.name = ? ORDER BY b.offset');
    return (rows.all(name) as Record<string, unknown>[]).map((r) => blobRow(r));
  }

  /**
   * Drops from the index the packs whose files are gone or not the size it
   * says (cut short, or written over), with their blobs' rows, and returns
   * their names: their blobs are then absent to a backup, which stores them
   * again (as restic re-uploads what a lost pack held) instead of making new
   * snapshots that point at data no longer there. The damaged files stay for
   * verify to name and repair to mend.
   */
  forgetMissingPacks(): string[] {
    const onDisk = this.#packFiles();
    const indexed = (this[INDEX_DB].prepare('SELECT id, name, size FROM packs').all() as Record<string, unknown>[]).map(packRow);
    const lost = indexed.filter((p) => onDisk.get(p.name) !== p.size).map((p) => p.name);
    if (lost.length > 0) this[INDEX_DB].transaction(() => this.#dropPacks(lost))();
    return lost;
  }

  /**
   * Takes back what a failed write session indexed (its packs' rows, then
   * their files) when no other process can have used it: no other lock is
   * held and no snapshot was committed since the session began (either would
   * be a writer that may have deduplicated against those blobs). Otherwise
   * the packs stay for prune. Returns whether they were taken back.
   */
  discardSession(packs: readonly string[], lock: RepositoryLock, recordsBefore: ReadonlySet<string>): boolean {
    if (packs.length === 0) return true;
    let alone = false;
    this[INDEX_DB].transaction(() => {
      const others = this[INDEX_DB].prepare('SELECT count(*) FROM locks WHERE id IS NOT ?').pluck().get(lock.id) as number;
      if (others > 0 || listRecordIds(this.dir).some((id) => !recordsBefore.has(id))) return;
      alone = true;
      this.#dropPacks(packs);
    }).immediate();
    if (!alone) return false;
    this.dropPackHandles();
    for (const name of packs) fs.rmSync(packPath(this.dir, name), { force: true });
    return true;
  }

  /** Removes packs' rows and their blobs' rows (inside the caller's transaction). */
  #dropPacks(names: readonly string[]): void {
    const dropBlobs = this[INDEX_DB].prepare('DELETE FROM blobs WHERE pack = (SELECT id FROM packs WHERE name = ?)');
    const drop = this[INDEX_DB].prepare('DELETE FROM packs WHERE name = ?');
    for (const name of names) {
      dropBlobs.run(name);
      drop.run(name);
    }
  }

  /**
   * The finished pack files on disk and their sizes. A subdirectory is read
   * again when its mtime changed, and every file's size looked at again at
   * most every RESTAT_MS (a file cut short in place leaves its directory's
   * mtime as it was); entries that are not pack files are passed over.
   */
  #packFiles(): Map<string, number> {
    const root = path.join(this.dir, 'packs');
    const out = new Map<string, number>();
    let subs: fs.Dirent[];
    try {
      subs = fs.readdirSync(root, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    const restat = Date.now() - this.#restatAt >= RESTAT_MS;
    if (restat) this.#restatAt = Date.now();
    for (const sub of subs) {
      if (!sub.isDirectory()) continue;
      const dir = path.join(root, sub.name);
      const mtimeMs = fs.statSync(dir).mtimeMs;
      let seen = this.#packDirs.get(sub.name);
      if (!seen || seen.mtimeMs !== mtimeMs || restat) {
        const sizes = new Map<string, number>();
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
          if (!e.isFile() || !PACK_FILE.test(e.name)) continue;
          const size = fs.statSync(path.join(dir, e.name), { throwIfNoEntry: false })?.size;
          if (size !== undefined) sizes.set(e.name, size);
        }
        seen = { mtimeMs, sizes };
        this.#packDirs.set(sub.name, seen);
      }
      for (const [name, size] of seen.sizes) out.set(name, size);
    }
    return out;
  }

  /** Runs lookups in one read transaction: a lookup on its own opens and ends one, most of its cost. */
  inOneRead<T>(lookups: () => T): T {
    return this[INDEX_DB].transaction(lookups)();
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
    this[INDEX_DB].close();
    keepReserve(this.dir);
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

const REBUILD = 'rebuild it from the packs with `lifeboat repair --rebuild-index`';

/**
 * Opens index.db, which must exist (init makes it), and checks that it is
 * this repository's and whole, so that damage shows here with its code and
 * the way out, never as an empty repository: a missing, empty, truncated or
 * foreign index is refused.
 */
export function openIndex(dir: string, repositoryId: string, opts: OpenOptions & { create?: boolean } = {}): Db {
  const file = path.join(dir, 'index.db');
  const create = opts.create ?? false;
  if (opts.reserve !== 'keep') releaseReserveIfLow(dir);
  if (!create) checkIndexFile(file, dir);
  let db: Db;
  try {
    db = openDatabase(file, { migrations: repositoryMigrations, what: 'repository index', existing: !create });
  } catch (err) {
    if (err instanceof CorruptIndexError) throw new CorruptIndexError(`${err.message}; ${REBUILD}`, { cause: err });
    throw err;
  }
  try {
    db.prepare('SELECT count(*) FROM packs').get();
    const owner = db.prepare("SELECT value FROM meta WHERE key = 'repository'").pluck().get() as unknown;
    if (owner === undefined) db.prepare("INSERT INTO meta (key, value) VALUES ('repository', ?)").run(repositoryId);
    else if (owner !== repositoryId) {
      throw new CorruptIndexError(`the index of ${dir} belongs to another repository (${String(owner).slice(0, 32)}), not to this one (${repositoryId}): it was replaced; ${REBUILD}`);
    }
  } catch (err) {
    db.close();
    if (err instanceof CorruptIndexError) throw err;
    throw new CorruptIndexError(`repository index of ${dir} is unreadable: ${(err as Error).message}; ${REBUILD}`, { cause: err });
  }
  return db;
}

/**
 * What can be told of index.db before SQLite opens it: it exists, and it is
 * not shorter than its header says (SQLite would read the missing pages as
 * zeros and could answer queries from what is left).
 */
function checkIndexFile(file: string, dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CorruptIndexError(`repository ${dir} has lost its index (index.db is missing); ${REBUILD}`);
    throw err;
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return; // empty, or not checkpointed yet: SQLite reads its user_version through the WAL
    const header = Buffer.alloc(100);
    const n = fs.readSync(fd, header, 0, 100, 0);
    if (n < 100 || !header.subarray(0, 16).equals(Buffer.from('SQLite format 3\0', 'latin1'))) {
      throw new CorruptIndexError(`the index of ${dir} (index.db) is not a SQLite database; ${REBUILD}`);
    }
    const raw = header.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    const pages = header.readUInt32BE(28);
    const sizeValid = pages > 0 && header.readUInt32BE(24) === header.readUInt32BE(92);
    if (size % pageSize !== 0 || (sizeValid && pages * pageSize > size)) {
      throw new CorruptIndexError(`the index of ${dir} (index.db) is truncated: ${size} bytes, its header says ${sizeValid ? pages * pageSize : `pages of ${pageSize}`}; ${REBUILD}`);
    }
  } finally {
    fs.closeSync(fd);
  }
}
