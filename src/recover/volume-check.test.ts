import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { checkAgainstSnapshot } from './volume-check.ts';

describe('checkAgainstSnapshot', () => {
  let t: TestRepo;
  let source: string;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    source = await t.temp.make();
    await fsp.mkdir(path.join(source, 'db'));
    // 5 MiB: more than 64 blocks, so its block ids live in list blobs.
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    await fsp.writeFile(path.join(source, 'db', 'table'), big);
    await fsp.writeFile(path.join(source, 'small'), 'hello\n');
    await fsp.writeFile(path.join(source, 'empty'), '');
    await fsp.symlink('small', path.join(source, 'link'));
  });
  afterEach(() => t.close());

  const restored = async (splitter?: { kind: 'fixed' | 'cdc'; size: number }) => {
    const snapshot = await backupDir(t, source, splitter ? { splitter } : {});
    const target = path.join(await t.temp.make(), 'restored');
    await restoreTo(t, snapshot, target);
    return { snapshot, target };
  };

  it('matches a faithful restore, reading every byte', async () => {
    const { snapshot, target } = await restored();
    expect(await checkAgainstSnapshot(t.repo, snapshot, target)).toEqual({
      matched: true,
      files: 3,
      bytes: 5 * 1024 * 1024 + 6,
      differences: [],
      differenceCount: 0,
    });
  });

  it('finds one changed byte, naming its block', async () => {
    const { snapshot, target } = await restored();
    const fh = await fsp.open(path.join(target, 'db', 'table'), 'r+');
    await fh.write(Buffer.from([0xff]), 0, 1, 3 * 65536 + 17);
    await fh.close();
    const r = await checkAgainstSnapshot(t.repo, snapshot, target);
    expect(r).toMatchObject({ matched: false, differenceCount: 1, differences: [`/db/table: differs in the block at offset ${3 * 65536}`] });
  });

  it('finds changes to the set of entries, sizes, modes and link targets', async () => {
    const { snapshot, target } = await restored();
    await fsp.writeFile(path.join(target, 'extra'), 'x');
    await fsp.rm(path.join(target, 'empty'));
    await fsp.chmod(path.join(target, 'db'), 0o700);
    await fsp.truncate(path.join(target, 'small'), 2);
    await fsp.rm(path.join(target, 'link'));
    await fsp.symlink('elsewhere', path.join(target, 'link'));
    const r = await checkAgainstSnapshot(t.repo, snapshot, target);
    const mode = (await fsp.stat(path.join(source, 'db'))).mode & 0o7777;
    expect(r.matched).toBe(false);
    expect([...r.differences].sort()).toEqual([
      `/db: mode 700, the snapshot has ${mode.toString(8)}`,
      '/empty: missing',
      '/extra: not in the snapshot',
      '/link: links to elsewhere, the snapshot to small',
      '/small: 2 bytes, the snapshot has 6',
    ]);
  });

  it('checks content-defined blocks as well', async () => {
    const { snapshot, target } = await restored({ kind: 'cdc', size: 16 * 1024 });
    expect((await checkAgainstSnapshot(t.repo, snapshot, target)).matched).toBe(true);
    await fsp.appendFile(path.join(target, 'db', 'table'), 'tail');
    expect((await checkAgainstSnapshot(t.repo, snapshot, target)).differences).toEqual([`/db/table: ${5 * 1024 * 1024 + 4} bytes, the snapshot has ${5 * 1024 * 1024}`]);
  });
});
