import { DatabaseBackupError, LifeboatError, SessionTimeoutError } from '../errors/errors.ts';
import type { ContainerDetail, DockerEngine } from './engine.ts';
import type { ExecSession } from './exec-session.ts';

/**
 * PostgreSQL's online backup, through a psql session in its container: the
 * database keeps running (nothing is paused), its files are read while it
 * writes them, and the backup_label that pg_backup_stop returns, stored with
 * them, makes its recovery replay the WAL read last to a consistent state
 * (torn pages are mended from the full-page images the WAL holds while a
 * backup runs). PostgreSQL 15 and later: pg_backup_start / pg_backup_stop;
 * 9.6 to 14: their non-exclusive forms pg_start_backup / pg_stop_backup.
 */
export interface PostgresBackup {
  /** The data directory inside the container (`SHOW data_directory`). */
  readonly dataDirectory: string;
  /** Where the backup starts in the WAL: its recovery needs every segment from here on. */
  readonly start: WalPosition;
  /** The cluster's system identifier (pg_control_system()): another initdb, another cluster. */
  readonly system: string;
  /** Ends the backup: what recovery needs (the backup_label, the tablespace map), where it ended, and when. */
  stop(): Promise<{ readonly labelFile: string; readonly tablespaceMap: string; readonly end: WalPosition; readonly at: Date }>;
  /** Leaves without ending it (the backup failed): closing the session aborts it in PostgreSQL. */
  abort(): Promise<void>;
}

/** A point in the WAL: its LSN and the name of the segment file holding it (timeline included). */
export interface WalPosition {
  readonly lsn: string;
  readonly segment: string;
}

export interface PostgresOptions {
  /** Each statement's answer, at most (pg_backup_start waits for a checkpoint). */
  readonly timeoutMs: number;
}

/** The end of each answer: psql echoes it once the statement before it is done. */
const MARK = '__lifeboat_done__';

/**
 * psql as the container's PostgreSQL user (PGUSER, else POSTGRES_USER as the
 * official image sets it, else postgres), unaligned, tuples only, stopping at
 * the first error: one answer per line, fields separated by '|'.
 */
const PSQL = `exec psql -X -A -t -q -v ON_ERROR_STOP=1 -F '|' -U "\${PGUSER:-\${POSTGRES_USER:-postgres}}" -d postgres`;

const LSN = /^[0-9A-F]+\/[0-9A-F]+$/;
/** An LSN and its segment file's name, as `SELECT lsn, pg_walfile_name(lsn)` prints them. */
const POSITION = /^[0-9A-F]+\/[0-9A-F]+\|[0-9A-F]{24}(\||$)/;

export interface Psql {
  /** The first line of the answer to `sql` that has the expected shape ('' when none has). */
  answer(sql: string, shape: RegExp): Promise<string>;
  close(): Promise<void>;
}

async function psql(engine: DockerEngine, container: ContainerDetail, opts: PostgresOptions): Promise<Psql> {
  const session: ExecSession = await engine.session(container.id, ['sh', '-c', PSQL]);
  return {
    async answer(sql, shape) {
      await session.write(`${sql}\n\\echo ${MARK}\n`);
      const lines = await session.readUntil((l) => l === MARK, opts.timeoutMs);
      // stderr (a NOTICE, a WARNING) shares the session with the answers and may come before them
      return lines.slice(0, -1).find((l) => shape.test(l)) ?? '';
    },
    close: () => session.close(5000),
  };
}

const failure = (container: ContainerDetail, what: string, err: unknown) =>
  err instanceof DatabaseBackupError || !(err instanceof LifeboatError)
    ? err
    : new DatabaseBackupError(`PostgreSQL in container ${container.name}: ${what} failed: ${(err as Error).message}`, { cause: err });

const position = (row: string): WalPosition => {
  const [lsn, segment] = row.split('|');
  return { lsn: lsn!, segment: segment! };
};

