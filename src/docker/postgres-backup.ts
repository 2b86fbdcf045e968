import { DatabaseBackupError, LifeboatError } from '../errors/errors.ts';
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
  /** Ends the backup: what recovery needs (the backup_label, the tablespace map), and when. */
  stop(): Promise<{ readonly labelFile: string; readonly tablespaceMap: string; readonly lsn: string; readonly at: Date }>;
  /** Leaves without ending it (the backup failed): closing the session aborts it in PostgreSQL. */
  abort(): Promise<void>;
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

export async function startPostgresBackup(engine: DockerEngine, container: ContainerDetail, opts: PostgresOptions): Promise<PostgresBackup> {
  const fail = (what: string, err: unknown) =>
    new DatabaseBackupError(`PostgreSQL in container ${container.name}: ${what} failed: ${(err as Error).message}`, { cause: err });
  let session: ExecSession;
  try {
    session = await engine.session(container.id, ['sh', '-c', PSQL]);
  } catch (err) {
    throw fail('starting psql', err);
  }
  const ask = async (sql: string): Promise<string[]> => {
    await session.write(`${sql}\n\\echo ${MARK}\n`);
    const lines = await session.readUntil((l) => l === MARK, opts.timeoutMs);
    return lines.slice(0, -1).filter((l) => l !== '');
  };
  // stderr (a NOTICE, a WARNING) shares the session with the answers and may come before them
  const answer = async (sql: string, shape: RegExp): Promise<string> => (await ask(sql)).find((l) => shape.test(l)) ?? '';
  try {
    const version = Number(await answer('SHOW server_version_num;', /^\d+$/));
    if (!Number.isInteger(version) || version < 90600) throw new DatabaseBackupError(`server_version_num ${version}: PostgreSQL 9.6 or later is needed for a non-exclusive backup`);
    const dataDirectory = await answer('SHOW data_directory;', /^\//);
    if (!dataDirectory.startsWith('/')) throw new DatabaseBackupError(`data_directory is ${JSON.stringify(dataDirectory)}`);
    const modern = version >= 150000;
    // fast: an immediate checkpoint, so the backup starts now rather than at the next scheduled one
    await ask(modern ? "SELECT pg_backup_start('lifeboat', true);" : "SELECT pg_start_backup('lifeboat', true, false);");
    return {
      dataDirectory,
      async stop() {
        try {
          const hex = (v: string) => Buffer.from(v, 'hex').toString('utf8');
          const row = await answer(
            `SELECT lsn, encode(convert_to(labelfile, 'UTF8'), 'hex'), encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') FROM ${modern ? 'pg_backup_stop(false)' : 'pg_stop_backup(false, false)'};`,
            /^[0-9A-F]+\/[0-9A-F]+\|/,
          );
          const at = new Date();
          const [lsn, label, map] = row.split('|');
          if (!lsn || !label) throw new DatabaseBackupError('pg_backup_stop gave no backup label');
          return { lsn, labelFile: hex(label), tablespaceMap: hex(map ?? ''), at };
        } catch (err) {
          throw err instanceof DatabaseBackupError ? err : fail('ending the backup (pg_backup_stop)', err);
        } finally {
          await session.close(5000);
        }
      },
      abort: () => session.close(5000),
    };
  } catch (err) {
    await session.close(5000);
    throw err instanceof DatabaseBackupError || !(err instanceof LifeboatError) ? err : fail('starting the backup (pg_backup_start)', err);
  }
}
