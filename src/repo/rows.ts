import type Database from 'better-sqlite3';
import { CorruptIndexError } from '../errors/errors.ts';
import { BLOB_ID_BYTES, type BlobId, type BlobType, BlobType as BT, MAX_STORED_BLOB, maxRawLength } from './ids.ts';

/**
 * Rows read back from index.db, checked before use: SQLite keeps any value
 * in any column, so a damaged page can hand back a NULL pack name or a text
 * offset, which would surface far away as a TypeError. Here it is the index's
 * damage, with its code.
 */
const BLOB_TYPES: ReadonlySet<unknown> = new Set(Object.values(BT));
const PACK_NAME = /^[0-9a-f]{32}$/;

const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function damaged(what: string): CorruptIndexError {
  return new CorruptIndexError(`the repository index is damaged: ${what}`);
}

export interface PackRow {
  readonly id: number;
  readonly name: string;
  readonly size: number;
}

export function packRow(r: Record<string, unknown>): PackRow {
  if (!count(r.id) || typeof r.name !== 'string' || !PACK_NAME.test(r.name) || !count(r.size)) throw damaged(`a pack row is malformed (${JSON.stringify(r.name)})`);
  return r as unknown as PackRow;
}

export interface BlobRow {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

/** A blob's row (id, type, offset, length, rawLength), with `pack` (a name) when the query joined it. */
export function blobRow<T extends Partial<{ pack: string }>>(r: Record<string, unknown>): BlobRow & T {
  if (r.id !== undefined && !(Buffer.isBuffer(r.id) && r.id.length === BLOB_ID_BYTES)) throw damaged('a blob row has no valid id');
  if (!BLOB_TYPES.has(r.type) || !count(r.offset) || !count(r.length) || !count(r.rawLength)) throw damaged('a blob row is malformed');
  if ((r.rawLength as number) > maxRawLength(r.type as number) || (r.length as number) > MAX_STORED_BLOB) throw damaged(`a blob row claims ${r.rawLength as number} bytes, more than a blob of its type may hold`);
  if (r.pack !== undefined && (typeof r.pack !== 'string' || !PACK_NAME.test(r.pack))) throw damaged('a blob row names no valid pack');
  return r as unknown as BlobRow & T;
}

/**
 * Where blobs are stored, by id, on an index connection (a store's, or a
 * worker's read-only one). The pack's name by a subquery: the same lookup as
 * a JOIN took about four times as long with this SQLite (~12 µs), and a push
 * or a restore locates every blob. A blob whose pack row is gone has no
 * location, as with the JOIN.
 */
export function blobLocator(db: Database.Database): (id: Buffer) => (BlobRow & { pack: string }) | undefined {
  const locate = db.prepare(
    `SELECT type, (SELECT name FROM packs WHERE id = blobs.pack) AS pack, offset, length, raw_length AS rawLength
     FROM blobs WHERE id = ?`,
  );
  return (blob) => {
    const row = locate.get(blob) as Record<string, unknown> | undefined;
    return row && row.pack !== null ? blobRow<{ pack: string }>(row) : undefined;
  };
}

/**
 * Whether the index vouches for a blob: its row names a pack the index knows.
 * A row whose pack row is gone (damage, or a pack found missing) is no
 * blob: a backup stores it again rather than point a snapshot at it.
 */
export function blobPresence(db: Database.Database): (id: Buffer) => boolean {
  const has = db.prepare('SELECT 1 FROM blobs WHERE id = ? AND EXISTS (SELECT 1 FROM packs WHERE id = blobs.pack)').pluck();
  return (blob) => has.get(blob) !== undefined;
}
