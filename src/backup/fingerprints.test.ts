/**
 * Block fingerprints kept from the last backup (issues 13 and 15): a large
 * file changed in place has only the blocks whose fingerprints changed
 * hashed, compressed and sealed; the rest take the parent's ids.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import xxhash from 'xxhash-wasm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FingerprintCache, type SourceFingerprints } from '../catalog/fingerprints.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { backupDir, type BackupSettings, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;
const xx = await xxhash();

describe('block fingerprints', () => {
  let t: TestRepo;
  let cache: FingerprintCache;
  let store: SourceFingerprints;
  let src: string;
  let big: string;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 1 * MiB });
    cache = FingerprintCache.open(await t.temp.make('lifeboat-cache-'), t.repo.id);
    src = await t.temp.make('lifeboat-src-');
    store = cache.of('test-host', src);
    big = path.join(src, 'big');
    await fsp.writeFile(big, pseudoRandomBytes(3 * MiB + 1000, 1));
    await fsp.writeFile(path.join(src, 'small'), 'a small file');
  });
  afterEach(async () => {
    cache.close();
    await t.close();
  });

  const backedUp = (opts: Pick<BackupSettings, 'changes'> = {}) => backupDir(t, src, { fingerprints: store, ...opts });
  const restored = async (s: Snapshot) => {
    const target = path.join(await t.temp.make('lifeboat-restore-'), 'r');
    await restoreTo(t, s, target);
    return target;
  };

  it('keeps every large file\'s fingerprints, and restores an in-place change exactly', async () => {
    await backedUp();
    expect(store.get('big')?.hashes.length).toBe(Math.ceil((3 * MiB + 1000) / BLOCK) * 8);
    expect(store.get('small')).toBeUndefined(); // small files are read whole, batched: nothing to keep
    pwrite(big, 1 * MiB + 5, Buffer.from('changed'));
    pwrite(big, 3 * MiB + 10, Buffer.from('the short last block'));
    const now = await describeTree(src);
    const s = await backedUp();
    expect(diffTrees(now, await describeTree(await restored(s)))).toEqual([]);
    expect(s.stats.bytes_new).toBeLessThan(2 * BLOCK + 8 * KiB); // two blocks, the file's list and the trees
  });

  it('takes the parent\'s id, unhashed, for a block whose fingerprint is the parent\'s', async () => {
    await backedUp();
    const old = fs.readFileSync(big).subarray(2 * BLOCK, 3 * BLOCK);
    pwrite(big, 2 * BLOCK, Buffer.alloc(BLOCK, 7));
    pwrite(big, 5 * BLOCK, Buffer.alloc(BLOCK, 8));
    // A fingerprint collision, made on purpose: block 2's kept fingerprint is that of its new content.
    const row = store.get('big')!;
    const hashes = Buffer.from(row.hashes);
    hashes.writeBigUInt64LE(xx.h64Raw(Buffer.alloc(BLOCK, 7)), 2 * 8);
    store.put('big', { ...row, hashes });
    const s = await backedUp();
    const back = fs.readFileSync(path.join(await restored(s), 'big'));
    expect(back.subarray(2 * BLOCK, 3 * BLOCK).equals(old)).toBe(true); // never read for its id: the parent's stands
    expect(back.subarray(5 * BLOCK, 6 * BLOCK).equals(Buffer.alloc(BLOCK, 8))).toBe(true);
  });

  it('uses no fingerprints that describe another version than the parent snapshot has', async () => {
    await backedUp();
    const stale = store.get('big')!;
    await fsp.writeFile(big, pseudoRandomBytes(3 * MiB + 1000, 2));
    await backupDir(t, src); // without the store: its row still describes the first version
    store.put('big', stale);
    pwrite(big, 0, Buffer.from('x'));
    const now = await describeTree(src);
    const s = await backedUp();
    expect(diffTrees(now, await describeTree(await restored(s)))).toEqual([]);
  });

  it('takes nothing unread from a parent whose blocks the repository lost', async () => {
    await backedUp();
    pwrite(big, 0, Buffer.from('x'));
    for (const p of fs.readdirSync(path.join(t.repo.dir, 'packs'), { recursive: true, withFileTypes: true })) if (p.isFile()) fs.rmSync(path.join(p.parentPath, p.name));
    const now = await describeTree(src);
    const s = await backupDir(t, src, { fingerprints: store, onDamage: () => {} });
    expect(diffTrees(now, await describeTree(await restored(s)))).toEqual([]);
  });

  it('forgets the fingerprints of files a walk of every file did not find, not those a journalled walk did not look at', async () => {
    await fsp.writeFile(path.join(src, 'other'), pseudoRandomBytes(2 * MiB, 3));
    await backedUp();
    expect(store.get('other')).toBeDefined();
    await fsp.rm(path.join(src, 'other'));
    pwrite(big, 0, Buffer.from('x'));
    await backedUp({ changes: { mode: 'paths', paths: new Set(['big']) } });
    expect(store.get('other')).toBeDefined(); // not looked at: the walk cannot tell
    await backedUp();
    expect(store.get('other')).toBeUndefined();
    expect(store.get('big')).toBeDefined();
  });

  it('backs up whatever the store does: one that fails to read or write costs hashing, not the backup', async () => {
    await backedUp();
    pwrite(big, 0, Buffer.from('x'));
    const broken = { get: () => { throw new Error('disk I/O error'); }, put: () => { throw new Error('database or disk is full'); }, keepOnly: () => { throw new Error('disk I/O error'); } };
    const now = await describeTree(src);
    const s = await backupDir(t, src, { fingerprints: broken });
    expect(diffTrees(now, await describeTree(await restored(s)))).toEqual([]);
  });
});

function pwrite(file: string, at: number, data: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, at);
  } finally {
    fs.closeSync(fd);
  }
}
