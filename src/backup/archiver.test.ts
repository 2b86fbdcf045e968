import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SourceError } from '../errors/errors.ts';
import { StoreHookedPool } from './testing/store-hook.ts';
import type { StoreItem, StoreReply } from './jobs.ts';
import { backup } from './archiver.ts';
import { BlobType } from '../repo/ids.ts';
import { listPackFiles, packPath, readPackTrailer } from '../repo/pack.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { INDEX_DB } from '../repo/index-db.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

interface BlobRow {
  type: number;
  raw: number;
}

/** Every blob in the index, id hex → type and raw length. */
function indexed(t: TestRepo): Map<string, BlobRow> {
  const rows = t.repo[INDEX_DB].prepare('SELECT id, type, raw_length AS raw FROM blobs').all() as ({ id: Buffer } & BlobRow)[];
  return new Map(rows.map((r) => [r.id.toString('hex'), { type: r.type, raw: r.raw }]));
}

/** Blobs added since `before`: raw lengths of the data blobs (sorted) and of everything. */
function added(before: Map<string, BlobRow>, after: Map<string, BlobRow>): { data: number[]; total: number } {
  const fresh = [...after].filter(([id]) => !before.has(id)).map(([, r]) => r);
  return {
    data: fresh.filter((r) => r.type === BlobType.data).map((r) => r.raw).sort((a, b) => a - b),
    total: fresh.reduce((n, r) => n + r.raw, 0),
  };
}

/** Blobs in all pack files, by their trailers: more than the index holds means something was stored twice. */
async function storedEntries(t: TestRepo): Promise<number> {
  let n = 0;
  for (const name of await listPackFiles(t.dir)) n += readPackTrailer(packPath(t.dir, name), name).length;
  return n;
}

async function overwrite(file: string, offset: number, data: Buffer): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}

