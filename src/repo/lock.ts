import crypto from 'node:crypto';
import os from 'node:os';
import type { Db } from '../catalog/database.ts';
import { RepositoryLockedError } from '../errors/errors.ts';

/**
 * restic's model: backups and restores share the repository, prune and forget
 * hold it alone. Locks are rows taken inside an IMMEDIATE transaction, so two
 * processes cannot both see "free". A holder refreshes its row; a row whose
 * process is gone (same host) or that has not been refreshed for STALE_MS is
 * broken by the next taker, so a killed backup never wedges the repository.
 */
const REFRESH_MS = 60_000;
const STALE_MS = 10 * REFRESH_MS;

export type LockKind = 'shared' | 'exclusive';

interface LockRow {
  id: string;
  exclusive: number;
  host: string;
  pid: number;
  created: string;
  refreshed: number;
}

export class RepositoryLock {
  readonly #db: Db;
  readonly #id: string;
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
      const rows = db.prepare('SELECT * FROM locks').all() as LockRow[];
      const now = Date.now();
      for (const row of rows) {
        if (isStale(row, host, now)) {
          db.prepare('DELETE FROM locks WHERE id = ?').run(row.id);
          continue;
        }
        if (kind === 'exclusive' || row.exclusive) {
          const what = row.exclusive ? 'an exclusive' : 'a shared';
          throw new RepositoryLockedError(repo, `${what} lock of pid ${row.pid} on ${row.host} since ${row.created}`);
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

function isStale(row: LockRow, host: string, now: number): boolean {
  if (now - row.refreshed > STALE_MS) return true;
  if (row.host !== host) return false;
  try {
    process.kill(row.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
