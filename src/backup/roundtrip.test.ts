import fsp from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { backupDir, openTestRepo, removeTree, restoreTo, type TestRepo } from '../repo/testing/fixture.ts';
import { materialize, treeArb, type DirSpec } from '../repo/testing/tree-builder.ts';
import { describeTree, diffTrees, type TreeInfo } from '../repo/testing/tree-compare.ts';

const KiB = 1024;
const FS_BLOCK = 4 * KiB;

const SPLITTERS: readonly SplitterSpec[] = [
  { kind: 'fixed', size: 4 * KiB },
  { kind: 'fixed', size: 64 * KiB },
  { kind: 'cdc', size: 4 * KiB },
  { kind: 'cdc', size: 64 * KiB },
];

/**
 * Holes survive: a restored file may allocate data only where the source had
 * some, rounded out to the blocks that hold it. A fixed block of B bytes that
 * holds any data is written whole; a CDC chunk (at most 8 × avg) may straddle
 * two file-system blocks of data. Slack covers extent-tree metadata.
 */
function sparseProblems(src: TreeInfo, dst: TreeInfo, splitter: SplitterSpec): string[] {
  const maxBlock = splitter.kind === 'fixed' ? splitter.size : 8 * splitter.size;
  const perFsBlock = splitter.kind === 'fixed' ? splitter.size : 2 * maxBlock;
  const out: string[] = [];
  for (const [p, s] of src) {
    const d = dst.get(p);
    if (s.type !== 'file' || !d) continue;
    const bound = Math.min(Math.ceil(s.size / FS_BLOCK) * FS_BLOCK, (s.allocated / FS_BLOCK) * perFsBlock) + 64 * KiB;
    if (d.allocated > bound) out.push(`${p}: ${d.allocated} bytes allocated, source ${s.allocated}, at most ${bound} expected`);
  }
  return out;
}

