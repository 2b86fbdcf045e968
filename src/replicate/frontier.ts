import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import type { Db } from '../db/database.ts';
import type { BlobId, BlobType } from '../repo/ids.ts';
import { CorruptDataError } from '../errors/errors.ts';

export interface Queued {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly counterpart: BlobId | null;
}

export interface NeedRow {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly pack: string;
  readonly offset: number;
  readonly length: number;
  readonly raw: number;
}

/**
 * A push's working set, in a scratch SQLite file rather than memory, so that
 * the first push of a volume of a million files holds a page cache, not a
 * million ids: the ids this push has queued to ask about (`seen`), the level
 * being asked about, and what the peer lacks with where it is stored and
 * what each tree or list names. Deleted when the push ends.
 */
export class Frontier {
  readonly #file: string;
  readonly #db: Db;
  readonly #stmts: {
    markSeen: Database.Statement;
    addNext: Database.Statement;
    takeLevel: Database.Statement;
    dropTaken: Database.Statement;
    addNeed: Database.Statement;
    addEdge: Database.Statement;
    refs: Database.Statement;
    needById: Database.Statement;
  };

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#file = path.join(dir, `push-${crypto.randomBytes(6).toString('hex')}.db`);
    // it holds no secret, but nothing of the agent's is readable by others
    fs.closeSync(fs.openSync(this.#file, 'wx', 0o600));
    this.#db = new Database(this.#file);
    // scratch: nothing here must survive a crash
    this.#db.pragma('journal_mode = OFF');
    this.#db.pragma('synchronous = OFF');
    this.#db.exec(`
      CREATE TABLE seen (id BLOB PRIMARY KEY) WITHOUT ROWID;
      CREATE TABLE level (depth INTEGER NOT NULL, id BLOB NOT NULL, type INTEGER NOT NULL, counterpart BLOB, PRIMARY KEY (depth, id)) WITHOUT ROWID;
      CREATE TABLE need (id BLOB PRIMARY KEY, type INTEGER NOT NULL, pack TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL, raw INTEGER NOT NULL, round INTEGER) WITHOUT ROWID;
      CREATE TABLE edge (parent BLOB NOT NULL, child BLOB NOT NULL, PRIMARY KEY (parent, child)) WITHOUT ROWID;
    `);
    // One transaction for the file's whole life, never committed: a commit per
    // statement wrote its pages to the file each time, most of a push's CPU.
    // Pages stay in SQLite's cache, which spills to the file when full (memory
    // stays bounded). Nothing here needs to be atomic either: a failed push
    // deletes the file.
    this.#db.exec('BEGIN');
    const db = this.#db;
    this.#stmts = {
      markSeen: db.prepare('INSERT OR IGNORE INTO seen (id) VALUES (?)'),
      addNext: db.prepare('INSERT OR IGNORE INTO level (depth, id, type, counterpart) VALUES (?, ?, ?, ?)'),
      takeLevel: db.prepare('SELECT id, type, counterpart FROM level WHERE depth = ? ORDER BY id LIMIT ?'),
      dropTaken: db.prepare('DELETE FROM level WHERE depth = ? AND id <= ?'),
      addNeed: db.prepare('INSERT OR IGNORE INTO need (id, type, pack, offset, length, raw) VALUES (?, ?, ?, ?, ?, ?)'),
      addEdge: db.prepare('INSERT OR IGNORE INTO edge (parent, child) VALUES (?, ?)'),
      refs: db.prepare('SELECT child FROM edge WHERE parent = ?').pluck(),
      needById: db.prepare('SELECT id, type, pack, offset, length, raw FROM need WHERE id = ?'),
    };
  }

  /**
   * Queues an id to ask about at `depth`, unless this push already queued it
   * (at any depth). `counterpart` is the blob at the same place in a snapshot
   * the peer holds, if any: what of it is unchanged need not be asked about.
   */
  enqueue(depth: number, id: BlobId, type: BlobType, counterpart: BlobId | null = null): void {
    if (this.#stmts.markSeen.run(id).changes > 0) this.#stmts.addNext.run(depth, id, type, counterpart);
  }

  /** Takes up to `limit` ids of a level, lowest first (the level only grows while a deeper one is taken). */
  take(depth: number, limit: number): Queued[] {
    const rows = this.#stmts.takeLevel.all(depth, limit) as Queued[];
    if (rows.length > 0) this.#stmts.dropTaken.run(depth, rows.at(-1)!.id);
    return rows;
  }

  need(row: NeedRow, children: readonly BlobId[]): void {
    this.#stmts.addNeed.run(row.id, row.type, row.pack, row.offset, row.length, row.raw);
    for (const c of children) this.#stmts.addEdge.run(row.id, c);
  }

  /** What a tree or list names (all of it, also what the peer has). */
  refs(id: BlobId): BlobId[] {
    return this.#stmts.refs.all(id) as BlobId[];
  }

  needed(id: BlobId): NeedRow | undefined {
    return this.#stmts.needById.get(id) as NeedRow | undefined;
  }

  /**
   * Orders what is needed so that every blob comes after everything it names
   * that is also needed: rounds of a topological sort, done in SQL (as many
   * rounds as the tree is deep). Within a round, pack order, for sequential reads.
   */
  *sendOrder(batch = 4096): Generator<NeedRow> {
    const db = this.#db;
    const pendingChild = 'SELECT 1 FROM edge e JOIN need c ON c.id = e.child WHERE e.parent = need.id AND (c.round IS NULL OR c.round >= ?)';
    const assign = db.prepare(`UPDATE need SET round = ? WHERE round IS NULL AND NOT EXISTS (${pendingChild})`);
    const left = db.prepare('SELECT count(*) FROM need WHERE round IS NULL').pluck();
    for (let round = 0; (left.get() as number) > 0; round++) {
      if (assign.run(round, round).changes === 0) throw new CorruptDataError('the blobs of a snapshot name each other in a cycle');
    }
    db.exec('CREATE INDEX IF NOT EXISTS need_order ON need (round, pack, offset, id)');
    const page = db.prepare(
      'SELECT id, type, pack, offset, length, raw, round FROM need WHERE (round, pack, offset, id) > (?, ?, ?, ?) ORDER BY round, pack, offset, id LIMIT ?',
    );
    let last: [number, string, number, Buffer] = [-1, '', -1, Buffer.alloc(0)];
    for (;;) {
      const rows = page.all(...last, batch) as (NeedRow & { round: number })[];
      if (rows.length === 0) return;
      for (const r of rows) yield r;
      const end = rows.at(-1)!;
      last = [end.round, end.pack, end.offset, end.id];
    }
  }

  /**
   * sendOrder() in runs of blobs stored back to back in one pack, up to
   * `maxBytes` a run (a larger blob is a run of its own): one read each.
   */
  *sendRuns(maxBytes: number): Generator<NeedRow[]> {
    let run: NeedRow[] = [];
    for (const r of this.sendOrder()) {
      const first = run[0];
      const last = run.at(-1);
      if (first && last && (r.pack !== first.pack || r.offset !== last.offset + last.length || r.offset + r.length - first.offset > maxBytes)) {
        yield run;
        run = [];
      }
      run.push(r);
    }
    if (run.length > 0) yield run;
  }

  /** Done with a snapshot: what it needed is on the peer now; `seen` stays for the next. */
  clearNeeds(): void {
    this.#db.exec('DELETE FROM need; DELETE FROM edge; DELETE FROM level; DROP INDEX IF EXISTS need_order;');
  }

  close(): void {
    this.#db.close();
    fs.rmSync(this.#file, { force: true });
  }
}