describe('incremental backup', () => {
  let t: TestRepo;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = path.join(await t.temp.make('lifeboat-src-'), 'data');
    await fsp.mkdir(path.join(src, 'sub', 'deeper'), { recursive: true });
    await fsp.writeFile(path.join(src, 'big.db'), pseudoRandomBytes(MiB, 1));
    await fsp.writeFile(path.join(src, 'small.txt'), 'hello\n');
    await fsp.writeFile(path.join(src, 'sub', 'mid.bin'), pseudoRandomBytes(100 * KiB, 2));
    await fsp.writeFile(path.join(src, 'sub', 'deeper', 'empty'), '');
  });
  afterEach(() => t.close());

  it('reads nothing and stores nothing when nothing changed, and records the parent', async () => {
    const first = await backupDir(t, src);
    expect(first.parent).toBeNull();
    expect(first.stats).toMatchObject({ files: 4, files_new: 4, bytes_read: MiB + 100 * KiB + 6, bytes_total: MiB + 100 * KiB + 6 });
    expect(first.stats.bytes_new).toBeGreaterThanOrEqual(MiB + 100 * KiB);
    expect(first.stats.bytes_stored).toBeGreaterThan(MiB);

    const second = await backupDir(t, src);
    expect(second.parent).toBe(first.id);
    expect(second.stats).toMatchObject({
      files: 4,
      files_unchanged: 4,
      files_new: 0,
      files_changed: 0,
      bytes_read: 0,
      bytes_new: 0,
      blobs_new: 0,
      bytes_stored: 0,
    });
    expect(second.tree.equals(first.tree)).toBe(true);
  });

  it('stores only the touched blocks of an in-place change (fixed 64 KiB blocks)', async () => {
    const first = await backupDir(t, src);
    const before1 = indexed(t);

    // 4 KiB in place inside one block, size kept, mtime moved.
    const big = path.join(src, 'big.db');
    await overwrite(big, 5 * 64 * KiB + 8 * KiB, pseudoRandomBytes(4 * KiB, 3));
    await fsp.utimes(big, new Date('2030-01-01T00:00:00Z'), new Date('2030-01-01T00:00:00Z'));
    const second = await backupDir(t, src);
    expect(second.parent).toBe(first.id);
    expect(second.stats).toMatchObject({ files_changed: 1, files_unchanged: 3, bytes_read: MiB });
    const new1 = added(before1, indexed(t));
    expect(new1.data).toEqual([64 * KiB]);
    // bytes_new is exactly what was added: that block and the trees on its path (root and top).
    expect(second.stats.bytes_new).toBe(new1.total);
    expect(second.stats.bytes_new).toBeLessThanOrEqual(2 * 64 * KiB);

    // 4 KiB straddling a block boundary: two blocks, no more.
    const before2 = indexed(t);
    await overwrite(big, 9 * 64 * KiB - 2 * KiB, pseudoRandomBytes(4 * KiB, 4));
    await fsp.utimes(big, new Date('2031-01-01T00:00:00Z'), new Date('2031-01-01T00:00:00Z'));
    const third = await backupDir(t, src);
    expect(third.parent).toBe(second.id);
    const new2 = added(before2, indexed(t));
    expect(new2.data).toEqual([64 * KiB, 64 * KiB]);
    expect(third.stats.bytes_new).toBe(new2.total);
    expect(third.stats.bytes_new).toBeLessThanOrEqual(2 * 64 * KiB + 4 * KiB);

    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, third, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
  });

  it('with 4 KiB blocks an aligned 4 KiB change stores one block and one list, however large the file', async () => {
    const splitter = { kind: 'fixed' as const, size: 4 * KiB };
    // 1,280 blocks: two lists (1,024 and 256 ids), so the tree node holds two ids, not 1,280.
    await fsp.writeFile(path.join(src, 'big.db'), pseudoRandomBytes(5 * MiB, 1));
    await backupDir(t, src, { splitter });
    const before = indexed(t);
    await overwrite(path.join(src, 'big.db'), 100 * 4 * KiB, pseudoRandomBytes(4 * KiB, 5));
    const second = await backupDir(t, src, { splitter });
    const fresh = [...indexed(t)].filter(([id]) => !before.has(id)).map(([, r]) => r);
    expect(fresh.filter((r) => r.type === BlobType.data).map((r) => r.raw)).toEqual([4 * KiB]);
    expect(fresh.filter((r) => r.type === BlobType.list).map((r) => r.raw)).toEqual([1024 * 32]);
    expect(second.stats.bytes_new).toBe(fresh.reduce((n, r) => n + r.raw, 0));
    // The changed block, the first list (32 KiB), and two small trees: nothing that grows with the file.
    expect(second.stats.bytes_new).toBeLessThan(4 * KiB + 32 * KiB + 2 * KiB);
    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, second, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
  });

  it('stores only the touched blocks of a file read in several worker ranges', async () => {
    const huge = path.join(src, 'huge.db');
    await fsp.writeFile(huge, pseudoRandomBytes(20 * MiB, 11));
    await backupDir(t, src);
    const before = indexed(t);
    // Straddles the first range boundary (8 MiB): one block on each side.
    await overwrite(huge, 8 * MiB - 2 * KiB, pseudoRandomBytes(4 * KiB, 12));
    const second = await backupDir(t, src);
    expect(second.stats).toMatchObject({ files_changed: 1, bytes_read: 20 * MiB });
    const fresh = added(before, indexed(t));
    expect(fresh.data).toEqual([64 * KiB, 64 * KiB]);
    expect(second.stats.bytes_new).toBe(fresh.total);
    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, second, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
  });

  it('re-reads a file whose contents changed even when size and mtime were put back (ctime)', async () => {
    const file = path.join(src, 'sub', 'mid.bin');
    await fsp.utimes(file, 1_000_000_000, 1_000_000_000); // whole seconds: exactly restorable below
    const first = await backupDir(t, src);
    const mtimeNs = (await fsp.stat(file, { bigint: true })).mtimeNs;
    await overwrite(file, 0, pseudoRandomBytes(100, 6));
    await fsp.utimes(file, 1_000_000_000, 1_000_000_000);
    expect((await fsp.stat(file, { bigint: true })).mtimeNs).toBe(mtimeNs);
    const second = await backupDir(t, src);
    expect(second.parent).toBe(first.id);
    expect(second.stats.files_changed).toBe(1);
    expect(second.stats.bytes_read).toBe(100 * KiB);
    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, second, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
  });

  it('dedups identical files and blocks within one backup', async () => {
    const block = pseudoRandomBytes(64 * KiB, 7);
    await fsp.rm(path.join(src, 'big.db'));
    await fsp.writeFile(path.join(src, 'copy1'), Buffer.concat([block, block, block]));
    await fsp.writeFile(path.join(src, 'sub', 'copy2'), Buffer.concat([block, block]));
    const s = await backupDir(t, src);
    // block, mid.bin's two blocks (64 KiB + 36 KiB), small.txt.
    expect(added(new Map(), indexed(t)).data).toEqual([6, 36 * KiB, 64 * KiB, 64 * KiB]);
    expect(s.stats.bytes_read).toBe(5 * 64 * KiB + 100 * KiB + 6);
  });

  it('stores a block repeated across a pack boundary once', async () => {
    // 2.6 MiB: one worker job that fills more than two 1 MiB packs, with block A at both ends.
    const a = pseudoRandomBytes(64 * KiB, 8);
    const parts = [a, ...Array.from({ length: 40 }, (_, i) => pseudoRandomBytes(64 * KiB, 200 + i)), a];
    await fsp.writeFile(path.join(src, 'repeats.bin'), Buffer.concat(parts));
    await backupDir(t, src);
    expect(await storedEntries(t)).toBe(indexed(t).size);
  });

  it('counts in bytes_new only what the index gained, even when a block was packed twice', async () => {
    const a = pseudoRandomBytes(64 * KiB, 8);
    const parts = [a, ...Array.from({ length: 40 }, (_, i) => pseudoRandomBytes(64 * KiB, 200 + i)), a];
    await fsp.writeFile(path.join(src, 'repeats.bin'), Buffer.concat(parts));
    const shared = pseudoRandomBytes(8 * KiB, 9);
    await fsp.mkdir(path.join(src, 'many'));
    for (let i = 0; i < 400; i++) await fsp.writeFile(path.join(src, 'many', `f${i}`), i % 2 ? shared : Buffer.concat([shared, Buffer.from(String(i))]));
    const s = await backupDir(t, src);
    const all = indexed(t);
    expect(s.stats.bytes_new).toBe(added(new Map(), all).total);
    expect(s.stats.blobs_new).toBe(all.size);
    // Workers do not see each other's unindexed packs, so a block two of them meet at the
    // same time may be packed once per worker. Never worse than that.
    expect(await storedEntries(t)).toBeLessThanOrEqual(all.size + 2 * (t.pool.size - 1) + 1);
  });

  it('refuses a source that is missing or not a directory', async () => {
    await expect(backupDir(t, path.join(src, 'nope'))).rejects.toBeInstanceOf(SourceError);
    await expect(backupDir(t, path.join(src, 'small.txt'))).rejects.toBeInstanceOf(SourceError);
  });
});

