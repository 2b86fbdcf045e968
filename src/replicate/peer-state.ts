import type { Db } from '../db/database.ts';

/** What the source remembers of a peer between pushes and restarts (agent catalog). */
export interface PeerRecord {
  readonly lastAttempt: string | null;
  readonly lastSuccess: string | null;
  readonly lastError: string | null;
  /** Failed pushes since the last success. */
  readonly failures: number;
  /** Stored bytes sent to this peer, all pushes together. */
  readonly bytesSent: number;
  /** The last successful push's report (JSON), for status. */
  readonly lastPush: Record<string, number> | null;
}

interface Row {
  last_attempt: string | null;
  last_success: string | null;
  last_error: string | null;
  failures: number;
  bytes_sent: number;
  last_push: string | null;
}

/** The replication rows of the agent catalog, keyed by the peer's id (a renamed peer keeps its history). */
export class PeerStateStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  record(peer: string): PeerRecord {
    const r = this.#db.prepare('SELECT * FROM peer_state WHERE peer = ?').get(peer) as Row | undefined;
    return {
      lastAttempt: r?.last_attempt ?? null,
      lastSuccess: r?.last_success ?? null,
      lastError: r?.last_error ?? null,
      failures: r?.failures ?? 0,
      bytesSent: r?.bytes_sent ?? 0,
      lastPush: r?.last_push ? (JSON.parse(r.last_push) as Record<string, number>) : null,
    };
  }

  /** Snapshots the peer holds, as far as this agent knows (told at each push). */
  markReplicated(peer: string, snapshots: readonly string[]): void {
    const insert = this.#db.prepare('INSERT OR IGNORE INTO replicated (peer, snapshot, time) VALUES (?, ?, ?)');
    const now = new Date().toISOString();
    this.#db.transaction(() => {
      for (const s of snapshots) insert.run(peer, s, now);
    }).immediate();
  }

  /** Of `snapshots`, those the peer is not known to hold. */
  pending<T extends { readonly id: string }>(peer: string, snapshots: readonly T[]): T[] {
    // one query, not one a snapshot: a status with tens of thousands of them stays in milliseconds
    const held = new Set(this.#db.prepare('SELECT snapshot FROM replicated WHERE peer = ?').pluck().all(peer) as string[]);
    return snapshots.filter((s) => !held.has(s.id));
  }

  attempted(peer: string, at: string): void {
    this.#db
      .prepare('INSERT INTO peer_state (peer, last_attempt) VALUES (?, ?) ON CONFLICT (peer) DO UPDATE SET last_attempt = excluded.last_attempt')
      .run(peer, at);
  }

  succeeded(peer: string, at: string, report: Record<string, number>): void {
    this.#db
      .prepare(
        `INSERT INTO peer_state (peer, last_attempt, last_success, last_error, failures, bytes_sent, last_push) VALUES (?, ?, ?, NULL, 0, ?, ?)
         ON CONFLICT (peer) DO UPDATE SET last_success = excluded.last_success, last_error = NULL, failures = 0,
           bytes_sent = bytes_sent + excluded.bytes_sent, last_push = excluded.last_push`,
      )
      .run(peer, at, at, report.bytes_sent ?? 0, JSON.stringify(report));
  }

  failed(peer: string, error: string, bytesSent: number): void {
    this.#db
      .prepare(
        `INSERT INTO peer_state (peer, last_error, failures, bytes_sent) VALUES (?, ?, 1, ?)
         ON CONFLICT (peer) DO UPDATE SET last_error = excluded.last_error, failures = failures + 1, bytes_sent = bytes_sent + excluded.bytes_sent`,
      )
      .run(peer, error, bytesSent);
  }
}
