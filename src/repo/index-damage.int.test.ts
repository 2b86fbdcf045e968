import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CorruptIndexError, PruneRefusedError } from '../errors/errors.ts';
import type { BlobId } from './ids.ts';
import { listPackFiles, packPath } from './pack.ts';
import { prune } from './prune.ts';
import { rebuildIndex } from './rebuild.ts';
import { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { listRecordIds, snapshotsDir } from './snapshot-record.ts';
import { deleteSnapshots, listSnapshotHeads, listSnapshots } from './snapshots.ts';
import { Store } from './store.ts';
import { backupDir, openTestRepo, restoreTo, TEST_PASSWORD, type TestRepo } from './testing/fixture.ts';
import { pseudoRandomBytes } from './testing/tree-builder.ts';
import { describeTree, diffTrees } from './testing/tree-compare.ts';
import { verify } from './verify.ts';
import { walkSnapshot } from './walk.ts';
import { INDEX_DB } from './index-db.ts';

const KiB = 1024;

/**
 * The index is a cache of the packs and the snapshot records: whatever
 * happens to it, nothing a snapshot needs is deleted, damage is refused with
 * its code and the way out, and a rebuild brings every snapshot back.
 */
describe('a damaged index', () => {
  let t: TestRepo;
  let src: string;
  let snapshots: Snapshot[];
  let packs: string[];

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 64 * KiB });
    src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(path.join(src, 'd'), { recursive: true });
    await fsp.writeFile(path.join(src, 'a.bin'), pseudoRandomBytes(300 * KiB, 1));
    await fsp.writeFile(path.join(src, 'd', 'b.bin'), pseudoRandomBytes(200 * KiB, 2));
    await backupDir(t, src);
    await fsp.writeFile(path.join(src, 'd', 'c.txt'), 'third');
    await backupDir(t, src);
    snapshots = listSnapshots(t.repo);
    packs = (await listPackFiles(t.dir)).sort();
    expect(packs.length).toBeGreaterThan(4);
  });
  afterEach(() => t.close());

  const index = () => path.join(t.dir, 'index.db');

  /** Closes the repository, damages its index.db file, and returns what opening it again throws. */
  async function damageFile(damage: (file: string) => Promise<void>): Promise<unknown> {
    await t.restartWorkers();
    t.repo.close();
    for (const suffix of ['-wal', '-shm']) await fsp.rm(index() + suffix, { force: true });
    await damage(index());
    return Repository.open(t.dir, TEST_PASSWORD).then(
      (r) => {
        r.close();
        return undefined;
      },
      (err: unknown) => err,
    );
  }

  /** Rebuilds, reopens, and checks every snapshot is listed, verifies clean reading every blob, and restores equal to the source. */
  async function rebuildAndCheck(): Promise<void> {
    await t.restartWorkers();
    const report = await rebuildIndex(t.dir, await Repository.keysOf(t.dir, TEST_PASSWORD));
    expect(report.snapshots).toBe(snapshots.length);
    const repo = await t.reopen();
    expect(listSnapshots(repo).map((s) => s.id)).toEqual(snapshots.map((s) => s.id));
    expect((await verify(repo, t.pool, { readData: true })).problems).toEqual([]);
    const target = path.join(await t.temp.make(), 'out');
    await restoreTo(t, snapshots.at(-1)!, target);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
  }

  it('emptied (zero bytes): refused, not taken for an empty repository; rebuilt whole', async () => {
    const err = await damageFile((f) => fsp.truncate(f, 0));
    expect(err).toBeInstanceOf(CorruptIndexError);
    expect((err as Error).message).toMatch(/empty/);
    expect((err as Error).message).toContain('repair --rebuild-index');
    expect(() => Store.openStore(t.dir)).toThrow(CorruptIndexError);
    await rebuildAndCheck();
  });

  it('truncated: refused; rebuilt whole', async () => {
    const size = (await fsp.stat(index())).size;
    const err = await damageFile((f) => fsp.truncate(f, Math.floor(size / 2) + 100));
    expect(err).toBeInstanceOf(CorruptIndexError);
    await rebuildAndCheck();
  });

  it("replaced by another repository's index: refused; rebuilt whole", async () => {
    const other = await openTestRepo();
    try {
      const otherIndex = path.join(other.dir, 'index.db');
      other.repo.close();
      const err = await damageFile((f) => fsp.copyFile(otherIndex, f));
      expect(err).toBeInstanceOf(CorruptIndexError);
      expect((err as Error).message).toMatch(/another repository/);
    } finally {
      await other.close();
    }
    await rebuildAndCheck();
  });

  it('replaced by an older copy of itself: refused, as it does not know the newer snapshots', async () => {
    t.repo[INDEX_DB].pragma('wal_checkpoint(TRUNCATE)');
    const old = path.join(await t.temp.make(), 'old-index.db');
    await fsp.copyFile(index(), old);
    await fsp.writeFile(path.join(src, 'e.bin'), pseudoRandomBytes(100 * KiB, 3));
    await backupDir(t, src);
    snapshots = listSnapshots(t.repo);
    const err = await damageFile((f) => fsp.copyFile(old, f));
    expect(err).toBeInstanceOf(CorruptIndexError);
    expect((err as Error).message).toMatch(/stale or damaged/);
    await rebuildAndCheck();
  });

  it('replaced by a copy from before a forget: the forgotten snapshot does not come back, at open or by a rebuild', async () => {
    t.repo[INDEX_DB].pragma('wal_checkpoint(TRUNCATE)');
    const old = path.join(await t.temp.make(), 'old-index.db');
    await fsp.copyFile(index(), old);
    const [gone, kept] = snapshots;
    deleteSnapshots(t.repo, [gone!.id]);
    await prune(t.repo, { maxUnused: 0.2, packSize: 64 * KiB });
    await damageFile((f) => fsp.copyFile(old, f));
    const repo = await t.reopen();
    expect(listSnapshots(repo).map((s) => s.id)).toEqual([kept!.id]);
    expect(listRecordIds(t.dir)).toEqual([kept!.id]);
    snapshots = [kept!];
    await rebuildAndCheck();
    // and a rebuild straight from the stale copy
    await damageFile((f) => fsp.copyFile(old, f));
    await rebuildAndCheck();
    expect(listRecordIds(t.dir)).toEqual([kept!.id]);
  });

  it('its blob and pack rows deleted: prune deletes no pack a snapshot needs and indexes them again; verify is clean after', async () => {
    const db = t.repo[INDEX_DB];
    db.pragma('foreign_keys = OFF');
    db.exec('DELETE FROM blobs; DELETE FROM packs;');
    const before = await verify(t.repo, t.pool, { readData: true });
    expect(before.problems.map((p) => p.kind)).toContain('not-indexed');
    expect(before.unreferenced_packs).toBe(packs.length);
    await expect(prune(t.repo, { maxUnused: 0.2, packSize: 64 * KiB })).resolves.toMatchObject({ packs_deleted: 0, packs_adopted: packs.length });
    expect((await listPackFiles(t.dir)).sort()).toEqual(packs);
    expect((await verify(t.repo, t.pool, { readData: true })).problems).toEqual([]);
  });

  it('its snapshot rows deleted too: refused at open (the records name data the index does not know); rebuilt whole', async () => {
    const db = t.repo[INDEX_DB];
    db.pragma('foreign_keys = OFF');
    db.exec('DELETE FROM blobs; DELETE FROM packs; DELETE FROM snapshots;');
    await t.restartWorkers();
    await expect(t.reopen()).rejects.toBeInstanceOf(CorruptIndexError);
    await rebuildAndCheck();
  });

  it('a pack row gone: verify reads the pack anyway, prune keeps it, a backup stores its blobs again', async () => {
    const db = t.repo[INDEX_DB];
    const victim = db.prepare('SELECT name FROM packs ORDER BY size DESC LIMIT 1').pluck().get() as string;
    db.pragma('foreign_keys = OFF');
    db.prepare('DELETE FROM packs WHERE name = ?').run(victim);
    const report = await verify(t.repo, t.pool, { readData: true });
    expect(report.problems.map((p) => p.kind)).toContain('not-indexed');
    expect(report.unreferenced_packs).toBe(1);
    await prune(t.repo, { maxUnused: 0.9, packSize: 64 * KiB });
    expect(fs.existsSync(packPath(t.dir, victim))).toBe(true);
    expect((await verify(t.repo, t.pool, { readData: true })).problems).toEqual([]);
  });

  it('a pack file gone: the next backup says so and stores its blocks again, unchanged files included; every snapshot whole again', async () => {
    const victim = t.repo[INDEX_DB].prepare('SELECT name FROM packs ORDER BY size DESC LIMIT 1').pluck().get() as string;
    await fsp.rm(packPath(t.dir, victim));
    expect((await verify(t.repo, t.pool, { readData: false })).problems.map((p) => p.kind)).toContain('missing-pack');
    const damage: string[] = [];
    const s = await backupDir(t, src, { onDamage: (m) => damage.push(m) });
    expect(damage).toHaveLength(1);
    expect(damage[0]).toContain(victim);
    expect(s.stats.blobs_new).toBeGreaterThan(0);
    const target = path.join(await t.temp.make(), 'out');
    await restoreTo(t, s, target);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
    // the source had not changed: what the lost pack held is all back, so the older snapshots are whole too
    expect((await verify(t.repo, t.pool, { readData: true })).problems).toEqual([]);
  });

  it('a pack file cut short, and a stray file in packs/: the next backup stores the pack\'s blocks again, and the new snapshot restores', async () => {
    const victim = t.repo[INDEX_DB].prepare('SELECT name, size FROM packs ORDER BY size DESC LIMIT 1').get() as { name: string; size: number };
    await fsp.truncate(packPath(t.dir, victim.name), Math.floor(victim.size / 2));
    await fsp.writeFile(path.join(t.dir, 'packs', 'README.txt'), 'not a pack directory');
    // as the next process finds it (a long-lived store looks at every size again at most every minute)
    await t.reopen();
    const damage: string[] = [];
    const s = await backupDir(t, src, { onDamage: (m) => damage.push(m) });
    expect(damage.join('\n')).toContain(victim.name);
    const target = path.join(await t.temp.make(), 'out');
    await restoreTo(t, s, target);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
  });

  it("a parent snapshot's trees lost: the next backup, journalled or not, reads what is there instead of failing or reusing them", async () => {
    // drop the index rows of every tree: the parent's root and its subdirectory's
    t.repo[INDEX_DB].prepare('DELETE FROM blobs WHERE type = 1').run();
    await fsp.writeFile(path.join(src, 'a.bin'), pseudoRandomBytes(300 * KiB, 7));
    const damage: string[] = [];
    const journalled = await backupDir(t, src, { onDamage: (m) => damage.push(m), changes: { mode: 'paths', paths: new Set(['a.bin']) } });
    expect(damage.join('\n')).toMatch(/cannot be read/);
    const target = path.join(await t.temp.make(), 'out');
    await restoreTo(t, journalled, target);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
  });

  it('a tree no pack holds: prune deletes nothing and says why', async () => {
    // the root tree of the newest snapshot lives in the main thread's tree pack; drop that pack's file
    const root = snapshots.at(-1)!.tree;
    const pack = t.repo.locate(root)!.pack;
    await fsp.rm(packPath(t.dir, pack));
    const before = (await listPackFiles(t.dir)).sort();
    await expect(prune(t.repo, { maxUnused: 0.2, packSize: 64 * KiB })).rejects.toBeInstanceOf(PruneRefusedError);
    expect((await listPackFiles(t.dir)).sort()).toEqual(before);
  });

  it('snapshot records: a lost one is written again from its row; a crash between record and row is taken back', async () => {
    const [first] = listRecordIds(t.dir);
    await fsp.rm(path.join(snapshotsDir(t.dir), first!));
    let repo = await t.reopen();
    expect(listRecordIds(t.dir).sort()).toEqual(snapshots.map((s) => s.id).sort());
    // a record without its row (the row lost, or a crash between the two)
    repo[INDEX_DB].prepare('DELETE FROM snapshots WHERE id = ?').run(first);
    repo = await t.reopen();
    expect(listSnapshots(repo).map((s) => s.id)).toEqual(snapshots.map((s) => s.id));
  });

  it('a row whose volume is not text: the cheap listing of status and metrics says so, as the full one does', async () => {
    t.repo[INDEX_DB].prepare('UPDATE snapshots SET volume = ? WHERE id = ?').run(Buffer.from('not text'), snapshots[0]!.id);
    expect(() => listSnapshotHeads(t.repo)).toThrow(CorruptIndexError);
    expect(() => listSnapshotHeads(t.repo)).toThrow(/index row of snapshot .* is damaged; rebuild the index/);
    expect(() => listSnapshots(t.repo)).toThrow(CorruptIndexError);
    await rebuildAndCheck();
  });

  it('a row whose id would name a path: refused at open, nothing written outside the repository', async () => {
    t.repo[INDEX_DB].prepare('UPDATE snapshots SET id = ? WHERE id = ?').run('../../escaped', snapshots[0]!.id);
    await t.restartWorkers();
    await expect(t.reopen()).rejects.toBeInstanceOf(CorruptIndexError);
    expect(fs.existsSync(path.join(t.dir, '..', 'escaped'))).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(t.dir), '..', 'escaped'))).toBe(false);
    await rebuildAndCheck();
  });

  it('a rebuild writes records again from the old rows: a record deleted, damaged, or misnamed, or the whole directory gone', async () => {
    const [a, b] = snapshots.map((x) => x.id);
    await fsp.rm(path.join(snapshotsDir(t.dir), a!));
    await fsp.writeFile(path.join(snapshotsDir(t.dir), b!), '{"id": "trunc');
    await rebuildAndCheck();
    // misnamed: b's record under a new name, and b's own gone
    await fsp.rename(path.join(snapshotsDir(t.dir), b!), path.join(snapshotsDir(t.dir), 'f'.repeat(64)));
    await rebuildAndCheck();
    expect(listRecordIds(t.dir).sort()).toEqual([a!, b!].sort());
    await fsp.rm(snapshotsDir(t.dir), { recursive: true });
    await rebuildAndCheck();
  });

  it('the snapshots directory gone: written again from the rows, which then say the same', async () => {
    await fsp.rm(snapshotsDir(t.dir), { recursive: true });
    const repo = await t.reopen();
    expect(listRecordIds(t.dir).sort()).toEqual(snapshots.map((s) => s.id).sort());
    expect(listSnapshots(repo)).toEqual(snapshots);
  });

  it('rebuilds from packs of the first format too, learning what their trees name with the key', async () => {
    // rewrite every pack as LBP1 (no edges), as a repository made by an earlier version holds them
    await t.restartWorkers();
    t.repo.close();
    for (const name of await listPackFiles(t.dir)) await toV1(packPath(t.dir, name));
    await fsp.truncate(index(), 0);
    await rebuildAndCheck();
  });
});

