/**
 * The worker's side of issue 12, item 5: an item reads the very file the walk
 * saw (same inode and device), and reports a change it can see: a stat at
 * open or at the end of its read that differs from the walk's lstat, or a
 * range that ends before its end. The changes land mid-read, deterministically:
 * the item runs on this thread, and the repository lookup of its first block
 * (ctx.has) changes the file.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobId } from '../repo/crypto.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { makeSplitter } from '../repo/splitter.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import type { WorkerContext } from '../repo/worker-context.ts';
import type { StoreItem } from './jobs.ts';
import { cdcSeed, storeItem } from './store-task.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const FIXED: SplitterSpec = { kind: 'fixed', size: 64 * KiB };
const CDC: SplitterSpec = { kind: 'cdc', size: 64 * KiB };
const PAST = new Date('2001-02-03T04:05:06Z');

describe('storeItem on a file that changes', () => {
  let t: TestRepo;
  let dir: string;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
    dir = await t.temp.make('lifeboat-store-task-');
  });
  afterEach(() => t.close());

  /** A context that stores nothing and calls `onBlock` with the count of blocks met so far. */
  function ctx(onBlock: (n: number) => void = () => {}): WorkerContext {
    let n = 0;
    return {
      keys: t.repo.keys,
      level: 1,
      has: () => {
        onBlock(++n);
        return true;
      },
      write: () => {
        throw new Error('nothing should be written');
      },
    } as unknown as WorkerContext;
  }

  /** What the walk saw: the lstat the item must find unchanged. */
  function seen(file: string): StoreItem['seen'] {
    const st = fs.lstatSync(file, { bigint: true });
    return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
  }

  async function make(name: string, size: number, seed: number): Promise<{ file: string; data: Buffer }> {
    const file = path.join(dir, name);
    const data = pseudoRandomBytes(size, seed);
    await fsp.writeFile(file, data);
    await fsp.utimes(file, PAST, PAST); // any later write moves mtime, however coarse the clock
    return { file, data };
  }

  it('reads an unchanged file (or range) into the same ids as before, and reports no change', async () => {
    const { file, data } = await make('still.bin', 20 * MiB, 1);
    const item: StoreItem = { path: file, start: 8 * MiB, end: 16 * MiB, seen: seen(file) };
    const r = storeItem(ctx(), FIXED, item);
    expect(r.error).toBeNull();
    expect(r.changed).toBeNull();
    expect(r.bytesRead).toBe(8 * MiB);
    const expected = Buffer.concat(
      makeSplitter('fixed', 64 * KiB, cdcSeed(t.repo))
        .cut(data.subarray(8 * MiB, 16 * MiB), true)
        .map((end, i, cuts) => blobId(t.repo.keys, data.subarray(8 * MiB + (cuts[i - 1] ?? 0), 8 * MiB + end))),
    );
    expect(Buffer.from(r.ids).equals(expected)).toBe(true);

    const whole = storeItem(ctx(), CDC, { path: file, start: 0, end: 20 * MiB, seen: seen(file) });
    expect(whole).toMatchObject({ error: null, changed: null, bytesRead: 20 * MiB });
  });

  it('a range whose file is cut short mid-read ends early: a change', async () => {
    const { file } = await make('cut.bin', 40 * MiB, 2);
    const item: StoreItem = { path: file, start: 8 * MiB, end: 16 * MiB, seen: seen(file) };
    const r = storeItem(
      ctx((n) => n === 1 && fs.truncateSync(file, 10 * MiB)),
      FIXED,
      item,
    );
    expect(r.error).toBeNull();
    expect(r.changed).toMatch(/changed|ended|size/);
    expect(r.ids.length).toBe(0);
  });

  it('a CDC file read as one item, truncated mid-read, is a change', async () => {
    const { file } = await make('cdc.bin', 20 * MiB, 3);
    const r = storeItem(
      ctx((n) => n === 1 && fs.truncateSync(file, 6 * MiB)),
      CDC,
      { path: file, start: 0, end: 20 * MiB, seen: seen(file) },
    );
    expect(r.error).toBeNull();
    expect(r.changed).toMatch(/changed|ended|size/);
  });

  it('a file written in place mid-read, size unchanged, is a change (mtime)', async () => {
    const { file } = await make('inplace.bin', 12 * MiB, 4);
    const r = storeItem(
      ctx((n) => {
        if (n !== 1) return;
        const fd = fs.openSync(file, 'r+');
        fs.writeSync(fd, Buffer.from('new page'), 0, 8, 11 * MiB);
        fs.closeSync(fd);
      }),
      FIXED,
      { path: file, start: 0, end: 12 * MiB, seen: seen(file) },
    );
    expect(r.error).toBeNull();
    expect(r.changed).toMatch(/changed|modified/);
  });

  it('a small file rewritten after its read but before the item ends is a change', async () => {
    const { file } = await make('small.bin', 100 * KiB, 5);
    const r = storeItem(
      ctx((n) => n === 1 && fs.writeFileSync(file, 'other')),
      FIXED,
      { path: file, start: 0, end: 100 * KiB, seen: seen(file) },
    );
    expect(r.changed).toMatch(/changed|size/);
  });

  it('a file replaced (another inode) before the item opens it is a change, and is not read at all', async () => {
    const { file } = await make('replaced.bin', 5 * MiB, 6);
    const before = seen(file);
    const tmp = path.join(dir, 'replaced.tmp');
    await fsp.writeFile(tmp, pseudoRandomBytes(5 * MiB, 7));
    await fsp.utimes(tmp, PAST, PAST); // same size, same mtime: only the inode tells
    await fsp.rename(tmp, file);
    const r = storeItem(ctx(), FIXED, { path: file, start: 0, end: 5 * MiB, seen: before });
    expect(r.changed).toMatch(/replaced|another file/);
    expect(r.bytesRead).toBe(0);
    expect(r.ids.length).toBe(0);
  });

  it('a file removed before the item opens it is a change (the re-read reports it)', async () => {
    const { file } = await make('gone.bin', 1 * MiB, 8);
    const before = seen(file);
    await fsp.rm(file);
    const r = storeItem(ctx(), FIXED, { path: file, start: 0, end: 1 * MiB, seen: before });
    expect(r.error).toBeNull();
    expect(r.changed).toMatch(/removed/);
  });

  it('tolerant (a database under its backup protocol): a range cut short mid-read is taken with zeros to its end, blocks at their offsets', async () => {
    const { file, data } = await make('shrinks.bin', 12 * MiB, 9);
    const item: StoreItem = { path: file, start: 0, end: 12 * MiB, seen: seen(file), tolerant: true };
    // the first 4 MiB are read in one go; then the file is cut to 1 MiB, and the rest reads as nothing
    const r = storeItem(ctx((n) => void (n === 1 && fs.truncateSync(file, MiB))), FIXED, item);
    expect(r.changed).toBeNull();
    expect(r.error).toBeNull();
    const expected = Buffer.concat([data.subarray(0, 4 * MiB), Buffer.alloc(8 * MiB)]);
    const ids = Buffer.concat(Array.from({ length: 192 }, (_, i) => blobId(t.repo.keys, expected.subarray(i * 64 * KiB, (i + 1) * 64 * KiB))));
    expect(Buffer.from(r.ids).equals(ids)).toBe(true);
    // without tolerance the same cut is a change
    await fsp.writeFile(file, data);
    const strict = storeItem(ctx((n) => void (n === 1 && fs.truncateSync(file, MiB))), FIXED, { path: file, start: 0, end: 12 * MiB, seen: seen(file) });
    expect(strict.changed).not.toBeNull();
  });
});
