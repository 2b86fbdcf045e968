import type Database from 'better-sqlite3';
import type { Db } from '../db/database.ts';

/** The journal's rows in the agent catalog: changed paths per volume, and whether the journal is trusted. */
export class JournalStore {
  readonly #db: Db;
  readonly #stmts = new Map<string, Database.Statement<unknown[]>>();

  constructor(db: Db) {
    this.#db = db;
  }

  /** Statements prepared once: the journal records a batch every aggregate interval and the metrics read it on every scrape. */
  #stmt(sql: string): Database.Statement<unknown[]> {
    let s = this.#stmts.get(sql);
    if (!s) this.#stmts.set(sql, (s = this.#db.prepare(sql)));
    return s;
  }

  /** Highest sequence number recorded so far: a take covers the rows up to it. */
  lastSeq(): number {
    return (this.#stmt('SELECT COALESCE(MAX(seq), 0) FROM journal').pluck().get() as number) ?? 0;
  }

  /** Adds or refreshes paths; a path changed again gets a new sequence number, so a running take will not forget it. */
  record(volume: string, paths: Iterable<string>): void {
    const upsert = this.#stmt(
      'INSERT INTO journal (volume, path, seq) VALUES (?, ?, ?) ON CONFLICT (volume, path) DO UPDATE SET seq = excluded.seq',
    );
    this.#db.transaction(() => {
      const seq = this.lastSeq() + 1;
      for (const p of paths) upsert.run(volume, p, seq);
    }).immediate();
  }

  count(volume: string): number {
    return this.#stmt('SELECT COUNT(*) FROM journal WHERE volume = ?').pluck().get(volume) as number;
  }

  paths(volume: string, upTo: number): Set<string> {
    return new Set(this.#stmt('SELECT path FROM journal WHERE volume = ? AND seq <= ?').pluck().all(volume, upTo) as string[]);
  }

  forget(volume: string, upTo: number): void {
    this.#stmt('DELETE FROM journal WHERE volume = ? AND seq <= ?').run(volume, upTo);
  }

  state(volume: string): { trusted: boolean; reason: string | null; lastFullScan: string | null } {
    const row = this.#stmt('SELECT trusted, reason, last_full_scan FROM journal_state WHERE volume = ?').get(volume) as
      | { trusted: number; reason: string | null; last_full_scan: string | null }
      | undefined;
    return { trusted: row?.trusted === 1, reason: row ? row.reason : 'never scanned', lastFullScan: row?.last_full_scan ?? null };
  }

  /** Paths recorded so far are moot: the next take is a full scan. */
  distrust(volume: string, reason: string): void {
    this.#db.transaction(() => {
      this.#stmt('DELETE FROM journal WHERE volume = ?').run(volume);
      this.#db
        .prepare(
          `INSERT INTO journal_state (volume, trusted, reason, last_full_scan) VALUES (?, 0, ?, NULL)
           ON CONFLICT (volume) DO UPDATE SET trusted = 0, reason = excluded.reason`,
        )
        .run(volume, reason);
    }).immediate();
  }

  trust(volume: string, fullScanAt: string): void {
    this.#db
      .prepare(
        `INSERT INTO journal_state (volume, trusted, reason, last_full_scan) VALUES (?, 1, NULL, ?)
         ON CONFLICT (volume) DO UPDATE SET trusted = 1, reason = NULL, last_full_scan = excluded.last_full_scan`,
      )
      .run(volume, fullScanAt);
  }
}
