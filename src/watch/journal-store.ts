import type { Db } from '../db/database.ts';

/** The journal's rows in the agent catalog: changed paths per volume, and whether the journal is trusted. */
export class JournalStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** Highest sequence number recorded so far: a take covers the rows up to it. */
  lastSeq(): number {
    return (this.#db.prepare('SELECT COALESCE(MAX(seq), 0) FROM journal').pluck().get() as number) ?? 0;
  }

  /** Adds or refreshes paths; a path changed again gets a new sequence number, so a running take will not forget it. */
  record(volume: string, paths: Iterable<string>): void {
    const upsert = this.#db.prepare(
      'INSERT INTO journal (volume, path, seq) VALUES (?, ?, ?) ON CONFLICT (volume, path) DO UPDATE SET seq = excluded.seq',
    );
    this.#db.transaction(() => {
      const seq = this.lastSeq() + 1;
      for (const p of paths) upsert.run(volume, p, seq);
    }).immediate();
  }

  count(volume: string): number {
    return this.#db.prepare('SELECT COUNT(*) FROM journal WHERE volume = ?').pluck().get(volume) as number;
  }

  paths(volume: string, upTo: number): Set<string> {
    return new Set(this.#db.prepare('SELECT path FROM journal WHERE volume = ? AND seq <= ?').pluck().all(volume, upTo) as string[]);
  }

  forget(volume: string, upTo: number): void {
    this.#db.prepare('DELETE FROM journal WHERE volume = ? AND seq <= ?').run(volume, upTo);
  }

  state(volume: string): { trusted: boolean; reason: string | null; lastFullScan: string | null } {
    const row = this.#db.prepare('SELECT trusted, reason, last_full_scan FROM journal_state WHERE volume = ?').get(volume) as
      | { trusted: number; reason: string | null; last_full_scan: string | null }
      | undefined;
    return { trusted: row?.trusted === 1, reason: row ? row.reason : 'never scanned', lastFullScan: row?.last_full_scan ?? null };
  }

  /** Paths recorded so far are moot: the next take is a full scan. */
  distrust(volume: string, reason: string): void {
    this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM journal WHERE volume = ?').run(volume);
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