export async function startPostgresBackup(engine: DockerEngine, container: ContainerDetail, opts: PostgresOptions): Promise<PostgresBackup> {
  let db: Psql;
  try {
    db = await psql(engine, container, opts);
  } catch (err) {
    throw failure(container, 'starting psql', err);
  }
  try {
    const version = Number(await db.answer('SHOW server_version_num;', /^\d+$/));
    if (!Number.isInteger(version) || version < 100000) throw new DatabaseBackupError(`server_version_num ${version}: PostgreSQL 10 or later is needed`);
    const dataDirectory = await db.answer('SHOW data_directory;', /^\//);
    if (!dataDirectory.startsWith('/')) throw new DatabaseBackupError(`data_directory is ${JSON.stringify(dataDirectory)}`);
    const modern = version >= 150000;
    // fast: an immediate checkpoint, so the backup starts now rather than at the next scheduled one
    const startLsn = await db.answer(modern ? "SELECT pg_backup_start('lifeboat', true);" : "SELECT pg_start_backup('lifeboat', true, false);", LSN);
    if (!startLsn) throw new DatabaseBackupError('pg_backup_start gave no LSN');
    const [lsn, segment, system] = (await db.answer(`SELECT '${startLsn}', pg_walfile_name('${startLsn}'), system_identifier FROM pg_control_system();`, POSITION)).split('|');
    if (!segment || !system) throw new DatabaseBackupError('pg_walfile_name gave no segment');
    return {
      dataDirectory,
      start: { lsn: lsn!, segment },
      system,
      async stop() {
        try {
          const hex = (v: string) => Buffer.from(v, 'hex').toString('utf8');
          const row = await db.answer(
            `SELECT lsn, pg_walfile_name(lsn), encode(convert_to(labelfile, 'UTF8'), 'hex'), encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') FROM ${modern ? 'pg_backup_stop(false)' : 'pg_stop_backup(false, false)'};`,
            POSITION,
          );
          const at = new Date();
          const [, , label, map] = row.split('|');
          if (!label) throw new DatabaseBackupError('pg_backup_stop gave no backup label');
          return { end: position(row), labelFile: hex(label), tablespaceMap: hex(map ?? ''), at };
        } catch (err) {
          throw failure(container, 'ending the backup (pg_backup_stop)', err);
        } finally {
          await db.close();
        }
      },
      abort: () => db.close(),
    };
  } catch (err) {
    await db.close();
    throw failure(container, 'starting the backup (pg_backup_start)', err);
  }
}

/**
 * psql sessions kept open between backups, one per container, for the
 * question each WAL-only backup asks: it then costs a query, not an exec (a
 * process started in the container, a backend forked and authenticated)
 * every few seconds. A session that fails is closed and the question asked
 * once more on a new one (the database restarted meanwhile). Each holds one
 * connection to its database until close().
 */
export class PsqlSessions {
  readonly #open = new Map<string, { readonly db: Promise<Psql>; turn: Promise<unknown> }>();

  /** Runs `ask` on the container's session, one question at a time. */
  async ask<T>(engine: DockerEngine, container: ContainerDetail, opts: PostgresOptions, ask: (db: Psql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let s = this.#open.get(container.id);
      const reused = s !== undefined;
      if (!s) {
        s = { db: psql(engine, container, opts), turn: Promise.resolve() };
        this.#open.set(container.id, s);
      }
      const entry = s;
      const answer = entry.turn.then(async () => ask(await entry.db));
      entry.turn = answer.catch(() => {});
      try {
        return await answer;
      } catch (err) {
        if (this.#open.get(container.id) === entry) this.#open.delete(container.id);
        await entry.db.then((db) => db.close()).catch(() => {});
        // a session that had ended is replaced once; one that was there and did not answer is not asked again now
        if (!reused || attempt > 1 || err instanceof SessionTimeoutError) throw err;
      }
    }
  }

  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(open.map((s) => s.db.then((db) => db.close()).catch(() => {})));
  }
}

/**
 * Where PostgreSQL has flushed its WAL to, and how many bytes that is past
 * `since`: every transaction committed before this is asked is in the WAL up
 * to here, on disk. On a session of `sessions` when given, else on one of its own.
 */
export async function flushedWal(
  engine: DockerEngine,
  container: ContainerDetail,
  since: string,
  opts: PostgresOptions & { readonly sessions?: PsqlSessions },
): Promise<WalPosition & { readonly bytesSince: number; readonly system: string }> {
  if (!LSN.test(since)) throw new DatabaseBackupError(`${JSON.stringify(since)} is not an LSN`);
  const ask = async (db: Psql) => {
    const row = await db.answer(
      `SELECT lsn, pg_walfile_name(lsn), pg_wal_lsn_diff(lsn, '${since}'), system_identifier FROM pg_current_wal_flush_lsn() AS lsn, pg_control_system();`,
      POSITION,
    );
    const [, , diff, system] = row.split('|');
    const bytesSince = Number(diff);
    if (!Number.isFinite(bytesSince) || !system) throw new DatabaseBackupError(`pg_current_wal_flush_lsn answered ${JSON.stringify(row)}`);
    return { ...position(row), bytesSince, system };
  };
  try {
    if (opts.sessions) return await opts.sessions.ask(engine, container, opts, ask);
    const db = await psql(engine, container, opts);
    try {
      return await ask(db);
    } finally {
      await db.close();
    }
  } catch (err) {
    throw failure(container, 'asking where the WAL is', err);
  }
}
