import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptIndexError, TargetNotEmptyError, UnsafePathError } from '../errors/errors.ts';
import { blobId, seal } from '../repo/crypto.ts';
import { type BlobId, BlobType, toHex } from '../repo/ids.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { saveSnapshot } from '../repo/snapshots.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import type { TreeNode } from '../repo/tree.ts';
import { BlobWriter } from '../repo/writer.ts';

/** Seals a blob with the repository's keys and indexes it, as a writer with the password could. */
async function putBlob(t: TestRepo, type: BlobType, plain: Buffer): Promise<BlobId> {
  const id = blobId(t.repo.keys, plain);
  const w = new BlobWriter(t.repo, 1 << 20);
  await w.add(id, type, seal(t.repo.keys, id, type, plain, { level: 0 }), plain.length);
  await w.flush();
  return id;
}

function node(name: string, type: TreeNode['type'], extra: Partial<TreeNode>): TreeNode {
  return { name, type, mode: 0o644, uid: 0, gid: 0, mtime: '1700000000000000000', ctime: '1700000000000000000', ino: '1', dev: '1', nlink: 1, size: 0, ...extra };
}

const putTree = (t: TestRepo, nodes: TreeNode[]) => putBlob(t, BlobType.tree, Buffer.from(JSON.stringify({ nodes })));

/** Saves a snapshot row whose root directory holds `nodes`, bypassing backup's checks. */
async function craftSnapshot(t: TestRepo, nodes: TreeNode[]): Promise<Snapshot> {
  const inner = await putTree(t, nodes);
  const root = await putTree(t, [node('root', 'dir', { mode: 0o755, subtree: toHex(inner) })]);
  const s: Snapshot = {
    id: crypto.randomBytes(32).toString('hex'),
    time: new Date().toISOString(),
    host: 'evil',
    source: '/evil',
    volume: null,
    parent: null,
    tree: root,
    meta: null,
    tags: [],
    splitter: { kind: 'fixed', size: 65536 },
    stats: {} as Snapshot['stats'],
  };
  saveSnapshot(t.repo, s);
  return s;
}

describe('restore', () => {
  let t: TestRepo;
  let snapshot: Snapshot;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(path.join(src, 'd'), { recursive: true });
    await fsp.writeFile(path.join(src, 'd', 'f.txt'), 'contents');
    snapshot = await backupDir(t, src);
  });
  afterEach(() => t.close());

  it('restores into a missing directory and into an existing empty one', async () => {
    const base = await t.temp.make();
    await restoreTo(t, snapshot, path.join(base, 'new', 'nested'));
    await fsp.mkdir(path.join(base, 'empty'));
    await restoreTo(t, snapshot, path.join(base, 'empty'));
    const expected = await describeTree(src);
    expect(diffTrees(expected, await describeTree(path.join(base, 'new', 'nested')))).toEqual([]);
    expect(diffTrees(expected, await describeTree(path.join(base, 'empty')))).toEqual([]);
  });

  it('refuses a non-empty target, or a file, and leaves it alone', async () => {
    const target = await t.temp.make();
    await fsp.writeFile(path.join(target, 'precious'), 'keep me');
    await expect(restoreTo(t, snapshot, target)).rejects.toBeInstanceOf(TargetNotEmptyError);
    expect(await fsp.readdir(target)).toEqual(['precious']);
    expect(await fsp.readFile(path.join(target, 'precious'), 'utf8')).toBe('keep me');
    // A hidden file counts too.
    const hidden = await t.temp.make();
    await fsp.writeFile(path.join(hidden, '.x'), '');
    await expect(restoreTo(t, snapshot, hidden)).rejects.toBeInstanceOf(TargetNotEmptyError);
    const file = path.join(target, 'precious');
    await expect(restoreTo(t, snapshot, file)).rejects.toBeInstanceOf(TargetNotEmptyError);
    expect(await fsp.readFile(file, 'utf8')).toBe('keep me');
  });

  it.each(['..', '.', 'a/b', '/etc', 'x\0y', ''])('refuses a tree entry named %j and writes nothing outside the target', async (name) => {
    const payload = await putBlob(t, BlobType.data, Buffer.from('escaped!'));
    const evil = await craftSnapshot(t, [node(name, 'file', { size: 8, blocks: [toHex(payload)] })]);
    const base = await t.temp.make();
    const target = path.join(base, 'inside', 'target');
    await expect(restoreTo(t, evil, target)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await fsp.readdir(base)).toEqual(['inside']);
    expect(await fsp.readdir(path.join(base, 'inside'))).toEqual(['target']);
    expect(await fsp.readdir(target)).toEqual([]);
  });

  it('refuses an unsafe name in a nested directory, after creating only what is inside the target', async () => {
    const payload = await putBlob(t, BlobType.data, Buffer.from('escaped!'));
    const bad = await putTree(t, [node('..', 'file', { size: 8, blocks: [toHex(payload)] })]);
    const evil = await craftSnapshot(t, [node('ok', 'dir', { mode: 0o755, subtree: toHex(bad) })]);
    const base = await t.temp.make();
    const target = path.join(base, 'target');
    await expect(restoreTo(t, evil, target)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await fsp.readdir(base)).toEqual(['target']);
    expect((await fsp.readdir(target)).filter((n) => n !== 'ok')).toEqual([]);
    expect(fs.existsSync(path.join(target, 'ok')) ? await fsp.readdir(path.join(target, 'ok')) : []).toEqual([]);
  });

  it('fails with CorruptIndexError when a block is not in the index', async () => {
    const missing = crypto.randomBytes(32).toString('hex');
    const evil = await craftSnapshot(t, [node('f', 'file', { size: 10, blocks: [missing] })]);
    await expect(restoreTo(t, evil, path.join(await t.temp.make(), 't'))).rejects.toBeInstanceOf(CorruptIndexError);
  });
});
