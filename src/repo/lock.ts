import crypto from 'node:crypto';
import os from 'node:os';
import type { Db } from '../db/database.ts';
import { CorruptIndexError, RepositoryLockedError } from '../errors/errors.ts';

/**
 * restic's model: backups and restores share the repository, prune and forget
 * hold it alone. Locks are rows taken inside an IMMEDIATE transaction, so two
 * processes cannot both see "free". A holder refreshes its row every
 * REFRESH_MS; a row is stale, and broken by the next taker, when its process
 * is gone (same host) or its refreshed time is more than STALE_MS away from
 * this clock, in either direction. So a killed backup never wedges the
 * repository, and neither does a time in the future: the rule already assumes
 * the hosts' clocks agree within STALE_MS (a holder whose clock is behind by
 * more has its locks broken), so a time further ahead is clock skew or
 * garbage, and one less far ahead keeps its lock at most 2 x STALE_MS after
 * its last refresh. (restic: refresh every 5 min, stale after 30 min, a time
 * in the future never; here ten missed refreshes, as before.)
 *
 * A row whose values are not of their kind (SQLite keeps any value in any
 * column) is the index's damage: every taker refuses it with
 * LB_ERR_CORRUPT_INDEX naming the row, rather than see a live lock forever or
 * delete it unseen; `lifeboat unlock --remove-all` removes it.
 */
export const REFRESH_MS = 60_000;
export const STALE_MS = 10 * REFRESH_MS;
/** pid_t is 32-bit; Node's process.kill refuses anything larger. */
const MAX_PID = 2 ** 31 - 1;

export type LockKind = 'shared' | 'exclusive';

interface LockRow {
  rowid: number;
  id: string;
  exclusive: 0 | 1;
  host: string;
  pid: number;
  created: string;
  refreshed: number;
}

type RawRow = Record<string, unknown>;

export class RepositoryLock {
  readonly #db: Db;
  readonly #id: string;

  /** This lock's row id. */
  get id(): string {
    return this.#id;
  }
  #timer: NodeJS.Timeout | undefined;

  private constructor(db: Db, id: string) {
    this.#db = db;
    this.#id = id;
    this.#timer = setInterval(() => this.#refresh(), REFRESH_MS);
    this.#timer.unref();
  }

  static acquire(db: Db, kind: LockKind, repo: string): RepositoryLock {
    const host = os.hostname();
    const id = crypto.randomBytes(8).toString('hex');
    db.transaction(() => {
      const rows = readLocks(db);
      const now = Date.now();
      for (const row of rows) {
        if (isStale(row, host, now)) {
          deleteRow(db, row.rowid);
          continue;
        }
        if (kind === 'exclusive' || row.exclusive) {
          const what = row.exclusive ? 'an exclusive' : 'a shared';
          // A lock of another host cannot be checked from here: say how to remove it when its process is gone.
          const hint = row.host === host ? '' : `; if that process is gone, \`lifeboat unlock --remove-all\` removes the lock (or it is broken ${STALE_MS / 60_000} minutes after its last refresh)`;
          throw new RepositoryLockedError(repo, `${what} lock of pid ${row.pid} on ${row.host} since ${row.created}${hint}`);
        }
      }
      db.prepare('INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, ?, ?, ?, ?, ?)').run(
        id,
        kind === 'exclusive' ? 1 : 0,
        host,
        process.pid,
        new Date(now).toISOString(),
        now,
      );
    }).immediate();
    return new RepositoryLock(db, id);
  }

  #refresh(): void {
    this.#db.prepare('UPDATE locks SET refreshed = ? WHERE id = ?').run(Date.now(), this.#id);
  }

  release(): void {
    if (!this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#db.prepare('DELETE FROM locks WHERE id = ?').run(this.#id);
  }
}

/** A lock row as `unlock` reports it: its values as stored, printable (a blob as x'hex'), and what is wrong with it. */
export interface LockDescription {
  readonly id: string | number | null;
  readonly exclusive: string | number | null;
  readonly host: string | number | null;
  readonly pid: string | number | null;
  readonly created: string | number | null;
  readonly refreshed: string | number | null;
  /** Why the row is no lock (a value not of its kind), null for a well-formed one. */
  readonly damaged: string | null;
}

export interface UnlockReport {
  readonly removed: LockDescription[];
  /** Locks left in place (live ones, for `unlock` without --remove-all). */
  readonly remaining: number;
}

