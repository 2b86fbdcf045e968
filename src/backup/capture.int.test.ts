/**
 * Capture, then process (issue 13): while a volume's containers are frozen
 * the backup only copies what it will read, thaws them, and then hashes,
 * compresses and packs the copies. The containers' writes after the thaw must
 * not reach the snapshot, no worker may read before the thaw, and on a file
 * system without reflinks only the blocks whose fingerprints changed are
 * copied.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import { CaptureFailedError } from '../errors/errors.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { StoreHookedPool } from './testing/store-hook.ts';
import type { StoreItem, StoreReply } from './jobs.ts';
import { Capture, type CaptureOptions } from './capture.ts';
import type { FingerprintStore } from './fingerprints.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

/** The real pool, counting the items it was sent. */
class CountingWorkers extends StoreHookedPool {
  items = 0;
  override store(items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
    this.items += items.length;
    return send();
  }
}

describe('capture, then process', () => {
  let t: TestRepo;
  let catalog: AgentCatalog;
  let pool: CountingWorkers;
  let src: string;
  let scratch: string;
  let store: FingerprintStore;

  beforeEach(async () => {
    t = await openTestRepo();
    pool = new CountingWorkers(t.repo, { workers: 2, level: 3, packSize: t.packSize });
    catalog = AgentCatalog.open(await t.temp.make('lifeboat-state-'));
    store = catalog.fingerprints('data');
    src = await t.temp.make('lifeboat-src-');
    scratch = path.join(await t.temp.make('lifeboat-scratch-'), 'capture');
    await fsp.mkdir(path.join(src, 'sub'));
    await fsp.writeFile(path.join(src, 'small'), 'small, as frozen');
    await fsp.writeFile(path.join(src, 'sub', 'big'), pseudoRandomBytes(4 * MiB + 1000, 1));
    await fsp.writeFile(path.join(src, 'sub', 'mid'), pseudoRandomBytes(5 * BLOCK, 6));
  });
  afterEach(async () => {
    catalog.close();
    await pool.close();
    await t.close();
  });

  const backupCapturing = (thaw: () => Promise<void> | void, over: Partial<CaptureOptions> = {}): Promise<Snapshot> =>
    backupDir({ ...t, pool }, src, { fingerprints: store, capture: { dir: scratch, thaw: async () => thaw(), ...over } });

  const restored = async (s: Snapshot) => {
    const target = path.join(await t.temp.make('lifeboat-restore-'), 'r');
    await restoreTo({ ...t, pool }, s, target);
    return target;
  };

  it('reads nothing before the thaw, and the snapshot holds the files as they were frozen, not what was written after', async () => {
    const frozen = await describeTree(src);
    let readBeforeThaw: number | undefined;
    const s = await backupCapturing(async () => {
      readBeforeThaw = pool.items;
      // the containers run again: every file changes, one goes, one comes
      await fsp.writeFile(path.join(src, 'small'), 'written after the thaw');
      await pwrite(path.join(src, 'sub', 'big'), 2 * MiB, Buffer.alloc(BLOCK, 7));
      await fsp.writeFile(path.join(src, 'sub', 'new'), 'new');
    });
    expect(readBeforeThaw).toBe(0);
    expect(s.stats.errors).toBe(0);
    expect(diffTrees(frozen, await describeTree(await restored(s)))).toEqual([]);
    expect(fs.existsSync(scratch)).toBe(false); // the copies are gone
  });

  it('copies, on a file system without reflinks, only the blocks whose fingerprints changed, and restores the whole file', async () => {
    await backupCapturing(() => {});
    const big = path.join(src, 'sub', 'big');
    await pwrite(big, 1 * MiB + 10, Buffer.from('changed'));
    await pwrite(big, 3 * MiB + 5, Buffer.from('changed too'));
    await pwrite(big, 4 * MiB + 100, Buffer.from('and the short last block'));
    await pwrite(path.join(src, 'sub', 'mid'), 3 * BLOCK + 1, Buffer.from('a file of a few blocks'));
    const frozen = await describeTree(src);

    let copied: number | undefined;
    const s = await backupCapturing(async () => {
      const copies = await fsp.readdir(scratch);
      const sizes = await Promise.all(copies.map(async (c) => (await fsp.stat(path.join(scratch, c))).blocks * 512));
      copied = Math.max(...sizes);
    });
    if (!reflinks(scratch)) expect(copied).toBeLessThanOrEqual(3 * BLOCK + 4 * KiB);
    expect(s.stats.bytes_read).toBe(2 * BLOCK + 1000 + BLOCK); // the big file's two changed blocks and its short last one, and mid's block
    expect(diffTrees(frozen, await describeTree(await restored(s)))).toEqual([]);
  });

  it('copies a file whole when its fingerprints describe another version than the parent snapshot has', async () => {
    await backupCapturing(() => {});
    const big = path.join(src, 'sub', 'big');
    await fsp.writeFile(big, pseudoRandomBytes(4 * MiB + 1000, 2));
    await backupDir({ ...t, pool }, src); // without a capture: the fingerprints are not renewed
    await pwrite(big, 0, Buffer.from('x'));
    const frozen = await describeTree(src);

    const s = await backupCapturing(() => {});
    expect(s.stats.bytes_read).toBe(4 * MiB + 1000);
    expect(diffTrees(frozen, await describeTree(await restored(s)))).toEqual([]);
  });

  it('grows and shrinks: blocks past the parent\'s end are copied, and a shorter file keeps none it lost', async () => {
    await backupCapturing(() => {});
    const big = path.join(src, 'sub', 'big');
    await fsp.appendFile(big, pseudoRandomBytes(200 * KiB, 3));
    let s = await backupCapturing(() => {});
    expect(s.stats.bytes_read).toBe(1000 + 200 * KiB); // the old short last block, now whole, and the new ones
    await fsp.truncate(big, 2 * MiB + 7);
    const frozen = await describeTree(src);
    s = await backupCapturing(() => {});
    expect(s.stats.bytes_read).toBe(7); // only the new short last block
    expect(diffTrees(frozen, await describeTree(await restored(s)))).toEqual([]);
  });

  it('leaves the holes of a sparse file holes in its copy, and restores it', async () => {
    const sparse = path.join(src, 'sparse.img');
    const fd = await fsp.open(sparse, 'w');
    await fd.truncate(1024 * MiB);
    await fd.write(Buffer.from('data in the middle'), 0, 18, 300 * MiB);
    await fd.close();
    let allocated: number | undefined;
    const s = await backupCapturing(async () => {
      const copies = await fsp.readdir(scratch);
      const sizes = await Promise.all(copies.map(async (c) => (await fsp.stat(path.join(scratch, c))).blocks * 512));
      allocated = sizes.reduce((a, b) => a + b, 0);
    });
    expect(allocated).toBeLessThan(4 * MiB + 5 * BLOCK + 2 * BLOCK); // the big file, mid, and one block of the sparse one
    const target = await restored(s);
    const back = await fsp.open(path.join(target, 'sparse.img'), 'r');
    const at = Buffer.alloc(18);
    await back.read(at, 0, 18, 300 * MiB);
    await back.close();
    expect(at.toString()).toBe('data in the middle');
    expect((await fsp.stat(path.join(target, 'sparse.img'))).size).toBe(1024 * MiB);
  });

  it('refuses to copy what would leave the scratch file system nearly full (the containers write there too)', async (ctx) => {
    const mnt = path.join(await t.temp.make('lifeboat-tmpfs-'), 'mnt');
    await fsp.mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=300m,mode=0700', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      ctx.skip(true, `cannot mount a tmpfs here (needs root): ${(err as Error).message}`);
    }
    try {
      await fsp.writeFile(path.join(src, 'sub', 'big'), pseudoRandomBytes(64 * MiB, 5));
      const failed = backupCapturing(() => {}, { dir: path.join(mnt, 'capture') });
      await expect(failed).rejects.toThrow(/not enough room in .* to copy .*big \(67108864 bytes; \d+ free, of which 268435456 stay free\)/);
      await expect(failed).rejects.toBeInstanceOf(CaptureFailedError);
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });

  it('copies the file the walk saw, never what a link put in its place points to', async () => {
    const secret = path.join(await t.temp.make('lifeboat-host-'), 'shadow');
    await fsp.writeFile(secret, 'a host secret');
    const capture = Capture.open({ dir: scratch, thaw: async () => {} }, BLOCK, pool);
    try {
      for (const name of ['small', 'sub/big']) {
        const file = path.join(src, name);
        const seen = fs.lstatSync(file, { bigint: true });
        // a writer the freeze does not stop swaps the file for a link between the walk's look and the copy
        await fsp.rename(file, `${file}.moved`);
        await fsp.symlink(secret, file);
        await expect(capture.take(file, seen, undefined)).rejects.toMatchObject({ code: 'ELOOP' });
      }
      // another file put in its place is taken as it now is, under its own metadata
      const file = path.join(src, 'small');
      const seen = fs.lstatSync(`${file}.moved`, { bigint: true });
      await fsp.rm(file);
      await fsp.writeFile(file, 'put in its place');
      const taken = await capture.take(file, seen, undefined);
      expect(taken?.stat.ino).toBe(fs.lstatSync(file, { bigint: true }).ino);
      expect(await fsp.readFile(taken!.path, 'utf8')).toBe('put in its place');
      for (const copy of await fsp.readdir(scratch)) expect(await fsp.readFile(path.join(scratch, copy), 'utf8')).not.toContain('a host secret');
    } finally {
      capture.close();
    }
  });

  it('fails with LB_ERR_CAPTURE_FAILED, nothing read and nothing left held, when the copies cannot be written', async () => {
    const notADir = path.join(await t.temp.make('lifeboat-file-'), 'file');
    await fsp.writeFile(notADir, '');
    let thawed = false;
    const failed = backupCapturing(() => void (thawed = true), { dir: path.join(notADir, 'capture') });
    await expect(failed).rejects.toBeInstanceOf(CaptureFailedError);
    await expect(failed).rejects.toMatchObject({ code: 'LB_ERR_CAPTURE_FAILED' });
    expect(thawed).toBe(false);
    expect(pool.items).toBe(0);
    // and the repository takes the next backup
    const s = await backupDir({ ...t, pool }, src);
    expect(s.stats.errors).toBe(0);
  });
});

