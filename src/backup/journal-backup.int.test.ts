import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ParentUnusableError } from './archiver.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';

const DIRS = 100;
const PER_DIR = 100;

describe('backup with the change journal', () => {
  let t: TestRepo;
  let src: string;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = path.join(await t.temp.make('lifeboat-src-'), 'vol');
    // 10,000 small files in 100 directories.
    for (let d = 0; d < DIRS; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < PER_DIR; f++) fs.writeFileSync(path.join(src, `d${d}`, `f${f}`), `file ${d}/${f}\n`);
    }
  });
  afterEach(() => t.close());

  const paths = (...p: string[]) => ({ mode: 'paths' as const, paths: new Set(p) });

  async function expectRestoresAsSource(snapshotId: Awaited<ReturnType<typeof backupDir>>): Promise<void> {
    const out = path.join(await t.temp.make(), 'out');
    await restoreTo(t, snapshotId, out);
    expect(diffTrees(await describeTree(src), await describeTree(out))).toEqual([]);
  }

  it('examines only the dirty path of a volume of 10,000 files, and the snapshot is whole', async () => {
    const full = await backupDir(t, src);
    expect(full.stats).toMatchObject({ files: DIRS * PER_DIR, dirs: DIRS + 1, examined: DIRS + DIRS * PER_DIR });

    await fsp.writeFile(path.join(src, 'd42', 'f7'), 'changed contents\n');
    const inc = await backupDir(t, src, { changes: paths('d42/f7') });
    // The directory above it and the file: two lstat calls, not 10,100.
    expect(inc.stats).toMatchObject({ examined: 2, files_changed: 1, files_new: 0, files: DIRS * PER_DIR, dirs: DIRS + 1 });
    expect(inc.stats.bytes_read).toBe('changed contents\n'.length);
    expect(inc.stats.files_unchanged).toBe(DIRS * PER_DIR - 1);
    await expectRestoresAsSource(inc);
  });

  it('follows added and removed entries and new directories through their parents\' listings', async () => {
    await backupDir(t, src);
    await fsp.writeFile(path.join(src, 'd1', 'added'), 'new');
    await fsp.rm(path.join(src, 'd2', 'f0'));
    await fsp.mkdir(path.join(src, 'd3', 'sub', 'deeper'), { recursive: true });
    await fsp.writeFile(path.join(src, 'd3', 'sub', 'deeper', 'x'), 'x');
    const inc = await backupDir(t, src, { changes: paths('d1', 'd1/added', 'd2', 'd3', 'd3/sub') });
    expect(inc.stats).toMatchObject({ files: DIRS * PER_DIR + 1, files_new: 2 });
    // d1, d2, d3 themselves, then each one's entries (they were re-listed), and the new subtree.
    expect(inc.stats.examined).toBeLessThan(3 + 3 * (PER_DIR + 1) + 3);
    await expectRestoresAsSource(inc);
  });

  it('rescans a directory the journal recorded as crowded, subtree and all', async () => {
    await backupDir(t, src);
    for (let f = 0; f < PER_DIR; f += 3) fs.writeFileSync(path.join(src, 'd5', `f${f}`), `rewritten ${f}`);
    const inc = await backupDir(t, src, { changes: paths('d5/*') });
    expect(inc.stats.files_changed).toBe(Math.ceil(PER_DIR / 3));
    expect(inc.stats.examined).toBe(1 + PER_DIR);
    await expectRestoresAsSource(inc);
  });

  it('looks at every entry of a directory whose watch rested, and at nothing below its subdirectories', async () => {
    await backupDir(t, src);
    fs.mkdirSync(path.join(src, 'd6', 'sub'));
    fs.writeFileSync(path.join(src, 'd6', 'sub', 'x'), 'x');
    await backupDir(t, src, { changes: paths('d6', 'd6/sub', 'd6/sub/x') });
    // rewritten while the watch rested: no event names them
    fs.writeFileSync(path.join(src, 'd6', 'f10'), 'rewritten 10');
    fs.writeFileSync(path.join(src, 'd6', 'f90'), 'rewritten 90');
    const inc = await backupDir(t, src, { changes: paths('d6/?') });
    expect(inc.stats.files_changed).toBe(2);
    // d6 and its entries (the subdirectory's own entries are as they were)
    expect(inc.stats.examined).toBe(1 + PER_DIR + 1);
    await expectRestoresAsSource(inc);
  });

  it('trusts the journal: a change it did not name stays out until a full scan', async () => {
    const first = await backupDir(t, src);
    await fsp.writeFile(path.join(src, 'd9', 'f9'), 'unreported');
    const blind = await backupDir(t, src, { changes: paths() });
    expect(blind.tree.equals(first.tree)).toBe(true);
    const full = await backupDir(t, src, { changes: { mode: 'full', paths: new Set() } });
    expect(full.stats.files_changed).toBe(1);
    await expectRestoresAsSource(full);
  });
});

