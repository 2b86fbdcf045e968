import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { CorruptIndexError } from '../errors/errors.ts';
import type { BlobId } from './ids.ts';
import { syncDir } from '../util/durable.ts';
import type { Snapshot } from './snapshot.ts';

/**
 * A snapshot's record, one file per snapshot under snapshots/, written once:
 * what says a snapshot exists. The index's snapshot rows are a cache of these
 * files, as its blob rows are of the packs' trailers, so a lost or damaged
 * index can be rebuilt from the files and the packs alone. A record is clear
 * JSON (times, host, path, tree and meta ids, tags, stats), as the rows are,
 * so a peer can list and prune a replica without the password.
 */
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const snapshotRecordSchema = z.strictObject({
  id: hex64,
  time: z.iso.datetime(),
  host: z.string().min(1).max(255),
  source: z.string().min(1).max(4096),
  volume: z.string().min(1).max(255).nullable(),
  parent: hex64.nullable(),
  tree: hex64,
  meta: hex64.nullable(),
  tags: z.array(z.string().max(512)).max(64),
  splitter: z.strictObject({ kind: z.enum(['fixed', 'cdc']), size: z.number().int().min(4096).max(8 * 1024 * 1024) }),
  stats: z.record(z.string().max(64), count),
});
export type SnapshotRecord = z.infer<typeof snapshotRecordSchema>;

export const SNAPSHOT_ID = /^[0-9a-f]{64}$/;

export function toRecord(s: Snapshot): SnapshotRecord {
  return {
    id: s.id,
    time: s.time,
    host: s.host,
    source: s.source,
    volume: s.volume,
    parent: s.parent,
    tree: s.tree.toString('hex'),
    meta: s.meta ? s.meta.toString('hex') : null,
    tags: [...s.tags],
    splitter: { kind: s.splitter.kind, size: s.splitter.size },
    stats: { ...s.stats },
  };
}

export function fromRecord(r: SnapshotRecord): Snapshot {
  return {
    ...r,
    tree: Buffer.from(r.tree, 'hex') as BlobId,
    meta: r.meta === null ? null : (Buffer.from(r.meta, 'hex') as BlobId),
    stats: r.stats as unknown as Snapshot['stats'],
  };
}

/** A record's bytes parsed and checked; `onBad` makes the error (a damaged file, or a peer's bad message). */
export function parseRecord(bytes: Buffer, onBad: (why: string) => Error): Snapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw onBad('not JSON');
  }
  const parsed = snapshotRecordSchema.safeParse(raw);
  if (!parsed.success) throw onBad(z.prettifyError(parsed.error).split('\n')[0] ?? 'malformed');
  return fromRecord(parsed.data);
}

export const snapshotsDir = (repoDir: string): string => path.join(repoDir, 'snapshots');
const recordPath = (repoDir: string, id: string): string => path.join(snapshotsDir(repoDir), id);

/** Ids of the records on disk (temporary files of an interrupted write left out). */
export function listRecordIds(repoDir: string): string[] {
  return fs.readdirSync(snapshotsDir(repoDir)).filter((n) => SNAPSHOT_ID.test(n));
}

export function readRecord(repoDir: string, id: string): Snapshot {
  const file = recordPath(repoDir, id);
  const s = parseRecord(fs.readFileSync(file), (why) => new CorruptIndexError(`snapshot record ${file} is damaged: ${why}`));
  if (s.id !== id) throw new CorruptIndexError(`snapshot record ${file} is damaged: it names snapshot ${s.id.slice(0, 8)}`);
  return s;
}

/**
 * Writes a record durably (temporary file, fsync, rename, directory fsync).
 * Synchronous: it runs inside the index transaction that adds the row, so no
 * other process sees one without the other.
 */
export function writeRecord(repoDir: string, s: Snapshot): void {
  const file = recordPath(repoDir, s.id);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeFileSync(fd, JSON.stringify(toRecord(s)));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(snapshotsDir(repoDir));
}

export function removeRecord(repoDir: string, id: string): void {
  fs.rmSync(recordPath(repoDir, id), { force: true });
}

/** Every snapshot the repository holds, from the records themselves (what prune and an index rebuild go by). */
export function readAllRecords(repoDir: string): Snapshot[] {
  return listRecordIds(repoDir).map((id) => readRecord(repoDir, id));
}

/**
 * The snapshots' generation: a counter written beside the records, and in
 * the index's meta table, each time a snapshot is added or forgotten (in the
 * same transaction). An index whose generation is behind the records' is
 * older than them: a row it has and the records lack is a snapshot forgotten
 * since, not a record lost. A missing or unreadable file counts as 0.
 */
const generationPath = (repoDir: string): string => path.join(snapshotsDir(repoDir), 'generation');

export function readGeneration(repoDir: string): number {
  try {
    const n = Number(fs.readFileSync(generationPath(repoDir), 'utf8').trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function writeGeneration(repoDir: string, n: number): void {
  const file = generationPath(repoDir);
  const fd = fs.openSync(`${file}.tmp`, 'w', 0o600);
  try {
    fs.writeFileSync(fd, `${n}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(`${file}.tmp`, file);
  syncDir(snapshotsDir(repoDir));
}