async function pwrite(file: string, at: number, data: Buffer): Promise<void> {
  const fd = await fsp.open(file, 'r+');
  await fd.write(data, 0, data.length, at);
  await fd.close();
}

describe('capture by reflinks, on XFS', () => {
  let mnt: string | undefined;
  let cannot = '';
  let t: TestRepo;
  let catalog: AgentCatalog;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-xfs-'));
    try {
      execFileSync('truncate', ['-s', '512M', path.join(dir, 'img')]);
      execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', path.join(dir, 'img')], { stdio: 'pipe' });
      fs.mkdirSync(path.join(dir, 'mnt'));
      execFileSync('mount', ['-o', 'loop', path.join(dir, 'img'), path.join(dir, 'mnt')], { stdio: 'pipe' });
      mnt = path.join(dir, 'mnt');
    } catch (err) {
      cannot = `cannot make a loop-mounted XFS here (needs root, mkfs.xfs from xfsprogs, loop devices): ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`;
    }
  });
  afterAll(() => {
    if (mnt) execFileSync('umount', ['-l', mnt]);
  });
  beforeEach(async () => {
    t = await openTestRepo();
    catalog = AgentCatalog.open(await t.temp.make('lifeboat-state-'));
  });
  afterEach(async () => {
    catalog.close();
    await t.close();
  });

  it('clones instead of copying (the file system\'s free space does not move), then stores only the blocks that changed', async (ctx) => {
    ctx.skip(mnt === undefined, cannot);
    const src = fs.mkdtempSync(path.join(mnt!, 'src-'));
    const scratch = path.join(mnt!, 'capture');
    const big = path.join(src, 'big');
    await fsp.writeFile(big, pseudoRandomBytes(64 * MiB, 4));
    const free = () => fs.statfsSync(mnt!).bfree * fs.statfsSync(mnt!).bsize;
    const fingerprints = catalog.fingerprints('data');
    const capture = (thaw: () => Promise<void>) => ({ dir: scratch, thaw });

    let used: number | undefined;
    const before = free();
    await backupDir(t, src, { fingerprints, capture: capture(async () => void (used = before - free())) });
    expect(used).toBeLessThan(1 * MiB);

    await pwrite(big, 10 * MiB + 3, Buffer.from('changed'));
    const frozen = await describeTree(src);
    const s = await backupDir(t, src, { fingerprints, capture: capture(async () => pwrite(big, 20 * MiB, Buffer.from('after the thaw'))) });
    // the clone read after the thaw, its fingerprints compared: one block new, with the file's list and trees
    expect(s.stats.bytes_new).toBeLessThan(BLOCK + 64 * KiB);
    const target = path.join(await t.temp.make('lifeboat-restore-'), 'r');
    await restoreTo(t, s, target);
    expect(diffTrees(frozen, await describeTree(target))).toEqual([]);
  });
});

/** Whether `dir`'s file system shares extents (XFS, btrfs): there a copy costs no blocks. */
function reflinks(dir: string): boolean {
  const type = execFileSync('stat', ['-f', '-c', '%T', path.dirname(dir)], { encoding: 'utf8' }).trim();
  return type === 'xfs' || type === 'btrfs';
}
