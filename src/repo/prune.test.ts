import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RepositoryLockedError } from '../errors/errors.ts';
import { storeFiles } from '../backup/jobs.ts';
import { blobId, seal } from './crypto.ts';
import { BlobType } from './ids.ts';
import { flushPacks } from './jobs.ts';
import { listPackFiles, newPackName, packPath } from './pack.ts';
import { prune } from './prune.ts';
import { deleteSnapshots, listSnapshots } from './snapshots.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from './testing/fixture.ts';
import { pseudoRandomBytes } from './testing/tree-builder.ts';
import { describeTree, diffTrees, type TreeInfo } from './testing/tree-compare.ts';
import { verify } from './verify.ts';
import { BlobWriter } from './writer.ts';
import { INDEX_DB } from './index-db.ts';

const KiB = 1024;

async function packFilesOnDisk(t: TestRepo): Promise<string[]> {
  return (await listPackFiles(t.dir)).sort();
}

function packRows(t: TestRepo): string[] {
  return (t.repo[INDEX_DB].prepare('SELECT name FROM packs').pluck().all() as string[]).sort();
}

describe('crash between pack and snapshot', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
  });
  afterEach(() => t.close());

  it('leaves the snapshots intact and verify clean; prune deletes unreferenced and unindexed packs by their trailers, and temp files', async () => {
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'kept'), pseudoRandomBytes(50 * KiB, 1));
    const kept = await backupDir(t, src);
    const snapshotsBefore = listSnapshots(t.repo);

    // A backup that got as far as committing packs to the index, then died before its snapshot.
    const w = new BlobWriter(t.repo, 32 * KiB);
    const ids = [];
    for (let i = 0; i < 6; i++) {
      const plain = pseudoRandomBytes(20 * KiB, 100 + i);
      const id = blobId(t.repo.keys, plain);
      ids.push(id);
      await w.add(id, BlobType.data, seal(t.repo.keys, id, BlobType.data, plain, { level: 3 }), plain.length);
    }
    await w.flush();
    // One whose workers finished packs that the main thread never indexed.
    const lost = path.join(await t.temp.make(), 'lost.bin');
    await fsp.writeFile(lost, pseudoRandomBytes(300 * KiB, 50));
    await storeFiles(t.pool, { kind: 'fixed', size: 64 * KiB }, [{ path: lost, start: 0, end: 300 * KiB }]);
    const unindexed = await flushPacks(t.pool);
    expect(unindexed.length).toBeGreaterThanOrEqual(1);
    // And one that died while writing a pack: a .tmp file nobody indexed.
    const tmpName = newPackName();
    await fsp.mkdir(path.dirname(packPath(t.dir, tmpName)), { recursive: true });
    await fsp.writeFile(`${packPath(t.dir, tmpName)}.tmp`, pseudoRandomBytes(10 * KiB, 9));

    const repo = await t.reopen();
    expect(listSnapshots(repo)).toEqual(snapshotsBefore);
    for (const id of ids) expect(repo.hasBlob(id)).toBe(true);
    const check = await verify(repo, t.pool, { readData: true });
    expect(check.problems).toEqual([]);
    // the unindexed packs are finished files no row names; the .tmp is an interrupted write
    expect(check.unreferenced_packs).toBe(unindexed.length);

    const report = await prune(repo, { maxUnused: 0.1, packSize: 1 << 20 });
    expect(report.bytes_freed).toBeGreaterThan(6 * 20 * KiB);
    expect(report.packs_deleted).toBeGreaterThanOrEqual(2);
    expect(report.blobs_removed).toBe(6);
    expect(report.orphans_removed).toBe(1 + unindexed.length);
    for (const id of ids) expect(repo.hasBlob(id)).toBe(false);
    expect(fs.existsSync(`${packPath(t.dir, tmpName)}.tmp`)).toBe(false);
    for (const p of unindexed) expect(fs.existsSync(packPath(t.dir, p.name))).toBe(false);
    expect(await packFilesOnDisk(t)).toEqual(packRows(t));

    expect(listSnapshots(repo)).toEqual(snapshotsBefore);
    const after = await verify(repo, t.pool, { readData: true });
    expect(after.problems).toEqual([]);
    expect(after.unreferenced_packs).toBe(0);
    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, kept, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
  });
});