describe('snapshot time', () => {
  /** Workers whose every store job takes `delayMs` longer: a slow read. */
  class SlowWorkers extends StoreHookedPool {
    override async store(_items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return send();
    }
  }

  it('is when the data was captured (the read began), not when the snapshot was committed', async () => {
    const t = await openTestRepo();
    const pool = new SlowWorkers(t.repo, { workers: 1, level: 3, packSize: 1 << 20 });
    try {
      const src = path.join(await t.temp.make(), 'src');
      await fsp.mkdir(src);
      await fsp.writeFile(path.join(src, 'f'), pseudoRandomBytes(64 * 1024, 1));
      const began = Date.now();
      const s = await backup(t.repo, { source: src, host: 'h', splitter: { kind: 'fixed', size: 65536 }, packSize: 1 << 20, compressionLevel: 3, pool });
      const committed = Date.now();
      expect(Date.parse(s.time)).toBeGreaterThanOrEqual(began - 1);
      expect(committed - Date.parse(s.time)).toBeGreaterThanOrEqual(290);
      const at = new Date('2026-01-02T03:04:05.000Z');
      const pinned = await backup(t.repo, { source: src, host: 'h', splitter: { kind: 'fixed', size: 65536 }, packSize: 1 << 20, compressionLevel: 3, pool, capturedAt: at });
      expect(pinned.time).toBe(at.toISOString());
    } finally {
      await pool.close();
      await t.close();
    }
  });
});
