/**
 * A repository copied to another backend (object storage, issue 17) and
 * back: append-only there, records after the packs they need, resumable,
 * and a copy fetched from it alone restores what was backed up.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openRepoWorkers } from '../agent/workers.ts';
import type { Backend, ByteRange, FileKind } from '../backend/backend.ts';
import { MemoryBackend } from '../backend/memory.ts';
import { ReplicaMismatchError, UsageError } from '../errors/errors.ts';
import { fetchRepository, pushRepository } from './mirror.ts';
import { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { listSnapshots } from './snapshots.ts';
import { backupDir, openTestRepo, restoreTo, TEST_PASSWORD, type TestRepo } from './testing/fixture.ts';
import { pseudoRandomBytes } from './testing/tree-builder.ts';
import { describeTree, diffTrees, type TreeInfo } from './testing/tree-compare.ts';

const KiB = 1024;

/** A backend that notes every write and delete, and can fail a chosen read once. */
class Recording implements Backend {
  readonly writes: string[] = [];
  readonly deletes: string[] = [];
  readonly reads: string[] = [];
  failRead: ((kind: FileKind, name: string) => boolean) | undefined;
  readonly inner: Backend;
  constructor(inner: Backend = new MemoryBackend()) {
    this.inner = inner;
  }
  get location() {
    return this.inner.location;
  }
  list(kind: FileKind) {
    return this.inner.list(kind);
  }
  stat(kind: FileKind, name: string) {
    return this.inner.stat(kind, name);
  }
  read(kind: FileKind, name: string, range?: ByteRange) {
    if (this.failRead?.(kind, name)) {
      this.failRead = undefined;
      return Promise.reject(new Error('connection reset'));
    }
    this.reads.push(`${kind}/${name}`);
    return this.inner.read(kind, name, range);
  }
  async writeOnce(kind: FileKind, name: string, data: Uint8Array) {
    await this.inner.writeOnce(kind, name, data);
    this.writes.push(`${kind}/${name}`);
  }
  async delete(kind: FileKind, name: string) {
    this.deletes.push(`${kind}/${name}`);
    await this.inner.delete(kind, name);
  }
}