describe('backup → restore round trip', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 256 * KiB });
  });
  afterEach(() => t.close());

  it('restores random trees exactly, with every splitter (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(treeArb(), async (spec: DirSpec) => {
        run++;
        const src = path.join(await t.temp.make('lifeboat-src-'), 'src');
        await materialize(spec, src);
        const before = await describeTree(src);
        try {
          for (const splitter of SPLITTERS) {
            // A host per splitter: no parent, so every file is really read and cut this way.
            const snapshot = await backupDir(t, src, { host: `prop-${splitter.kind}-${splitter.size}`, splitter });
            expect(snapshot.stats.errors).toBe(0);
            expect(snapshot.parent).toBeNull();
            const dst = path.join(await t.temp.make('lifeboat-dst-'), 'restored');
            await restoreTo(t, snapshot, dst);
            const after = await describeTree(dst);
            expect(diffTrees(before, after), `${splitter.kind} ${splitter.size}, run ${run}`).toEqual([]);
            expect(sparseProblems(before, after, splitter), `${splitter.kind} ${splitter.size}`).toEqual([]);
            await removeTree(path.dirname(dst));
          }
          // Backing up changed nothing in the source (atime aside).
          expect(diffTrees(before, await describeTree(src))).toEqual([]);
        } finally {
          await removeTree(path.dirname(src));
        }
      }),
      // LIFEBOAT_PROPERTY_RUNS=200 for a soak run.
      { numRuns: Number(process.env.LIFEBOAT_PROPERTY_RUNS ?? 15) },
    );
  });

  it('keeps holes: a 4 MiB sparse file with two 4 KiB writes restores with about 8 KiB allocated', async () => {
    const src = path.join(await t.temp.make(), 'src');
    await materialize(
      {
        kind: 'dir',
        name: 'r',
        mode: 0o755,
        mtimeMs: 1_600_000_000_000,
        children: [
          {
            kind: 'file',
            name: 'disk.img',
            mode: 0o600,
            mtimeMs: 1_600_000_000_000,
            content: { kind: 'sparse', size: 4 << 20, writes: [{ offset: 0, length: 4096, seed: 1 }, { offset: 3 << 20, length: 4096, seed: 2 }] },
          },
        ],
      },
      src,
    );
    for (const splitter of [SPLITTERS[0]!, SPLITTERS[1]!]) {
      const snapshot = await backupDir(t, src, { splitter, host: `h${splitter.size}` });
      const dst = path.join(await t.temp.make(), 'dst');
      await restoreTo(t, snapshot, dst);
      const after = await describeTree(dst);
      const file = after.get('disk.img')!;
      expect(file.size).toBe(4 << 20);
      expect(file.allocated).toBeLessThanOrEqual(2 * splitter.size + 64 * KiB);
      expect(diffTrees(await describeTree(src), after)).toEqual([]);
    }
  });

  it('round-trips files larger than a worker range (8 MiB), sparse and dense, with each splitter', async () => {
    const src = path.join(await t.temp.make(), 'src');
    const MiB = 1024 * KiB;
    const edges = [0, 8 * MiB - 1, 8 * MiB, 16 * MiB + 123, 20 * MiB - 4 * KiB];
    await materialize(
      {
        kind: 'dir',
        name: 'r',
        mode: 0o755,
        mtimeMs: 1_600_000_000_000,
        children: [
          {
            kind: 'file',
            name: 'sparse.img',
            mode: 0o600,
            mtimeMs: 1_600_000_000_001,
            content: { kind: 'sparse', size: 20 * MiB, writes: edges.map((offset, i) => ({ offset, length: 4 * KiB, seed: 10 + i })) },
          },
          { kind: 'file', name: 'dense.bin', mode: 0o644, mtimeMs: 1_600_000_000_002, content: { kind: 'bytes', size: 17 * MiB + 5, pattern: 'random', seed: 20 } },
        ],
      },
      src,
    );
    const before = await describeTree(src);
    for (const splitter of [SPLITTERS[1]!, SPLITTERS[3]!]) {
      const snapshot = await backupDir(t, src, { splitter, host: `large-${splitter.kind}` });
      expect(snapshot.stats.bytes_read).toBe(37 * MiB + 5);
      const dst = path.join(await t.temp.make(), 'dst');
      await restoreTo(t, snapshot, dst);
      const after = await describeTree(dst);
      expect(diffTrees(before, after), splitter.kind).toEqual([]);
      expect(sparseProblems(before, after, splitter), splitter.kind).toEqual([]);
      await removeTree(path.dirname(dst));
    }
  });

  it('restores mtimes before 1970 and far in the future', async () => {
    const src = path.join(await t.temp.make(), 'src');
    const times = { old: -86_400_000 * 365 * 20 + 123, epoch: 0, future: Date.UTC(2200, 0, 1, 0, 0, 0, 456) };
    await materialize(
      {
        kind: 'dir',
        name: 'r',
        mode: 0o755,
        mtimeMs: times.old,
        children: Object.entries(times).map(([name, mtimeMs]) => ({
          kind: 'file' as const,
          name,
          mode: 0o644,
          mtimeMs,
          content: { kind: 'bytes' as const, size: 10, pattern: 'random' as const, seed: 3 },
        })),
      },
      src,
    );
    const before = await describeTree(src);
    expect(before.get('old')!.mtimeNs).toBe(BigInt(times.old) * 1_000_000n);
    expect(before.get('.')!.mtimeNs).toBeLessThan(0n);
    const snapshot = await backupDir(t, src);
    const dst = path.join(await t.temp.make(), 'dst');
    await restoreTo(t, snapshot, dst);
    expect(diffTrees(before, await describeTree(dst))).toEqual([]);
    // The next backup reads the parent's trees back.
    const again = await backupDir(t, src);
    expect(again.stats.files_unchanged).toBe(3);
  });

  it('restores hard links, in one directory and across directories, empty files included', async () => {
    // Many names for few inodes; empty and small files make any link-before-create race likely.
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(path.join(src, 'a'), { recursive: true });
    await fsp.mkdir(path.join(src, 'b'));
    for (let i = 0; i < 12; i++) await fsp.writeFile(path.join(src, 'a', `f${i}`), i % 3 === 0 ? '' : `file ${i} `.repeat(i * 100));
    for (let j = 0; j < 60; j++) await fsp.link(path.join(src, 'a', `f${j % 12}`), path.join(src, j % 2 ? 'a' : 'b', `link${j}`));
    const snapshot = await backupDir(t, src);
    const before = await describeTree(src);
    for (let round = 0; round < 3; round++) {
      const dst = path.join(await t.temp.make(), 'dst');
      await restoreTo(t, snapshot, dst);
      expect(diffTrees(before, await describeTree(dst))).toEqual([]);
    }
  });
});