describe('prune after forget', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 64 * KiB });
  });
  afterEach(() => t.close());

  it('deletes unreferenced packs, repacks sparse ones, and keeps the rest restorable bit for bit', async () => {
    const splitter = { kind: 'fixed' as const, size: 4 * KiB };
    const settings = { splitter };
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(path.join(src, 'sub'), { recursive: true });
    const mixed = path.join(src, 'mixed.db');
    await fsp.writeFile(mixed, pseudoRandomBytes(256 * KiB, 1));
    await fsp.writeFile(path.join(src, 'gone.bin'), pseudoRandomBytes(512 * KiB, 2));
    await fsp.writeFile(path.join(src, 'sub', 'stays.txt'), pseudoRandomBytes(40 * KiB, 3));
    const s1 = await backupDir(t, src, settings);

    // s2: gone.bin is gone (whole packs die with s1); every other block of mixed.db changes (its packs go half dead).
    await fsp.rm(path.join(src, 'gone.bin'));
    const fh = await fsp.open(mixed, 'r+');
    for (let b = 0; b < 64; b += 2) await fh.write(pseudoRandomBytes(4 * KiB, 1000 + b), 0, 4 * KiB, b * 4 * KiB);
    await fh.close();
    await fsp.utimes(mixed, new Date('2030-01-01'), new Date('2030-01-01'));
    const s2 = await backupDir(t, src, settings);
    const expected2 = await describeTree(src);

    // s3: one more small change.
    await fsp.writeFile(path.join(src, 'sub', 'new.txt'), 'new');
    const s3 = await backupDir(t, src, settings);
    const expected3 = await describeTree(src);

    const packsBefore = packRows(t).length;
    deleteSnapshots(t.repo, [s1.id]);
    const report = await prune(t.repo, { maxUnused: 0.2, packSize: 64 * KiB });
    // gone.bin's 128 blocks and mixed.db's 32 old ones are dead; how they share packs depends on scheduling.
    expect(report.packs_deleted).toBeGreaterThanOrEqual(1);
    expect(report.packs_repacked).toBeGreaterThanOrEqual(1);
    expect(report.packs_written).toBeGreaterThanOrEqual(1);
    expect(report.blobs_removed).toBeGreaterThanOrEqual(128);
    expect(report.bytes_freed).toBeGreaterThan(512 * KiB);
    expect(report.orphans_removed).toBe(0);
    expect(packRows(t).length).toBeLessThan(packsBefore);
    expect(await packFilesOnDisk(t)).toEqual(packRows(t));

    const check = await verify(t.repo, t.pool, { readData: true });
    expect(check.problems).toEqual([]);
    expect(check.unreferenced_packs).toBe(0);
    expect(listSnapshots(t.repo).map((s) => s.id)).toEqual([s2.id, s3.id]);
    for (const [s, expected] of [[s2, expected2], [s3, expected3]] as [typeof s2, TreeInfo][]) {
      const dst = path.join(await t.temp.make(), 'dst');
      await restoreTo(t, s, dst);
      expect(diffTrees(expected, await describeTree(dst))).toEqual([]);
    }

    // Nothing is left to do: a second prune changes nothing.
    const again = await prune(t.repo, { maxUnused: 0.2, packSize: 64 * KiB });
    expect(again).toMatchObject({ packs_deleted: 0, packs_repacked: 0, blobs_removed: 0, bytes_freed: 0, orphans_removed: 0 });
  });

  it('waits for no one: refuses to run while a backup holds the repository', async () => {
    const lock = t.repo.lock('shared');
    try {
      await expect(prune(t.repo, { maxUnused: 0.1, packSize: 1 << 20 })).rejects.toBeInstanceOf(RepositoryLockedError);
    } finally {
      lock.release();
    }
  });
});