describe("a replica's damaged index (no key)", () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 2, packSize: 64 * KiB });
  });
  afterEach(() => t.close());

  it('prunes by the edges the trailers declare: refs rows lost do not make it delete what snapshots need', async () => {
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.bin'), pseudoRandomBytes(400 * KiB, 4));
    const s = await backupDir(t, src);
    const needed = new Set<string>();
    await walkSnapshot((id, type) => t.repo.loadBlob(id, type), s, {
      enter: (id) => needed.add(id.toString('hex')) !== undefined,
      blocks: (ids) => ids.forEach((h) => needed.add(h)),
    });
    t.repo.close();
    const store = Store.openStore(t.dir);
    try {
      store[INDEX_DB].exec('DELETE FROM refs');
      const report = await prune(store, { maxUnused: 0.2, packSize: 64 * KiB });
      expect(report.blobs_missing).toBe(0);
      for (const hex of needed) expect(store.hasBlob(Buffer.from(hex, 'hex') as BlobId)).toBe(true);
    } finally {
      store.close();
    }
    const repo = await t.reopen();
    const target = path.join(await t.temp.make(), 'out');
    await restoreTo(t, s, target);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
    expect((await verify(repo, t.pool, { readData: true })).problems).toEqual([]);
  });

  it('refuses to prune when a needed tree lists no edges and no refs say what it names', async () => {
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.bin'), pseudoRandomBytes(100 * KiB, 5));
    await backupDir(t, src);
    t.repo.close();
    for (const name of await listPackFiles(t.dir)) await toV1(packPath(t.dir, name));
    const store = Store.openStore(t.dir);
    const before = (await listPackFiles(t.dir)).sort();
    try {
      await expect(prune(store, { maxUnused: 0.2, packSize: 64 * KiB })).rejects.toBeInstanceOf(PruneRefusedError);
    } finally {
      store.close();
    }
    expect((await listPackFiles(t.dir)).sort()).toEqual(before);
  });
});

/** Rewrites a pack's trailer in the first format (LBP1): the same entries, no edges. */
async function toV1(file: string): Promise<void> {
  const { readPackTrailer } = await import('./pack.ts');
  const zlib = await import('node:zlib');
  const entries = readPackTrailer(file, path.basename(file));
  const data = entries.reduce((n, e) => n + e.length, 0);
  const bytes = await fsp.readFile(file);
  const table = Buffer.alloc(entries.length * 41);
  entries.forEach((e, i) => {
    table[i * 41] = e.type;
    e.id.copy(table, i * 41 + 1);
    table.writeUInt32LE(e.length, i * 41 + 33);
    table.writeUInt32LE(e.rawLength, i * 41 + 37);
  });
  const footer = Buffer.alloc(12);
  footer.writeUInt32LE(entries.length, 0);
  footer.writeUInt32LE(zlib.crc32(table), 4);
  footer.write('LBP1', 8);
  await fsp.writeFile(file, Buffer.concat([bytes.subarray(0, data), table, footer]));
}
