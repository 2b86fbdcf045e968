import fs from 'node:fs';
import path from 'node:path';
import { AmbiguousSnapshotError, CorruptDataError, CorruptIndexError, SnapshotNotFoundError } from '../errors/errors.ts';
import { BLOB_ID_BYTES, BlobType } from './ids.ts';
import type { Db } from '../db/database.ts';
import type { Repository } from './repository.ts';
import type { Store } from './store.ts';
import { IMAGE_TAG, shortId, type Snapshot } from './snapshot.ts';
import { z } from 'zod';
import { fromRecord, listRecordIds, readGeneration, readRecord, removeRecord, snapshotRecordSchema, snapshotsDir, writeGeneration, writeRecord } from './snapshot-record.ts';
import { INDEX_DB } from './index-db.ts';

/** A snapshots row as SQLite hands it back: any value in any column, until fromRow checks it. */
type SnapshotRow = Record<'id' | 'time' | 'host' | 'source' | 'volume' | 'parent' | 'tree' | 'meta' | 'tags' | 'splitter' | 'stats', unknown>;

/**
 * A row checked as a record is: every value of its kind, the id 64 hex
 * characters (it names the record's file: a row must not be able to name a
 * path), or the index is damaged.
 */
function fromRow(r: SnapshotRow): Snapshot {
  const bad = (why: string) => new CorruptIndexError(`the index row of snapshot ${JSON.stringify(String(r.id).slice(0, 64))} is damaged: ${why}; rebuild the index with \`lifeboat repair --rebuild-index\``);
  const json = (text: unknown, what: string): unknown => {
    try {
      return JSON.parse(String(text));
    } catch {
      throw bad(`its ${what} is not JSON`);
    }
  };
  const blobHex = (v: unknown, what: string) => {
    if (v === null) return null;
    if (!Buffer.isBuffer(v) || v.length !== BLOB_ID_BYTES) throw bad(`its ${what} id is not one`);
    return v.toString('hex');
  };
  const record = {
    id: r.id,
    time: r.time,
    host: r.host,
    source: r.source,
    volume: r.volume,
    parent: r.parent,
    tree: blobHex(r.tree, 'tree') ?? '',
    meta: blobHex(r.meta, 'meta'),
    tags: json(r.tags, 'tags'),
    splitter: json(r.splitter, 'splitter'),
    stats: json(r.stats, 'stats'),
  };
  const parsed = snapshotRecordSchema.safeParse(record);
  if (!parsed.success) throw bad(z.prettifyError(parsed.error).split('\n')[0] ?? 'malformed');
  return fromRecord(parsed.data);
}

