import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cleanup, fails, ok, okJson, PASSWORD, tempDir, smallSource } from './run.ts';
import { diffManifests, du, makeRichTree, makeSmallTree, type Manifest, manifest, randomBytes } from './tree.ts';

afterAll(cleanup);

describe('init, backup, snapshots, restore, verify: the round trip', () => {
  let dir: string;
  let repo: string;
  let src: string;
  let expected: Manifest;
  let first: Record<string, unknown>;

  beforeAll(async () => {
    dir = await tempDir();
    repo = path.join(dir, 'repo');
    src = path.join(dir, 'src');
    await fsp.mkdir(src);
    await makeRichTree(src);
    expected = await manifest(src);
  });

  test('init --repo creates a repository and says which', async () => {
    const out = await okJson(['init', '--repo', repo]);
    expect(out.repository).toBe(repo);
    expect(out.id).toMatch(/^[0-9a-f]{32}$/);
    expect((await fsp.readdir(repo)).sort()).toEqual(expect.arrayContaining(['config.json', 'index.db', 'keys', 'packs']));
  });

  test('backup --json prints snapshot, files, bytes_read, bytes_new, bytes_stored, duration_ms', async () => {
    first = await okJson(['backup', '--repo', repo, '--path', src]);
    expect(first.snapshot).toMatch(/^[0-9a-f]{64}$/);
    for (const key of ['files', 'bytes_read', 'bytes_new', 'bytes_stored', 'duration_ms']) {
      expect(typeof first[key], key).toBe('number');
      expect(Number.isInteger(first[key]), key).toBe(true);
      expect(first[key] as number, key).toBeGreaterThanOrEqual(0);
    }
    const entries = [...expected.entries()].filter(([rel]) => rel !== '.');
    // files counts every non-directory entry: regular files, symlinks, the FIFO.
    expect(first.files).toBe(entries.filter(([, e]) => e.type !== 'dir').length);
    const fileBytes = entries.reduce((n, [, e]) => n + (e.type === 'file' ? e.size! : 0), 0);
    expect(first.bytes_read).toBe(fileBytes);
    expect(first.bytes_new as number).toBeGreaterThan(0);
    expect(first.bytes_stored as number).toBeGreaterThan(0);
    // Holes, repetition and duplicate blocks are not stored again and again.
    expect(first.bytes_stored as number).toBeLessThan(fileBytes);
    expect(first.bytes_stored as number).toBeLessThanOrEqual(await du(path.join(repo, 'packs')));
  });

  test('snapshots --json lists it', async () => {
    const list = await okJson<Record<string, unknown>[]>(['snapshots', '--repo', repo]);
    expect(list).toHaveLength(1);
    expect(list[0]!.id).toBe(first.snapshot);
    expect(list[0]!.short_id).toBe((first.snapshot as string).slice(0, 8));
    expect(list[0]!.source).toBe(src);
    expect(list[0]!.parent).toBeNull();
    expect(typeof list[0]!.time).toBe('string');
    expect(typeof list[0]!.host).toBe('string');
  });

  test.concurrent.each([
    ['full id', () => first.snapshot as string],
    ['unique prefix', () => (first.snapshot as string).slice(0, 8)],
    ['latest', () => 'latest'],
  ])('restore by %s reproduces the tree exactly', async (_what, ref) => {
    const target = path.join(await tempDir(), 'restored');
    const out = await okJson(['restore', ref(), '--repo', repo, '--target', target]);
    expect(out.snapshot).toBe(first.snapshot);
    const restored = await manifest(target);
    expect(diffManifests(expected, restored)).toEqual([]);
    // Sparse files stay sparse (checked where the source file system keeps holes; tmpfs and ext4 do).
    const sparse = expected.get('sparse.img')!;
    if (sparse.allocated! < sparse.size! / 2) expect(restored.get('sparse.img')!.allocated!).toBeLessThan(sparse.size! / 2);
  });

  test('restore into an existing empty directory works too', async () => {
    const target = await tempDir();
    await ok(['restore', 'latest', '--repo', repo, '--target', target]);
    expect(diffManifests(expected, await manifest(target))).toEqual([]);
  });

  test('an unchanged second backup reads nothing and adds next to nothing', async () => {
    const second = await okJson(['backup', '--repo', repo, '--path', src]);
    expect(second.snapshot).not.toBe(first.snapshot);
    expect(second.parent).toBe(first.snapshot);
    expect(second.bytes_read).toBe(0);
    expect(second.files).toBe(first.files);
    expect(second.bytes_new as number).toBeLessThan(64 * 1024);
    const list = await okJson<{ id: string }[]>(['snapshots', '--repo', repo]);
    expect(list.map((s) => s.id)).toEqual([first.snapshot, second.snapshot]);
    const target = path.join(await tempDir(), 'restored');
    await ok(['restore', second.snapshot, '--repo', repo, '--target', target]);
    expect(diffManifests(expected, await manifest(target))).toEqual([]);
  });

  test('verify and verify --read-data exit 0 with {ok:true}', async () => {
    const structure = await okJson(['verify', '--repo', repo]);
    expect(structure.ok).toBe(true);
    expect(structure.problems).toEqual([]);
    const data = await okJson(['verify', '--repo', repo, '--read-data']);
    expect(data.ok).toBe(true);
    expect(data.problems).toEqual([]);
    expect(data.blobs_read).toBeGreaterThan(0);
    expect(data.unreferenced_packs).toBe(0);
  });

  test('text output goes to stdout, and nothing to stderr when it is not a terminal', async () => {
    const b = await ok(['backup', '--repo', repo, '--path', src]);
    expect(b.stdout).toMatch(/^snapshot [0-9a-f]{8} saved/);
    const s = await ok(['snapshots', '--repo', repo]);
    expect(s.stdout.split('\n')[0]).toMatch(/^ID\s+Time/);
    const v = await ok(['verify', '--repo', repo, '--read-data']);
    expect(v.stdout).toContain('no errors');
    const r = await ok(['restore', 'latest', '--repo', repo, '--target', path.join(await tempDir(), 't')]);
    expect(r.stdout).toMatch(/^restored snapshot [0-9a-f]{8}/);
  });
});