describe('a repository pushed to another backend and fetched back', () => {
  let t: TestRepo;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo({ packSize: 256 * KiB });
    src = await t.temp.make('lifeboat-src-');
    await fsp.writeFile(path.join(src, 'a'), pseudoRandomBytes(700 * KiB, 1));
    await fsp.mkdir(path.join(src, 'd'));
    await fsp.writeFile(path.join(src, 'd', 'b'), pseudoRandomBytes(300 * KiB, 2));
  });
  afterEach(() => t.close());

  /** Restores each of `expected` from the repository in `dir` alone. */
  const restoredFromDir = async (dir: string, expected: readonly [Snapshot, TreeInfo][]) => {
    const repo = await Repository.open(dir, TEST_PASSWORD);
    const pool = openRepoWorkers(repo, { workers: 2, level: 3, packSize: t.packSize });
    try {
      expect(listSnapshots(repo).map((s) => s.id).sort()).toEqual(expected.map(([s]) => s.id).sort());
      for (const [s, tree] of expected) {
        const target = path.join(await t.temp.make('lifeboat-restore-'), 'r');
        await restoreTo({ ...t, repo, pool }, s, target);
        expect(diffTrees(tree, await describeTree(target))).toEqual([]);
      }
    } finally {
      await pool.close();
      repo.close();
    }
  };

  it('copies config, keys, packs, then records; again only what is new; never replaces or deletes', async () => {
    const to = new Recording();
    const first = await backupDir(t, src);
    const firstTree = await describeTree(src);
    const r1 = await pushRepository(t.repo, to);
    expect(r1).toMatchObject({ keys: 1, snapshots: 1 });
    expect(r1.packs).toBeGreaterThan(1);
    expect(to.writes[0]).toBe('config/config.json');
    const lastPack = to.writes.findLastIndex((w) => w.startsWith('pack/'));
    expect(to.writes.findIndex((w) => w.startsWith('snapshot/'))).toBeGreaterThan(lastPack);

    expect(await pushRepository(t.repo, to)).toEqual({ keys: 0, packs: 0, snapshots: 0, bytes: 0 });

    await fsp.writeFile(path.join(src, 'd', 'c'), pseudoRandomBytes(200 * KiB, 3));
    const second = await backupDir(t, src);
    const written = to.writes.length;
    const r2 = await pushRepository(t.repo, to);
    expect(r2.snapshots).toBe(1);
    expect(r2.packs).toBeGreaterThanOrEqual(1);
    expect(to.writes.slice(written).at(-1)).toBe(`snapshot/${second.id}`);
    expect(to.deletes).toEqual([]);

    const dir = path.join(await t.temp.make('lifeboat-fetched-'), 'repo');
    await fetchRepository(to, dir);
    await restoredFromDir(dir, [[first, firstTree], [second, await describeTree(src)]]);
  });

  it('refuses a target that holds another repository, and a fetch into a directory that holds something else', async () => {
    const other = await openTestRepo();
    try {
      const to = new MemoryBackend();
      await pushRepository(other.repo, to);
      await backupDir(t, src);
      await expect(pushRepository(t.repo, to)).rejects.toThrow(ReplicaMismatchError);
      await expect(fetchRepository(new MemoryBackend(), await t.temp.make('lifeboat-fetched-'))).rejects.toThrow(ReplicaMismatchError); // nothing there
      const busy = await t.temp.make('lifeboat-busy-');
      await fsp.writeFile(path.join(busy, 'notes.txt'), 'mine');
      await expect(fetchRepository(to, busy)).rejects.toThrow(UsageError);
    } finally {
      await other.close();
    }
  });

  it('resumes a push and a fetch that failed midway, copying only what is missing', async () => {
    const snapshot = await backupDir(t, src);
    const tree = await describeTree(src);
    const to = new Recording();
    // the push's second pack fails to read from the repository: nothing of the snapshot's record is sent
    const local = t.repo.backend;
    let packs = 0;
    const failing = new Recording(local);
    failing.failRead = (kind) => kind === 'pack' && ++packs === 2;
    Object.defineProperty(t.repo, 'backend', { value: failing, configurable: true });
    await expect(pushRepository(t.repo, to, { concurrency: 1 })).rejects.toThrow('connection reset');
    expect(to.writes.some((w) => w.startsWith('snapshot/'))).toBe(false);
    const sent = new Set(to.writes);
    const readBefore = failing.reads.length;
    await pushRepository(t.repo, to);
    Object.defineProperty(t.repo, 'backend', { value: local, configurable: true });
    // what got there is not read or sent again
    expect(failing.reads.slice(readBefore).filter((r) => sent.has(r))).toEqual([]);
    expect(failing.reads.slice(readBefore).filter((r) => r.startsWith('pack/')).length).toBe(to.writes.filter((w) => w.startsWith('pack/') && !sent.has(w)).length);

    let reads = 0;
    to.failRead = (kind) => kind === 'pack' && ++reads === 2;
    const dir = path.join(await t.temp.make('lifeboat-fetched-'), 'repo');
    await expect(fetchRepository(to, dir, { concurrency: 1 })).rejects.toThrow('connection reset');
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toThrow(); // no index yet: not taken for a repository
    const fetchedBefore = to.reads.filter((r) => r.startsWith('pack/')).length;
    const report = await fetchRepository(to, dir);
    const packsThere = to.writes.filter((w) => w.startsWith('pack/')).length;
    expect(report.packs).toBe(packsThere - fetchedBefore); // the one fetched before is not fetched again
    expect(report.index.snapshots).toBe(1);
    await restoredFromDir(dir, [[snapshot, tree]]);
  });
});