export function insertRow(db: Db, s: Snapshot): void {
  db
    .prepare(
      `INSERT OR IGNORE INTO snapshots (id, time, host, source, volume, parent, tree, meta, tags, splitter, stats)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(s.id, s.time, s.host, s.source, s.volume, s.parent, s.tree, s.meta, JSON.stringify(s.tags), JSON.stringify(s.splitter), JSON.stringify(s.stats));
}

/**
 * The last step of the write order: the snapshot's record file, then its
 * row, in one index transaction (so no other process sees one without the
 * other), after all its blobs are indexed.
 */
export function saveSnapshot(repo: Store, s: Snapshot): void {
  repo[INDEX_DB].transaction(() => {
    writeRecord(repo.dir, s);
    insertRow(repo[INDEX_DB], s);
    nextGeneration(repo);
  }).immediate();
}

/**
 * Row, then file, in one transaction: a crash in between leaves a record
 * without its row, which the next open takes back (a snapshot forgotten
 * again later, never one lost).
 */
export function deleteSnapshots(repo: Store, ids: readonly string[]): void {
  if (ids.length === 0) return;
  const del = repo[INDEX_DB].prepare('DELETE FROM snapshots WHERE id = ?');
  repo[INDEX_DB].transaction(() => {
    for (const id of ids) {
      del.run(id);
      removeRecord(repo.dir, id);
    }
    nextGeneration(repo);
  }).immediate();
}

/** The index's snapshot generation (see readGeneration); 0 for an index that never had one. */
export function indexGeneration(db: Db): number {
  const v = Number(db.prepare("SELECT value FROM meta WHERE key = 'generation'").pluck().get() ?? 0);
  return Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

export function setIndexGeneration(db: Db, n: number): void {
  db.prepare("INSERT INTO meta (key, value) VALUES ('generation', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(String(n));
}

/** Moves both generations past either (inside the caller's transaction). */
function nextGeneration(repo: Store): void {
  const n = Math.max(readGeneration(repo.dir), indexGeneration(repo[INDEX_DB])) + 1;
  writeGeneration(repo.dir, n);
  setIndexGeneration(repo[INDEX_DB], n);
}

/**
 * Brings the index's snapshot rows in line with the record files, which are
 * the truth. A record without its row (a crash between the two, or rows
 * lost) gets its row back when its tree and meta are indexed. A row without
 * its record is, by the generations (see readGeneration): in an index older
 * than the records, a snapshot forgotten since, whose row goes; otherwise a
 * lost record, written again from the row. A record whose blobs the index
 * does not know means the index is stale or damaged: refused, with the way
 * out, rather than taken for a repository without that snapshot. A
 * repository of the first layout (no snapshots/ directory) gets one file per
 * row.
 */
export function reconcileSnapshots(repo: Store): void {
  const dir = snapshotsDir(repo.dir);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { mode: 0o700 });
    for (const s of listSnapshots(repo)) writeRecord(repo.dir, s);
    writeGeneration(repo.dir, indexGeneration(repo[INDEX_DB]));
    return;
  }
  const rowIds = repo[INDEX_DB].prepare('SELECT id FROM snapshots').pluck();
  const differ = () => {
    const files = new Set(listRecordIds(repo.dir));
    const rows = new Set(rowIds.all() as string[]);
    return { onlyFiles: [...files].filter((id) => !rows.has(id)), onlyRows: [...rows].filter((id) => !files.has(id)) };
  };
  if (sameSets(differ()) && readGeneration(repo.dir) === indexGeneration(repo[INDEX_DB])) return;
  const unknown: string[] = [];
  repo[INDEX_DB].transaction(() => {
    const { onlyFiles, onlyRows } = differ();
    const files = readGeneration(repo.dir);
    const index = indexGeneration(repo[INDEX_DB]);
    for (const id of onlyFiles) {
      const s = readRecord(repo.dir, id);
      if (repo.hasBlob(s.tree) && (!s.meta || repo.hasBlob(s.meta))) insertRow(repo[INDEX_DB], s);
      else unknown.push(id);
    }
    if (unknown.length > 0) return;
    if (index < files) {
      const del = repo[INDEX_DB].prepare('DELETE FROM snapshots WHERE id = ?');
      for (const id of onlyRows) del.run(id);
      setIndexGeneration(repo[INDEX_DB], files);
    } else {
      const byId = repo[INDEX_DB].prepare('SELECT * FROM snapshots WHERE id = ?');
      for (const id of onlyRows) {
        const row = byId.get(id) as SnapshotRow | undefined;
        // listed by id, not found by it: the table and its index disagree
        if (!row) throw new CorruptIndexError(`the index of ${repo.dir} is damaged: snapshot ${String(id).slice(0, 64)} is listed but has no row; rebuild it with \`lifeboat repair --rebuild-index\``);
        writeRecord(repo.dir, fromRow(row));
      }
      if (files < index) writeGeneration(repo.dir, index);
    }
  }).immediate();
  if (unknown.length > 0) {
    throw new CorruptIndexError(
      `the index of ${repo.dir} does not know the data of ${unknown.length} snapshots the repository holds (${unknown.slice(0, 3).map(shortId).join(', ')}${unknown.length > 3 ? ', ...' : ''}): it is stale or damaged; rebuild it from the packs with \`lifeboat repair --rebuild-index\``,
    );
  }
}

const sameSets = (d: { onlyFiles: string[]; onlyRows: string[] }) => d.onlyFiles.length === 0 && d.onlyRows.length === 0;

/** The rows of an index that read as snapshots, by id (a damaged one is left out): what a rebuild can write records from. */
export function readableRows(db: Db): Map<string, Snapshot> {
  const out = new Map<string, Snapshot>();
  for (const row of db.prepare('SELECT * FROM snapshots').all() as SnapshotRow[]) {
    try {
      const s = fromRow(row);
      out.set(s.id, s);
    } catch {
      // damaged: the record, if any, is what counts
    }
  }
  return out;
}