describe('backup of a file read through a window (an append-only log)', () => {
  let t: TestRepo;
  let src: string;
  const MiB = 1024 * 1024;
  const BLOCK = 64 * 1024;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
    src = path.join(await t.temp.make('lifeboat-src-'), 'vol');
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'log'), Buffer.alloc(4 * MiB, 1));
  });
  afterEach(() => t.close());

  const restored = async (snapshot: Awaited<ReturnType<typeof backupDir>>) => {
    const out = path.join(await t.temp.make(), 'out');
    await restoreTo(t, snapshot, out);
    return fs.readFileSync(path.join(out, 'log'));
  };

  it('takes the parent\'s blocks before the window unread, for the same inode only', async () => {
    await backupDir(t, src);
    const fd = fs.openSync(path.join(src, 'log'), 'r+');
    // the first MiB differs on disk, but the window says the parent has it: the parent's blocks are taken, not read
    fs.writeSync(fd, Buffer.alloc(MiB, 2), 0, MiB, 0);
    fs.writeSync(fd, Buffer.alloc(MiB, 3), 0, MiB, 3 * MiB);
    fs.closeSync(fd);
    const inc = await backupDir(t, src, { windows: new Map([['log', { from: 3 * MiB + 100, to: 4 * MiB }]]) });
    expect(inc.stats.bytes_read).toBe(MiB);
    const back = await restored(inc);
    expect([back[0], back[3 * MiB - 1], back[3 * MiB], back.length]).toEqual([1, 1, 3, 4 * MiB]);

    // another file under the name (the old one kept aside: its inode is not reused): nothing is taken
    fs.renameSync(path.join(src, 'log'), path.join(src, 'old'));
    fs.writeFileSync(path.join(src, 'log'), Buffer.alloc(4 * MiB, 4));
    const replaced = await backupDir(t, src, { windows: new Map([['log', { from: 3 * MiB, to: 4 * MiB }]]) });
    expect(replaced.stats.bytes_read).toBe(8 * MiB);
  });

  it('reads up to the block holding the window\'s end and takes zeros after, unchanged metadata or not', async () => {
    const first = await backupDir(t, src, { windows: new Map([['log', { from: 0, to: 2 * MiB + 1 }]]) });
    expect(first.stats.bytes_read).toBe(2 * MiB + BLOCK);
    const back = await restored(first);
    expect([back[2 * MiB + BLOCK - 1], back[2 * MiB + BLOCK], back[4 * MiB - 1], back.length]).toEqual([1, 0, 0, 4 * MiB]);
    // the log grew into what was taken as zeros, but its metadata is as it was: the window reads it all the same
    const again = await backupDir(t, src, { windows: new Map([['log', { from: 2 * MiB, to: 4 * MiB }]]) });
    expect(again.stats.bytes_read).toBe(2 * MiB);
    expect((await restored(again)).equals(Buffer.alloc(4 * MiB, 1))).toBe(true);
  });
});

describe('backup that keeps entries of its parent', () => {
  let t: TestRepo;
  let src: string;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
    src = path.join(await t.temp.make('lifeboat-src-'), 'vol');
    fs.mkdirSync(path.join(src, 'wal'), { recursive: true });
    for (const s of ['s1', 's2', 's3']) fs.writeFileSync(path.join(src, 'wal', s), `segment ${s}\n`);
    fs.writeFileSync(path.join(src, 'data'), 'data at the base\n');
  });
  afterEach(() => t.close());

  const retainS1 = (listed: string[]) => ({ mode: 'paths' as const, paths: new Set(['wal', ...listed]), retain: (rel: string) => rel === 'wal/s1' || rel === 'wal/s5' });

  it('keeps what it is told to keep when it is gone from disk, even when listed, and follows the rest', async () => {
    await backupDir(t, src);
    await fsp.rm(path.join(src, 'wal', 's1'));
    await fsp.rm(path.join(src, 'wal', 's2'));
    await fsp.writeFile(path.join(src, 'wal', 's3'), 'segment s3, finished\n');
    await fsp.writeFile(path.join(src, 'wal', 's4'), 'segment s4\n');
    await fsp.writeFile(path.join(src, 'data'), 'data after the base\n');
    // s1 is listed but gone by the time it is looked at (recycled meanwhile): kept all the same
    const inc = await backupDir(t, src, { changes: retainS1(['wal/s1', 'wal/s3', 'wal/s4']) });
    const out = path.join(await t.temp.make(), 'out');
    await restoreTo(t, inc, out);
    expect(fs.readdirSync(path.join(out, 'wal')).sort()).toEqual(['s1', 's3', 's4']);
    expect(fs.readFileSync(path.join(out, 'wal', 's1'), 'utf8')).toBe('segment s1\n');
    expect(fs.readFileSync(path.join(out, 'wal', 's3'), 'utf8')).toBe('segment s3, finished\n');
    // not named: the parent's
    expect(fs.readFileSync(path.join(out, 'data'), 'utf8')).toBe('data at the base\n');
  });

  it('refuses to keep entries without a parent to keep them from', async () => {
    await expect(backupDir(t, src, { changes: retainS1(['wal/s1']) })).rejects.toBeInstanceOf(ParentUnusableError);
  });
});
