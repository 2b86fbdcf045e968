import type { PackEntry } from './pack.ts';
import type { Store } from './store.ts';
import { commitPack } from './writer.ts';
import { INDEX_DB } from './index-db.ts';

/**
 * What a replica asked its source for during one push: a temporary table on
 * the index's own connection, so a received pack's rows, the tree references
 * it brings and the marks that its blobs were taken commit in one transaction.
 */
export class ReceiveLedger {
  readonly #asked: (id: Buffer) => [type: number, taken: number] | undefined;
  readonly #ask: (id: Buffer, type: number) => void;
  readonly #commit: (name: string, size: number, entries: readonly PackEntry[], refs: Iterable<readonly [Buffer, Buffer]>) => void;

  constructor(store: Store) {
    const db = store[INDEX_DB];
    db.exec('CREATE TEMP TABLE IF NOT EXISTS asked (id BLOB PRIMARY KEY, type INTEGER NOT NULL, taken INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID; DELETE FROM temp.asked;');
    const asked = db.prepare('SELECT type, taken FROM temp.asked WHERE id = ?').raw();
    this.#asked = (id) => asked.get(id) as [number, number] | undefined;
    const ask = db.prepare('INSERT OR IGNORE INTO temp.asked (id, type) VALUES (?, ?)');
    this.#ask = (id, type) => ask.run(id, type);
    const taken = db.prepare('UPDATE temp.asked SET taken = 1 WHERE id = ?');
    const insertRef = db.prepare('INSERT OR IGNORE INTO refs (parent, child) VALUES (?, ?)');
    this.#commit = db.transaction((name: string, size: number, entries: readonly PackEntry[], refs: Iterable<readonly [Buffer, Buffer]>) => {
      commitPack(store, name, size, entries);
      for (const [parent, child] of refs) insertRef.run(parent, child);
      for (const e of entries) taken.run(e.id);
    });
  }

  /** The blob's type as asked and whether a committed pack brought it; undefined if never asked. */
  asked(id: Buffer): [type: number, taken: number] | undefined {
    return this.#asked(id);
  }

  ask(id: Buffer, type: number): void {
    this.#ask(id, type);
  }

  /** Indexes a received pack with the references between its blobs and what they name, and marks its blobs taken. */
  commitPack(name: string, size: number, entries: readonly PackEntry[], refs: Iterable<readonly [Buffer, Buffer]>): void {
    this.#commit(name, size, entries, refs);
  }
}
