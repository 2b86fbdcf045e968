import fs from 'node:fs';
import Database from 'better-sqlite3';
import { CorruptIndexError, noSpace } from '../errors/errors.ts';

export type Db = Database.Database;

/** Migrations are append-only: entry i moves a database from user_version i to i+1. */
export type Migration = (db: Db) => void;

export interface OpenOptions {
  readonly migrations: readonly Migration[];
  readonly readonly?: boolean;
  /**
   * false: commits are not fsynced (WAL mode's NORMAL: a process crash loses
   * nothing, a power loss the last commits), for rows a restart discards anyway.
   */
  readonly synced?: boolean;
  /** Name used in error messages ("repository index", "agent catalog"). */
  readonly what: string;
  /**
   * The file must already hold a database its migrations made: an empty one
   * (truncated to nothing, or replaced) is damage to report, not a new
   * database to create.
   */
  readonly existing?: boolean;
}

/**
 * Opens a SQLite file in WAL mode with FULL sync (unless `synced` is false):
 * commits are the durability points of the write order (pack fsync, index
 * commit, snapshot commit), so a committed row must survive power loss.
 */
export function openDatabase(file: string, opts: OpenOptions): Db {
  if (!opts.readonly) createPrivate(file);
  const typed = (err: unknown) => typedFailure(err, `${opts.what} ${file}`);
  try {
    const db = guard(new Database(file, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false }), typed);
    db.pragma('busy_timeout = 10000');
    if (opts.existing && db.pragma('user_version', { simple: true }) === 0) {
      db.close();
      throw new CorruptIndexError(`${opts.what} ${file} is empty: it was truncated or replaced`);
    }
    if (!opts.readonly) {
      walMode(db);
      db.pragma(opts.synced === false ? 'synchronous = NORMAL' : 'synchronous = FULL');
    }
    db.pragma('foreign_keys = ON');
    migrate(db, opts.migrations, opts.what);
    return db;
  } catch (err) {
    throw typed(err);
  }
}

/**
 * What SQLite says of a damaged file, at open or at any later query, as a
 * typed error: corruption (a page, the header, the schema's text) is a
 * CorruptIndexError, a full disk a NoSpaceError; anything else as it is.
 */
function typedFailure(err: unknown, what: string): unknown {
  if (err instanceof CorruptIndexError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return err;
  const message = (err as Error).message;
  const damaged =
    code.startsWith('SQLITE_CORRUPT') ||
    code === 'SQLITE_NOTADB' ||
    // a file that is not what its header or its WAL says (cut short, swapped under SQLite)
    code.startsWith('SQLITE_IOERR_SHORT_READ') ||
    // a header flipped to a write version SQLite does not know makes the file read-only
    code.startsWith('SQLITE_READONLY') ||
    // the schema's own text damaged: tables or columns the code relies on are gone
    (code === 'SQLITE_ERROR' && /no such (table|column)|has no column|malformed|no such index|unsupported file format/.test(message));
  if (damaged) return new CorruptIndexError(`${what} is damaged or cannot be written (${code}: ${message})`, { cause: err });
  return noSpace(err, what);
}

/**
 * The database with every call guarded by typedFailure: statements, their
 * iterators and transactions included, so damage found by a query deep in a
 * backup surfaces with its code, not as SQLite's own error. The methods are
 * replaced on the instances (no Proxy): a statement is called per block.
 */
function guard(db: Db, typed: (err: unknown) => unknown): Db {
  const call = <A extends unknown[], R>(f: (...a: A) => R) =>
    function (this: unknown, ...args: A): R {
      try {
        return f.apply(this, args);
      } catch (err) {
        throw typed(err);
      }
    };
  const statement = (st: Database.Statement): Database.Statement => {
    const methods = st as unknown as Record<string, unknown>;
    for (const k of ['run', 'get', 'all', 'pluck', 'raw', 'expand', 'bind', 'columns', 'safeIntegers']) {
      const m = methods[k];
      if (typeof m === 'function') methods[k] = call(m as (...a: unknown[]) => unknown);
    }
    const iterate = st.iterate;
    methods.iterate = function (this: unknown, ...args: unknown[]) {
      const it = call(iterate as (...a: unknown[]) => IterableIterator<unknown>).apply(st, args);
      const next = call(it.next.bind(it));
      const guardedIt: IterableIterator<unknown> = { next, return: (v?: unknown) => it.return?.(v) ?? { done: true, value: v }, [Symbol.iterator]: () => guardedIt };
      return guardedIt;
    };
    return st;
  };
  const prepare = db.prepare;
  const transaction = db.transaction;
  const d = db as unknown as Record<string, unknown>;
  d.prepare = function (this: Db, source: string) {
    return statement(call(prepare).call(db, source) as Database.Statement);
  };
  d.transaction = function (this: Db, fn: (...a: unknown[]) => unknown) {
    const tx = call(transaction).call(db, fn) as unknown as Transaction;
    return Object.assign(call(tx), { deferred: call(tx.deferred), immediate: call(tx.immediate), exclusive: call(tx.exclusive) });
  };
  for (const k of ['exec', 'pragma', 'close', 'backup', 'function', 'aggregate', 'table', 'loadExtension', 'serialize']) {
    const m = d[k];
    if (typeof m === 'function') d[k] = call(m as (...a: unknown[]) => unknown);
  }
  return db;
}

type Transaction = ((...args: unknown[]) => unknown) & Record<'deferred' | 'immediate' | 'exclusive', (...args: unknown[]) => unknown>;


/**
 * A new database file is created 0600 here, before SQLite would make it 0644
 * under the usual umask; SQLite gives -wal and -shm the mode of the database.
 * An existing file keeps the mode its owner gave it.
 */
function createPrivate(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Switches the file to WAL. Another process doing the same to a file just
 * made (the agent and a CLI command opening a new catalog at once) makes
 * SQLite answer BUSY without waiting: wait a little and ask again.
 */
function walMode(db: Db): void {
  for (let attempt = 1; ; attempt++) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || attempt >= 200) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}

function migrate(db: Db, migrations: readonly Migration[], what: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new CorruptIndexError(
      `${what} has schema version ${current}, newer than this Lifeboat understands (${migrations.length})`,
    );
  }
  // The version is read again inside each step's IMMEDIATE transaction: another process opening
  // the same file at the same moment (the agent and a CLI command) may have made that step meanwhile.
  for (let done = current >= migrations.length; !done; ) {
    let v = current;
    try {
      done = db.transaction(() => {
        v = db.pragma('user_version', { simple: true }) as number;
        if (v >= migrations.length) return true;
        migrations[v]!(db);
        db.pragma(`user_version = ${v + 1}`);
        return v + 1 >= migrations.length;
      }).immediate();
    } catch (err) {
      // a migration that meets tables it should make: the version in the header is damaged
      if ((err as { code?: unknown }).code === 'SQLITE_ERROR' && /already exists/.test((err as Error).message)) {
        throw new CorruptIndexError(`${what} says schema version ${v}, but holds tables of a later one: its header is damaged`, { cause: err });
      }
      throw err;
    }
  }
}