/**
 * Removes the stale locks: those whose process is gone on this host, or whose
 * refreshed time is more than STALE_MS away. Refuses a table with a damaged
 * row, as every taker does (only removeAllLocks removes one).
 */
export function removeStaleLocks(db: Db): UnlockReport {
  return db.transaction(() => {
    const rows = readLocks(db);
    const host = os.hostname();
    const now = Date.now();
    const removed: LockDescription[] = [];
    for (const row of rows) {
      if (!isStale(row, host, now)) continue;
      deleteRow(db, row.rowid);
      removed.push(describe(row));
    }
    return { removed, remaining: rows.length - removed.length };
  }).immediate();
}

/** Removes every lock row, live and damaged ones too; for when no other process uses the repository. */
export function removeAllLocks(db: Db): UnlockReport {
  return db.transaction(() => {
    const rows = db.prepare('SELECT rowid, * FROM locks').all() as RawRow[];
    db.prepare('DELETE FROM locks').run();
    return { removed: rows.map(describe), remaining: 0 };
  }).immediate();
}

/** Every row of the locks table, checked: a row whose values are not of their kind is the index's damage. */
function readLocks(db: Db): LockRow[] {
  const rows = db.prepare('SELECT rowid, * FROM locks').all() as RawRow[];
  const bad = rows.flatMap((r) => {
    const problem = lockProblem(r);
    return problem === undefined ? [] : [{ r, problem }];
  });
  if (bad.length > 0) {
    const { r, problem } = bad[0]!;
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more damaged lock row${bad.length > 2 ? 's' : ''})` : '';
    throw new CorruptIndexError(
      `the repository index is damaged: lock row ${String(r.rowid)}${text(r.id, 64) ? ` (id ${show(r.id)})` : ''} ${problem}${more}; ` +
        'run `lifeboat unlock --remove-all` to remove every lock once no other Lifeboat process uses the repository',
    );
  }
  return rows as unknown as LockRow[];
}

/**
 * Text of one short line: what a lock's id, host and creation time are. A
 * holder is named in a one-line error, so a newline or a megabyte there is
 * damage too.
 */
const text = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max && !/[\u0000-\u001f\u007f]/.test(v);

/** What is wrong with a lock row's values, or undefined when each is of its kind. */
function lockProblem(r: RawRow): string | undefined {
  if (!text(r.id, 64)) return `has id ${show(r.id)}, not a lock id`;
  if (r.exclusive !== 0 && r.exclusive !== 1) return `has exclusive ${show(r.exclusive)}, not 0 or 1`;
  if (!text(r.host, 255)) return `has host ${show(r.host)}, not a host name`;
  if (typeof r.pid !== 'number' || !Number.isInteger(r.pid) || r.pid < 1 || r.pid > MAX_PID) return `has pid ${show(r.pid)}, not a process id`;
  if (!text(r.created, 64)) return `has created ${show(r.created)}, not a time`;
  if (typeof r.refreshed !== 'number' || !Number.isFinite(r.refreshed)) return `has refreshed ${show(r.refreshed)}, not a time`;
  return undefined;
}

/** A stored value, printable on one line and short: JSON for text and numbers, x'hex' for a blob. */
function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(printable(v)) : String(printable(v));
}

/** A stored value as JSON can carry it: text (cut at 100 characters) and finite numbers as they are, a blob as x'hex', anything else as text. */
function printable(v: unknown): string | number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v.length > 100 ? `${v.slice(0, 100)}…` : v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (Buffer.isBuffer(v)) return `x'${v.subarray(0, 32).toString('hex')}${v.length > 32 ? '…' : ''}'`;
  return String(v);
}

function describe(r: LockRow | RawRow): LockDescription {
  const raw = r as RawRow;
  return {
    id: printable(raw.id),
    exclusive: printable(raw.exclusive),
    host: printable(raw.host),
    pid: printable(raw.pid),
    created: printable(raw.created),
    refreshed: printable(raw.refreshed),
    damaged: lockProblem(raw) ?? null,
  };
}

function deleteRow(db: Db, rowid: number): void {
  db.prepare('DELETE FROM locks WHERE rowid = ?').run(rowid);
}

function isStale(row: LockRow, host: string, now: number): boolean {
  if (Math.abs(now - row.refreshed) > STALE_MS) return true;
  if (row.host !== host) return false;
  try {
    process.kill(row.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
