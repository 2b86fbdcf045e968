/**
 * A file that changes while the backup reads it must never be stored as
 * something it never was (issue 12, item 5): not a splice of ranges read
 * before and after a truncation, a growth or a replacement, and not its new
 * content under the metadata the walk saw before the change. It is read again
 * from a fresh lstat; if it keeps changing it is reported, and the snapshot
 * keeps the parent's version (or leaves it out).
 *
 * The races are made deterministic with a pool that holds some of a file's
 * worker jobs until others are done and changes the file in between, so a
 * change lands between the ranges of one read, every time, without sleeps.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobType } from '../repo/ids.ts';
import type { BlobId } from '../repo/ids.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { decodeTree, type TreeNode } from '../repo/tree.ts';
import { restore } from '../restore/restorer.ts';
import { StoreHookedPool } from './testing/store-hook.ts';
import type { StoreItem, StoreReply } from './jobs.ts';
import { backup } from './archiver.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const FIXED: SplitterSpec = { kind: 'fixed', size: 64 * KiB };
/** A time long past: a file set to it gets a new mtime from any later write, however coarse the clock. */
const PAST = new Date('2001-02-03T04:05:06Z');

type Hook = (items: readonly StoreItem[], send: () => Promise<StoreReply>) => Promise<StoreReply>;

/** The real pool, with a hook around every store job: it may hold a job, or change files before or after one. */
class HookedWorkers extends StoreHookedPool {
  hook: Hook | undefined;
  /** Every item sent to the workers, in order: path and start. */
  readonly sent: { path: string; start: number }[] = [];

  override store(items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
    for (const i of items) this.sent.push({ path: i.path, start: i.start });
    return this.hook ? this.hook(items, send) : send();
  }
}

/**
 * For the first read of `file`: the ranges starting at `first` are read,
 * then `between` changes the file, then the other ranges are read. Later
 * reads (the re-read) pass untouched.
 */
function betweenRanges(file: string, first: readonly number[], between: () => void): Hook {
  const open = Promise.withResolvers<void>();
  let left = first.length;
  let armed = true;
  return async (items, send) => {
    const mine = items.find((i) => i.path === file);
    if (!armed || !mine) return send();
    if (first.includes(mine.start)) {
      const reply = await send();
      if (--left === 0) {
        between();
        armed = false;
        open.resolve();
      }
      return reply;
    }
    await open.promise;
    return send();
  };
}

/**
 * On every read of `file`: its first range is read, then `change` runs, then
 * the other ranges are read. A file that changes during every read.
 */
function duringEveryRead(file: string, change: (attempt: number) => void): Hook {
  const gates: PromiseWithResolvers<void>[] = [];
  const seen = new Map<number, number>();
  const gate = (k: number) => (gates[k] ??= Promise.withResolvers<void>());
  return async (items, send) => {
    const mine = items.find((i) => i.path === file);
    if (!mine) return send();
    const k = seen.get(mine.start) ?? 0; // the k-th read of this range belongs to the k-th attempt
    seen.set(mine.start, k + 1);
    if (mine.start === 0) {
      const reply = await send();
      change(k);
      gate(k).resolve();
      return reply;
    }
    await gate(k).promise;
    return send();
  };
}

/** Before every job that reads `file`, `change` runs (a small file's batch, or a CDC file's one item). */
function beforeEachRead(file: string, change: (attempt: number) => void, times = Infinity): Hook {
  let n = 0;
  return async (items, send) => {
    if (n < times && items.some((i) => i.path === file)) change(n++);
    return send();
  };
}

function which(got: Buffer | undefined, versions: Record<string, Buffer>): string {
  if (got === undefined) return 'absent';
  for (const [name, v] of Object.entries(versions)) if (got.equals(v)) return name;
  return `neither: ${got.length} bytes that never were the file's content`;
}

/** The node's metadata must be the file's as it is now (the version that was read last). */
function expectNodeIsFile(node: TreeNode | undefined, file: string): void {
  const st = fs.lstatSync(file, { bigint: true });
  expect(node, file).toBeDefined();
  expect({ size: node!.size, mtime: node!.mtime, ctime: node!.ctime, ino: node!.ino }).toEqual({
    size: Number(st.size),
    mtime: String(st.mtimeNs),
    ctime: String(st.ctimeNs),
    ino: String(st.ino),
  });
}

