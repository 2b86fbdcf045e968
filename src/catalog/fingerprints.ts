import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Db, openDatabase } from '../db/database.ts';

/** A file's block fingerprints as its last backup read them (see src/backup/fingerprints.ts for what they stand for). */
export interface FingerprintRow {
  readonly key: Buffer;
  readonly block: number;
  readonly hashes: Buffer;
}

/** One source's fingerprints, by path relative to it. */
export interface SourceFingerprints {
  get(path: string): FingerprintRow | undefined;
  put(path: string, row: FingerprintRow): void;
  /** Forgets the rows of every path not in `paths` (a backup that looked at every file saw only these). */
  keepOnly(paths: ReadonlySet<string>): void;
}

/**
 * The fingerprints table, in the agent's catalog (by volume) and in the
 * CLI's cache (by host and directory). Its definition is a migration of
 * both: it never changes here; a change is a new migration.
 */
export const FINGERPRINTS_TABLE = `
      CREATE TABLE fingerprints (
        volume  TEXT NOT NULL,
        path    TEXT NOT NULL,
        key     BLOB NOT NULL,
        block   INTEGER NOT NULL,
        hashes  BLOB NOT NULL,
        PRIMARY KEY (volume, path)
      ) STRICT, WITHOUT ROWID;
    `;

/** The rows of `source` (the table's volume column) in `db`. */
export function sourceFingerprints(db: Db, source: string): SourceFingerprints {
  const get = db.prepare('SELECT key, block, hashes FROM fingerprints WHERE volume = ? AND path = ?');
  const put = db.prepare('INSERT OR REPLACE INTO fingerprints (volume, path, key, block, hashes) VALUES (?, ?, ?, ?, ?)');
  const paths = db.prepare('SELECT path FROM fingerprints WHERE volume = ?').pluck();
  const drop = db.prepare('DELETE FROM fingerprints WHERE volume = ? AND path = ?');
  return {
    get: (p) => get.get(source, p) as FingerprintRow | undefined,
    put: (p, row) => void put.run(source, p, row.key, row.block, row.hashes),
    keepOnly: (keep) =>
      db.transaction(() => {
        for (const p of paths.all(source) as string[]) if (!keep.has(p)) drop.run(source, p);
      })(),
  };
}

/**
 * Where the CLI keeps fingerprints between backups of a directory: on this
 * host, per repository, like restic's cache ($LIFEBOAT_CACHE_DIR, else
 * $XDG_CACHE_HOME/lifeboat, else ~/.cache/lifeboat).
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LIFEBOAT_CACHE_DIR) return path.resolve(env.LIFEBOAT_CACHE_DIR);
  return path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'lifeboat');
}

/** The CLI's fingerprint cache of one repository. */
export class FingerprintCache {
  readonly #db: Db;

  private constructor(db: Db) {
    this.#db = db;
  }

  static open(dir: string, repositoryId: string): FingerprintCache {
    const own = path.join(dir, repositoryId);
    fs.mkdirSync(own, { recursive: true, mode: 0o700 });
    return new FingerprintCache(openDatabase(path.join(own, 'fingerprints.db'), { what: 'fingerprint cache', migrations: [(db) => db.exec(FINGERPRINTS_TABLE)] }));
  }

  /** A directory's rows, as backed up from `host`. */
  of(host: string, source: string): SourceFingerprints {
    return sourceFingerprints(this.#db, JSON.stringify([host, source]));
  }

  close(): void {
    this.#db.close();
  }
}