// Independent repositories: these run side by side.
describe.concurrent('on their own repositories', () => {
  describe('password sources', () => {
    test('--password-file alone (first line counts), for init, backup, snapshots and restore', async () => {
      const { dir, repo, src } = await smallSource();
      const pwFile = path.join(dir, 'password');
      await fsp.writeFile(pwFile, 'from a file\nsecond line is ignored\n');
      const noEnv = { password: null };
      await ok(['init', '--repo', repo, '--password-file', pwFile], noEnv);
      const b = await okJson(['backup', '--repo', repo, '--path', src, '--password-file', pwFile], noEnv);
      expect((await okJson<unknown[]>(['snapshots', '--repo', repo, '--password-file', pwFile], noEnv))).toHaveLength(1);
      const target = path.join(dir, 'restored');
      await ok(['restore', b.snapshot, '--repo', repo, '--target', target, '--password-file', pwFile], noEnv);
      expect(diffManifests(await manifest(src), await manifest(target))).toEqual([]);
      // The file's password is the repository's: the environment's (the default one) is not.
      await fails(['snapshots', '--repo', repo], 1, 'LB_ERR_WRONG_PASSWORD');
      // And --password-file wins over LIFEBOAT_PASSWORD.
      await ok(['snapshots', '--repo', repo, '--password-file', pwFile], { password: 'wrong' });
    });

    test('LIFEBOAT_PASSWORD alone', async () => {
      const dir = await tempDir();
      const repo = path.join(dir, 'repo');
      const env = { password: 'only in the environment' };
      await ok(['init', '--repo', repo], env);
      const src = path.join(dir, 'src');
      await fsp.mkdir(src);
      await makeSmallTree(src);
      await ok(['backup', '--repo', repo, '--path', src], env);
      await fails(['snapshots', '--repo', repo], 1, 'LB_ERR_WRONG_PASSWORD', { password: PASSWORD });
    });
  });

  describe('forget --keep-last 1 --prune', () => {
    test('removes the older snapshots and their data; the one kept restores', async () => {
      const { dir, repo, src } = await smallSource();
      await ok(['init', '--repo', repo]);
      const ids: string[] = [];
      let last: Manifest | undefined;
      for (let i = 1; i <= 3; i++) {
        // Each snapshot holds 1 MiB no other one has.
        await fsp.rm(path.join(src, `only-in-${i - 1}.bin`), { force: true });
        await fsp.writeFile(path.join(src, `only-in-${i}.bin`), randomBytes(1024 * 1024, `only${i}`));
        ids.push((await okJson(['backup', '--repo', repo, '--path', src])).snapshot);
        last = await manifest(src);
      }
      const before = await du(path.join(repo, 'packs'));

      const out = await okJson(['forget', '--repo', repo, '--keep-last', '1', '--prune']);
      expect(out.removed.sort()).toEqual(ids.slice(0, 2).sort());
      expect(out.kept.map((k: { id: string }) => k.id)).toEqual([ids[2]]);
      expect(out.unused_images).toEqual([]);
      expect(out.prune.bytes_freed).toBeGreaterThan(2 * 1024 * 1024 - 1);

      expect((await okJson<{ id: string }[]>(['snapshots', '--repo', repo])).map((s) => s.id)).toEqual([ids[2]]);
      const after = await du(path.join(repo, 'packs'));
      expect(before - after).toBeGreaterThanOrEqual(2 * 1024 * 1024);

      const target = path.join(dir, 'restored');
      await ok(['restore', ids[2]!, '--repo', repo, '--target', target]);
      expect(diffManifests(last!, await manifest(target))).toEqual([]);
      expect((await okJson(['verify', '--repo', repo, '--read-data'])).ok).toBe(true);
      await fails(['restore', ids[0]!, '--repo', repo, '--target', path.join(dir, 'gone')], 1, 'LB_ERR_SNAPSHOT_NOT_FOUND');
    });
  });
});