describe('a file that changes while it is read', () => {
  let t: TestRepo;
  let pool: HookedWorkers;
  let src: string;
  let scratch: string;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    pool = new HookedWorkers(t.repo, { workers: 2, level: 1, packSize: t.packSize });
    scratch = await t.temp.make('lifeboat-changing-');
    src = path.join(scratch, 'data');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'steady.txt'), 'nothing happens to me\n');
  });
  afterEach(async () => {
    await pool.close();
    await t.close();
  });

  async function run(splitter: SplitterSpec = FIXED): Promise<{ snapshot: Snapshot; warnings: string[] }> {
    const warnings: string[] = [];
    const snapshot = await backup(t.repo, {
      source: src,
      host: 'test-host',
      splitter,
      packSize: t.packSize,
      compressionLevel: 1,
      pool,
      onWarning: (p, err) => warnings.push(`${p}: ${err.message}`),
    });
    pool.hook = undefined;
    return { snapshot, warnings };
  }

  /** The snapshot's nodes of the source directory's entries, by name. */
  async function nodes(snapshot: Snapshot): Promise<Map<string, TreeNode>> {
    const root = decodeTree(await t.repo.loadBlob(snapshot.tree, BlobType.tree), 'root').nodes[0]!;
    const tree = decodeTree(await t.repo.loadBlob(Buffer.from(root.subtree!, 'hex') as BlobId, BlobType.tree), 'data');
    return new Map(tree.nodes.map((n) => [n.name, n]));
  }

  /** Restores the snapshot; returns the named file's content, or undefined when the snapshot has no such file. */
  async function restored(snapshot: Snapshot, name: string): Promise<Buffer | undefined> {
    const target = path.join(await t.temp.make('lifeboat-restored-'), 'out');
    const warnings: string[] = [];
    await restore(t.repo, snapshot, { target, pool, onWarning: (p, err) => warnings.push(`${p}: ${err.message}`) });
    expect(warnings).toEqual([]);
    expect(await fsp.readFile(path.join(target, 'steady.txt'), 'utf8')).toBe('nothing happens to me\n');
    return fsp.readFile(path.join(target, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
  }

  it('40 MiB in 64 KiB blocks, cut to half after its last ranges were read: stored whole, never a splice', async () => {
    const file = path.join(src, 'big.db');
    const old = pseudoRandomBytes(40 * MiB, 1);
    await fsp.writeFile(file, old);
    // Ranges are 8 MiB: 24-32 and 32-40 are read first, then the file is cut to 20 MiB, then 0-8, 8-16, 16-24.
    // Stored as read, that is old 0-20 then old 24-40: 36 MiB the file never held.
    pool.hook = betweenRanges(file, [24 * MiB, 32 * MiB], () => fs.truncateSync(file, 20 * MiB));
    const { snapshot, warnings } = await run();
    expect(warnings).toEqual([]);
    const got = await restored(snapshot, 'big.db');
    expect(which(got, { old, new: old.subarray(0, 20 * MiB) })).toBe('new');
    expectNodeIsFile((await nodes(snapshot)).get('big.db'), file);
    expect(snapshot.stats.errors).toBe(0);
  });

  it('a file that grows while read (a new header page and 8 MiB appended) is stored as it was or as it became', async () => {
    const file = path.join(src, 'grows.db');
    const old = pseudoRandomBytes(40 * MiB, 2);
    await fsp.writeFile(file, old);
    const header = pseudoRandomBytes(64 * KiB, 3);
    const tail = pseudoRandomBytes(8 * MiB, 4);
    const grown = Buffer.concat([header, old.subarray(64 * KiB), tail]);
    // Every range but the first is read, then the database writes its header and grows, then range 0 is read.
    pool.hook = betweenRanges(file, [8 * MiB, 16 * MiB, 24 * MiB, 32 * MiB], () => {
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, header, 0, header.length, 0);
      fs.writeSync(fd, tail, 0, tail.length, old.length);
      fs.closeSync(fd);
    });
    const { snapshot, warnings } = await run();
    expect(warnings).toEqual([]);
    expect(which(await restored(snapshot, 'grows.db'), { old, grown })).toBe('grown');
    expectNodeIsFile((await nodes(snapshot)).get('grows.db'), file);
  });

  it('a file replaced by rename between its ranges (another inode for the later ones) is not stored as both', async () => {
    const file = path.join(src, 'replaced.db');
    const old = pseudoRandomBytes(40 * MiB, 5);
    const next = pseudoRandomBytes(40 * MiB, 6); // same size: only the inode tells
    await fsp.writeFile(file, old);
    const oldIno = fs.lstatSync(file).ino;
    pool.hook = betweenRanges(file, [0], () => {
      const tmp = path.join(scratch, 'replaced.tmp');
      fs.writeFileSync(tmp, next);
      fs.renameSync(tmp, file);
    });
    const { snapshot, warnings } = await run();
    expect(warnings).toEqual([]);
    expect(fs.lstatSync(file).ino).not.toBe(oldIno);
    expect(which(await restored(snapshot, 'replaced.db'), { old, next })).toBe('next');
    expectNodeIsFile((await nodes(snapshot)).get('replaced.db'), file);
  });

  it('a small file rewritten between the walk and its batch is stored with the metadata of what was read', async () => {
    for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(src, `small-${i}.bin`), pseudoRandomBytes(10 * KiB + i, 10 + i));
    const file = path.join(src, 'small-2.bin');
    await fsp.utimes(file, PAST, PAST);
    const next = pseudoRandomBytes(7 * KiB, 20);
    pool.hook = beforeEachRead(file, () => fs.writeFileSync(file, next), 1);
    const { snapshot, warnings } = await run();
    expect(warnings).toEqual([]);
    expect(which(await restored(snapshot, 'small-2.bin'), { next })).toBe('next');
    expectNodeIsFile((await nodes(snapshot)).get('small-2.bin'), file);
  });

  it('a large file read in one CDC item, cut before the item runs, is stored with the metadata of what was read', async () => {
    const file = path.join(src, 'cdc.bin');
    const old = pseudoRandomBytes(12 * MiB, 21);
    await fsp.writeFile(file, old);
    await fsp.utimes(file, PAST, PAST);
    pool.hook = beforeEachRead(file, () => fs.truncateSync(file, 5 * MiB), 1);
    const { snapshot, warnings } = await run({ kind: 'cdc', size: 64 * KiB });
    expect(warnings).toEqual([]);
    expect(which(await restored(snapshot, 'cdc.bin'), { old, new: old.subarray(0, 5 * MiB) })).toBe('new');
    expectNodeIsFile((await nodes(snapshot)).get('cdc.bin'), file);
  });

  it('a file that changes during every read is reported after 3 attempts and kept as in the parent snapshot', async () => {
    const file = path.join(src, 'busy.log');
    const v0 = pseudoRandomBytes(24 * MiB, 30);
    await fsp.writeFile(file, v0);
    const first = await run();
    expect(first.warnings).toEqual([]);
    const parentNode = (await nodes(first.snapshot)).get('busy.log');

    await fsp.appendFile(file, 'one more line\n');
    let changes = 0;
    pool.hook = duringEveryRead(file, () => {
      changes++;
      fs.appendFileSync(file, pseudoRandomBytes(64 * KiB, 31 + changes));
    });
    const { snapshot, warnings } = await run();
    expect(changes).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(warnings[0]).toContain('changed while it was read');
    expect(snapshot.stats.errors).toBe(1);
    expect(snapshot.parent).toBe(first.snapshot.id);
    expect((await nodes(snapshot)).get('busy.log')).toEqual(parentNode);
    expect(which(await restored(snapshot, 'busy.log'), { v0 })).toBe('v0');
  });

  it('a file that changes during every read, with no parent, is reported and left out; so is a small one', async () => {
    const file = path.join(src, 'busy.log');
    await fsp.writeFile(file, pseudoRandomBytes(24 * MiB, 40));
    const small = path.join(src, 'busy.small');
    await fsp.writeFile(small, 'v0\n');
    let changes = 0;
    const big = duringEveryRead(file, () => fs.appendFileSync(file, pseudoRandomBytes(64 * KiB, 41 + changes++)));
    let smallChanges = 0;
    const little = beforeEachRead(small, () => fs.appendFileSync(small, `v${++smallChanges}\n`));
    pool.hook = (items, send) => big(items, () => little(items, send));
    const { snapshot, warnings } = await run();
    expect(changes).toBe(3);
    expect(smallChanges).toBe(3);
    expect(warnings.sort()).toEqual([expect.stringContaining(file), expect.stringContaining(small)].sort());
    for (const w of warnings) expect(w).toContain('changed while it was read');
    expect(snapshot.stats.errors).toBe(2);
    const names = await nodes(snapshot);
    expect([...names.keys()].sort()).toEqual(['steady.txt']);
    expect(await restored(snapshot, 'busy.log')).toBeUndefined();
  });

  it('a file removed between the walk and its read is reported as unreadable, as before', async () => {
    const file = path.join(src, 'gone.bin');
    await fsp.writeFile(file, pseudoRandomBytes(3 * MiB, 50));
    pool.hook = beforeEachRead(file, () => fs.rmSync(file), 1);
    const { snapshot, warnings } = await run();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(warnings[0]).toContain('ENOENT');
    expect(snapshot.stats.errors).toBe(1);
    expect([...(await nodes(snapshot)).keys()]).toEqual(['steady.txt']);
  });

  it('reads a file that does not change exactly once: no second read, the same bytes as before', async () => {
    await fsp.writeFile(path.join(src, 'big.db'), pseudoRandomBytes(20 * MiB, 60));
    await fsp.writeFile(path.join(src, 'mid.bin'), pseudoRandomBytes(3 * MiB, 61));
    for (let i = 0; i < 20; i++) await fsp.writeFile(path.join(src, `s${i}`), pseudoRandomBytes(i * 1000, 62 + i));
    const { snapshot, warnings } = await run();
    expect(warnings).toEqual([]);
    const keys = pool.sent.map((s) => `${s.path}@${s.start}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toHaveLength(1 + 20 + 1 + 3); // steady, s0-s19, mid, three ranges of big
    expect(snapshot.stats.bytes_read).toBe(snapshot.stats.bytes_total);
    expect(snapshot.stats.errors).toBe(0);
  });
});
