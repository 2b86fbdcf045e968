import Database from 'better-sqlite3';
import { CorruptIndexError } from '../errors/errors.ts';

export type Db = Database.Database;

/** Migrations are append-only: entry i moves a database from user_version i to i+1. */
export type Migration = (db: Db) => void;

export interface OpenOptions {
  readonly migrations: readonly Migration[];
  readonly readonly?: boolean;
  /** Name used in error messages ("repository index", "agent catalog"). */
  readonly what: string;
}

/**
 * Opens a SQLite file in WAL mode with FULL sync: commits are the durability
 * points of the write order (pack fsync, index commit, snapshot commit), so a
 * committed row must survive power loss.
 */
export function openDatabase(file: string, opts: OpenOptions): Db {
  let db: Db;
  try {
    db = new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    db.pragma('busy_timeout = 10000');
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
    }
    db.pragma('foreign_keys = ON');
    migrate(db, opts.migrations, opts.what);
  } catch (err) {
    if (err instanceof CorruptIndexError) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
      throw new CorruptIndexError(`${opts.what} ${file} is damaged (${code})`, { cause: err });
    }
    throw err;
  }
  return db;
}

function migrate(db: Db, migrations: readonly Migration[], what: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new CorruptIndexError(
      `${what} has schema version ${current}, newer than this Lifeboat understands (${migrations.length})`,
    );
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      migrations[v]!(db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
