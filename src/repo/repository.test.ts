import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AmbiguousSnapshotError,
  CorruptIndexError,
  NotARepositoryError,
  RepositoryExistsError,
  SnapshotNotFoundError,
  WrongPasswordError,
} from '../errors/errors.ts';
import { BlobType } from './ids.ts';
import { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { findSnapshot, latestSnapshotOf, listSnapshots, saveSnapshot } from './snapshots.ts';
import { openTestRepo, TEST_PASSWORD, TempDirs, type TestRepo } from './testing/fixture.ts';

describe('Repository.init / open', () => {
  const temp = new TempDirs();
  afterEach(() => temp.cleanup());

  it('opens what it created with the password, and with nothing else', async () => {
    const dir = path.join(await temp.make(), 'repo');
    const repo = await Repository.init(dir, TEST_PASSWORD);
    const id = repo.id;
    const keys = repo.keys;
    repo.close();
    const again = await Repository.open(dir, TEST_PASSWORD);
    expect(again.id).toBe(id);
    expect(again.keys.enc.equals(keys.enc)).toBe(true);
    again.close();
    await expect(Repository.open(dir, 'wrong')).rejects.toBeInstanceOf(WrongPasswordError);
    await expect(Repository.open(dir, '')).rejects.toBeInstanceOf(WrongPasswordError);
  });

  it('refuses to initialise a directory that already has files, or a repository', async () => {
    const dir = await temp.make();
    await fsp.writeFile(path.join(dir, 'x'), '');
    await expect(Repository.init(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(RepositoryExistsError);
    const repoDir = path.join(await temp.make(), 'r');
    (await Repository.init(repoDir, TEST_PASSWORD)).close();
    await expect(Repository.init(repoDir, TEST_PASSWORD)).rejects.toBeInstanceOf(RepositoryExistsError);
  });

  it('refuses what is not a repository with NotARepositoryError', async () => {
    const empty = await temp.make();
    await expect(Repository.open(empty, TEST_PASSWORD)).rejects.toBeInstanceOf(NotARepositoryError);
    await expect(Repository.open(path.join(empty, 'missing'), TEST_PASSWORD)).rejects.toBeInstanceOf(NotARepositoryError);

    const dir = path.join(await temp.make(), 'r');
    (await Repository.init(dir, TEST_PASSWORD)).close();
    const config = await fsp.readFile(path.join(dir, 'config.json'), 'utf8');
    await fsp.writeFile(path.join(dir, 'config.json'), '{"lifeboat_repository": 99}');
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(NotARepositoryError);
    await fsp.writeFile(path.join(dir, 'config.json'), config);

    const [keyFile] = await fsp.readdir(path.join(dir, 'keys'));
    await fsp.writeFile(path.join(dir, 'keys', keyFile!), 'garbage');
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(NotARepositoryError);
    await fsp.rm(path.join(dir, 'keys', keyFile!));
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(NotARepositoryError);
  });

  it('refuses a lost or damaged index with CorruptIndexError', async () => {
    const dir = path.join(await temp.make(), 'r');
    (await Repository.init(dir, TEST_PASSWORD)).close();
    await fsp.rm(path.join(dir, 'index.db'));
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(CorruptIndexError);
    await fsp.writeFile(path.join(dir, 'index.db'), Buffer.alloc(8192, 0x5a));
    await expect(Repository.open(dir, TEST_PASSWORD)).rejects.toBeInstanceOf(CorruptIndexError);
  });
});

describe('snapshot lookup', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo({ workers: 1 });
  });
  afterEach(() => t.close());

  const row = (id: string, time: string, host = 'h', source = '/s'): Snapshot => ({
    id,
    time,
    host,
    source,
    volume: null,
    parent: null,
    tree: Buffer.alloc(32) as Snapshot['tree'],
    meta: null,
    tags: ['t'],
    splitter: { kind: 'fixed', size: 65536 },
    stats: { files: 1 } as unknown as Snapshot['stats'],
  });

  it('finds by full id, unique prefix and "latest"; refuses ambiguous, short and unknown refs', () => {
    const a = row(`abcd1${'0'.repeat(59)}`, '2024-01-01T00:00:00.000Z');
    const b = row(`abcd2${'0'.repeat(59)}`, '2024-01-02T00:00:00.000Z', 'other');
    saveSnapshot(t.repo, a);
    saveSnapshot(t.repo, b);
    expect(findSnapshot(t.repo, a.id)).toEqual(a);
    expect(findSnapshot(t.repo, 'abcd1').id).toBe(a.id);
    // "latest" is of one source: over two it is ambiguous, and a filter chooses
    expect(() => findSnapshot(t.repo, 'latest')).toThrow(AmbiguousSnapshotError);
    expect(findSnapshot(t.repo, 'latest', { host: 'other' }).id).toBe(b.id);
    expect(findSnapshot(t.repo, 'latest', { host: 'h', path: '/s' }).id).toBe(a.id);
    expect(() => findSnapshot(t.repo, 'latest', { host: 'nobody' })).toThrow(SnapshotNotFoundError);
    expect(() => findSnapshot(t.repo, 'abcd')).toThrow(AmbiguousSnapshotError);
    expect(() => findSnapshot(t.repo, 'abc')).toThrow(SnapshotNotFoundError);
    expect(() => findSnapshot(t.repo, 'ffff')).toThrow(SnapshotNotFoundError);
    expect(() => findSnapshot(t.repo, 'ABCD1')).toThrow(SnapshotNotFoundError);
    expect(() => findSnapshot(t.repo, "abcd1' OR 1=1 --")).toThrow(SnapshotNotFoundError);
    expect(listSnapshots(t.repo).map((s) => s.id)).toEqual([a.id, b.id]);
    expect(latestSnapshotOf(t.repo, 'h', '/s')?.id).toBe(a.id);
    expect(latestSnapshotOf(t.repo, 'h', '/elsewhere')).toBeUndefined();
  });

  it('finds nothing in an empty repository', () => {
    expect(() => findSnapshot(t.repo, 'latest')).toThrow(SnapshotNotFoundError);
    expect(t.repo.hasBlob(Buffer.alloc(32) as Snapshot['tree'])).toBe(false);
    expect(t.repo.locate(Buffer.alloc(32) as Snapshot['tree'])).toBeUndefined();
  });

  it('loadBlob refuses a blob the index does not know', async () => {
    await expect(t.repo.loadBlob(Buffer.alloc(32) as Snapshot['tree'], BlobType.tree)).rejects.toBeInstanceOf(CorruptIndexError);
  });
});
