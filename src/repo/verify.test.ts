import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptDataError } from '../errors/errors.ts';
import { type BlobId, BlobType } from './ids.ts';
import { packPath } from './pack.ts';
import { shortId, type Snapshot } from './snapshot.ts';
import { backupDir, openTestRepo, restoreTo, type TestRepo } from './testing/fixture.ts';
import { pseudoRandomBytes } from './testing/tree-builder.ts';
import type { TreeNode } from './tree.ts';
import { verify } from './verify.ts';
import { walkSnapshot } from './walk.ts';
import { INDEX_DB } from './index-db.ts';

const KiB = 1024;

/** The tree node at a path (as walkSnapshot spells it: '/root name/dir/file'). */
async function nodeAt(t: TestRepo, s: Snapshot, suffix: string): Promise<TreeNode> {
  let found: TreeNode | undefined;
  await walkSnapshot((id, type) => t.repo.loadBlob(id, type), s, { enter: () => true, node: (n, p) => void (p.endsWith(suffix) && (found = n)) });
  if (!found) throw new Error(`no ${suffix} in snapshot`);
  return found;
}

/** Flips one byte in the middle of a blob where it is stored. */
async function tamper(t: TestRepo, id: BlobId): Promise<void> {
  const loc = t.repo.locate(id)!;
  const fh = await fsp.open(packPath(t.dir, loc.pack), 'r+');
  try {
    const at = loc.offset + Math.floor(loc.length / 2);
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
  t.repo.dropPackHandles();
}

describe('verify', () => {
  let t: TestRepo;
  let src: string;
  let first: Snapshot;
  let second: Snapshot;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 64 * KiB });
    src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(path.join(src, 'dir'), { recursive: true });
    await fsp.writeFile(path.join(src, 'a.txt'), pseudoRandomBytes(100 * KiB, 1));
    await fsp.writeFile(path.join(src, 'dir', 'b.bin'), pseudoRandomBytes(200 * KiB, 2));
    first = await backupDir(t, src);
    await fsp.writeFile(path.join(src, 'c.txt'), 'a new file');
    second = await backupDir(t, src);
  });
  afterEach(() => t.close());

  it('finds nothing wrong in a healthy repository, with or without reading data', async () => {
    const quick = await verify(t.repo, t.pool, { readData: false });
    expect(quick.problems).toEqual([]);
    expect(quick).toMatchObject({ snapshots: 2, blobs_read: 0, unreferenced_packs: 0 });
    expect(quick.packs).toBeGreaterThan(3);
    const full = await verify(t.repo, t.pool, { readData: true });
    expect(full.problems).toEqual([]);
    expect(full.blobs_read).toBeGreaterThan(5);
  });

  it('traces a tampered data blob to every snapshot and file that needs it; restore refuses it', async () => {
    const b = await nodeAt(t, first, '/dir/b.bin');
    const victim = Buffer.from(b.blocks![1]!, 'hex') as BlobId;
    await tamper(t, victim);

    // The structure is intact: only reading the data finds it.
    expect((await verify(t.repo, t.pool, { readData: false })).problems).toEqual([]);
    const report = await verify(t.repo, t.pool, { readData: true });
    expect(report.problems).toHaveLength(1);
    const problem = report.problems[0]!;
    expect(problem.kind).toBe('damaged-blob');
    expect(problem.message).toContain(victim.toString('hex').slice(0, 16));
    const root = path.basename(src);
    expect([...(problem.affects ?? [])].sort((x, y) => x.snapshot.localeCompare(y.snapshot))).toEqual(
      [
        { snapshot: shortId(first.id), path: `/${root}/dir/b.bin` },
        { snapshot: shortId(second.id), path: `/${root}/dir/b.bin` },
      ].sort((x, y) => x.snapshot.localeCompare(y.snapshot)),
    );

    await expect(restoreTo(t, second, path.join(await t.temp.make(), 'dst'))).rejects.toBeInstanceOf(CorruptDataError);
  });

  it('reports a tampered tree blob as a damaged tree, and restore refuses it', async () => {
    const dirNode = await nodeAt(t, second, '/dir');
    await tamper(t, Buffer.from(dirNode.subtree!, 'hex') as BlobId);
    const quick = await verify(t.repo, t.pool, { readData: false });
    expect(quick.problems.map((p) => p.kind)).toContain('damaged-tree');
    const full = await verify(t.repo, t.pool, { readData: true });
    expect(full.problems.map((p) => p.kind)).toEqual(expect.arrayContaining(['damaged-tree', 'damaged-blob']));
    await expect(restoreTo(t, second, path.join(await t.temp.make(), 'dst'))).rejects.toBeInstanceOf(CorruptDataError);
  });

  it('reports a truncated pack and a missing pack', async () => {
    const packs = t.repo[INDEX_DB].prepare('SELECT name FROM packs ORDER BY id').pluck().all() as string[];
    await fsp.truncate(packPath(t.dir, packs[0]!), 100);
    await fsp.rm(packPath(t.dir, packs[1]!));
    const report = await verify(t.repo, t.pool, { readData: false });
    const kinds = report.problems.map((p) => p.kind);
    expect(kinds).toContain('damaged-pack');
    expect(kinds).toContain('missing-pack');
    expect(report.problems.find((p) => p.kind === 'damaged-pack')!.message).toContain(packs[0]!);
  });

  it('reports an index row that names a blob the pack does not hold where the index says', async () => {
    const row = t.repo[INDEX_DB].prepare('SELECT id FROM blobs WHERE type = ? LIMIT 1').get(BlobType.data) as { id: Buffer };
    t.repo[INDEX_DB].prepare('UPDATE blobs SET offset = offset + 1 WHERE id = ?').run(row.id);
    const report = await verify(t.repo, t.pool, { readData: false });
    expect(report.problems.map((p) => p.kind)).toContain('index-mismatch');
  });

  it('reports a block the index lost but a pack holds as not indexed, and one no pack holds as missing, with where it is used', async () => {
    const a = await nodeAt(t, second, '/a.txt');
    const block = Buffer.from(a.blocks![0]!, 'hex') as BlobId;
    const pack = t.repo.locate(block)!.pack;
    t.repo[INDEX_DB].prepare('DELETE FROM blobs WHERE id = ?').run(block);
    let report = await verify(t.repo, t.pool, { readData: false });
    expect(report.problems.map((p) => p.kind)).toEqual(['not-indexed']);
    expect(report.problems[0]!.message).toContain('--rebuild-index');

    await fsp.rm(packPath(t.dir, pack));
    report = await verify(t.repo, t.pool, { readData: false });
    const missing = report.problems.filter((p) => p.kind === 'missing-blob' && p.blob === a.blocks![0]);
    expect(missing).toHaveLength(1);
    expect(missing[0]!.affects!.map((x) => x.path)).toEqual([`/${path.basename(src)}/a.txt`, `/${path.basename(src)}/a.txt`]);
  });

  it('checks the blobs of a pack whose index row is gone, and finds one damaged there', async () => {
    const a = await nodeAt(t, second, '/a.txt');
    const block = Buffer.from(a.blocks![0]!, 'hex') as BlobId;
    await tamper(t, block);
    // the pack row goes, the blob rows stay: the index no longer vouches for the blob, and the pack must still be read
    t.repo[INDEX_DB].pragma('foreign_keys = OFF');
    t.repo[INDEX_DB].prepare('DELETE FROM packs WHERE name = ?').run(t.repo.locate(block)!.pack);
    const report = await verify(t.repo, t.pool, { readData: true });
    expect(report.problems.length).toBeGreaterThan(0);
    expect(report.blobs_read).toBeGreaterThan(0);
    expect(report.unreferenced_packs).toBe(1);
    expect(report.problems.some((p) => p.kind === 'not-indexed' || p.kind === 'damaged-blob')).toBe(true);
  });
});