/** Oldest first. */
export function listSnapshots(repo: Store): Snapshot[] {
  return (repo[INDEX_DB].prepare('SELECT * FROM snapshots ORDER BY time, id').all() as SnapshotRow[]).map(fromRow);
}

/** What listings that run often (status, metrics) need of a snapshot. */
export interface SnapshotHead {
  readonly id: string;
  readonly time: string;
  readonly host: string;
  readonly source: string;
  readonly volume: string | null;
}

/** How many snapshots the repository holds and the newest one's time. */
export function snapshotSummary(repo: Store): { count: number; newest: string | null } {
  const row = repo[INDEX_DB].prepare('SELECT count(*) AS n, max(time) AS newest FROM snapshots').get() as { n: number; newest: string | null };
  return { count: row.n, newest: row.newest };
}

/** What the repository holds: its packs' bytes, and its blobs by number, stored and plain size. */
export interface RepositoryTotals {
  readonly packs: number;
  readonly pack_bytes: number;
  readonly blobs: number;
  readonly stored_bytes: number;
  readonly raw_bytes: number;
  readonly snapshots: number;
}

/** Snapshots and pack bytes: what a metrics scrape asks, from the small tables only. */
export function repositorySize(repo: Store): { snapshots: number; packs: number; packBytes: number } {
  const packs = repo[INDEX_DB].prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM packs').get() as { n: number; bytes: number };
  return { snapshots: snapshotSummary(repo).count, packs: packs.n, packBytes: packs.bytes };
}

export function repositoryTotals(repo: Store): RepositoryTotals {
  const db = repo[INDEX_DB];
  const size = repositorySize(repo);
  const blobs = db.prepare('SELECT count(*) AS n, coalesce(sum(length), 0) AS stored, coalesce(sum(raw_length), 0) AS raw FROM blobs').get() as { n: number; stored: number; raw: number };
  return { packs: size.packs, pack_bytes: size.packBytes, blobs: blobs.n, stored_bytes: blobs.stored, raw_bytes: blobs.raw, snapshots: size.snapshots };
}

/** The tree a snapshot row names; undefined when the repository has no such snapshot. */
export function snapshotTree(repo: Store, id: string): Buffer | undefined {
  return repo[INDEX_DB].prepare('SELECT tree FROM snapshots WHERE id = ?').pluck().get(id) as Buffer | undefined;
}

/**
 * Every snapshot's id, time, host, source and volume, oldest first, without
 * parsing the rest of its row: a status or a metrics scrape costs milliseconds with
 * tens of thousands of snapshots (continuous mode makes a few a minute).
 */
export function listSnapshotHeads(repo: Store): SnapshotHead[] {
  const rows = repo[INDEX_DB].prepare('SELECT id, time, host, source, volume FROM snapshots ORDER BY time, id').raw().all() as unknown[][];
  return rows.map(([id, time, host, source, volume]) => {
    if (![id, time, host, source].every((v) => typeof v === 'string') || (volume !== null && typeof volume !== 'string')) {
      throw new CorruptIndexError(`the index row of snapshot ${JSON.stringify(String(id).slice(0, 64))} is damaged; rebuild the index with \`lifeboat repair --rebuild-index\``);
    }
    return { id, time, host, source, volume } as SnapshotHead;
  });
}

/** The snapshots with these ids, whole, in the order given (ids without a row are left out). */
export function snapshotsById(repo: Store, ids: readonly string[]): Snapshot[] {
  const get = repo[INDEX_DB].prepare('SELECT * FROM snapshots WHERE id = ?');
  return ids.flatMap((id) => {
    const row = get.get(id) as SnapshotRow | undefined;
    return row ? [fromRow(row)] : [];
  });
}

/** The newest snapshot of the same host and source: the parent an incremental backup compares against. */
export function latestSnapshotOf(repo: Store, host: string, source: string): Snapshot | undefined {
  const row = repo[INDEX_DB]
    .prepare('SELECT * FROM snapshots WHERE host = ? AND source = ? ORDER BY time DESC, id DESC LIMIT 1')
    .get(host, source) as SnapshotRow | undefined;
  return row && fromRow(row);
}

/**
 * restic's snapshot filters: every one given must match; `tags` all of them.
 * `path` is the backed-up directory, absolute.
 */
export interface SnapshotFilter {
  readonly host?: string | undefined;
  readonly volume?: string | undefined;
  readonly path?: string | undefined;
  readonly tags?: readonly string[] | undefined;
}

export function isFiltered(f: SnapshotFilter): boolean {
  return f.host !== undefined || f.volume !== undefined || f.path !== undefined || (f.tags?.length ?? 0) > 0;
}

export function matches(s: Snapshot, f: SnapshotFilter): boolean {
  return (
    (f.host === undefined || s.host === f.host) &&
    (f.volume === undefined || s.volume === f.volume) &&
    (f.path === undefined || s.source === path.resolve(f.path)) &&
    (f.tags ?? []).every((t) => s.tags.includes(t))
  );
}

/** Snapshots the filter selects, oldest first. */
export function filterSnapshots(repo: Store, f: SnapshotFilter): Snapshot[] {
  return listSnapshots(repo).filter((s) => matches(s, f));
}

/** What a snapshot is of, as a person names it: the volume, else the host and path. */
const sourceOf = (s: Snapshot): string => (s.volume !== null ? `volume ${s.volume} on ${s.host}` : `${s.host}:${s.source}`);

/**
 * Resolves "latest", a full id, or a unique prefix of at least 4 characters,
 * among the snapshots the filter selects. "latest" is the newest of one
 * source: when the selected snapshots are of several (volumes, hosts, paths),
 * it is ambiguous, and the error names them, so that restoring "latest" never
 * takes another source's data. Image snapshots (the images a volume's
 * containers use) count for "latest" only when asked for by their tag.
 */
export function findSnapshot(repo: Store, ref: string, filter: SnapshotFilter = {}): Snapshot {
  if (ref === 'latest') {
    const images = filter.tags?.includes(IMAGE_TAG) ?? false;
    const candidates = filterSnapshots(repo, filter).filter((s) => images || !s.tags.includes(IMAGE_TAG));
    const newest = candidates.at(-1);
    if (!newest) throw new SnapshotNotFoundError(isFiltered(filter) ? `latest (${describeFilter(filter)})` : ref);
    const sources = new Map<string, Snapshot>();
    for (const s of candidates) sources.set(`${s.host}\0${s.source}`, s);
    if (sources.size > 1) {
      const choices = [...sources.values()].map(sourceOf).sort();
      throw new AmbiguousSnapshotError(
        `"latest" matches snapshots of ${sources.size} sources (${choices.slice(0, 8).join('; ')}${choices.length > 8 ? '; ...' : ''}); choose one with --volume, --host, --path or --tag, or give a snapshot id`,
      );
    }
    return newest;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref)) throw new SnapshotNotFoundError(ref);
  const rows = (repo[INDEX_DB].prepare("SELECT * FROM snapshots WHERE id >= ? AND id < ? || 'g'").all(ref, ref) as SnapshotRow[]).map(fromRow).filter((s) => matches(s, filter));
  if (rows.length === 0) throw new SnapshotNotFoundError(ref);
  if (rows.length > 1) throw new AmbiguousSnapshotError(`snapshot prefix ${JSON.stringify(ref)} matches ${rows.length} snapshots; give more characters`);
  return rows[0]!;
}

function describeFilter(f: SnapshotFilter): string {
  return [
    f.host !== undefined ? `host ${f.host}` : '',
    f.volume !== undefined ? `volume ${f.volume}` : '',
    f.path !== undefined ? `path ${path.resolve(f.path)}` : '',
    ...(f.tags ?? []).map((t) => `tag ${t}`),
  ]
    .filter(Boolean)
    .join(', ');
}

/** The sealed metadata a snapshot was saved with (JSON), or null. */
export async function loadSnapshotMeta(repo: Pick<Repository, 'loadBlob'>, s: Snapshot): Promise<unknown> {
  if (!s.meta) return null;
  try {
    return JSON.parse((await repo.loadBlob(s.meta, BlobType.meta)).toString('utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) throw new CorruptDataError(`metadata of snapshot ${s.id.slice(0, 8)} is not JSON`);
    throw err;
  }
}

/** Snapshots carrying a tag, newest first. */
export function snapshotsTagged(repo: Store, tag: string): Snapshot[] {
  const rows = repo[INDEX_DB]
    .prepare('SELECT * FROM snapshots WHERE EXISTS (SELECT 1 FROM json_each(snapshots.tags) WHERE value = ?) ORDER BY time DESC, id DESC')
    .all(tag) as SnapshotRow[];
  return rows.map(fromRow);
}
