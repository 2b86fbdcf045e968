import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cleanup, fails, ok, okJson, ROOT, tempDir, smallSource } from './run.ts';
import { diffManifests, hashFiles, manifest } from './tree.ts';

afterAll(cleanup);

/** One repository with one snapshot, shared by the read-only checks below. */
let dir: string;
let repo: string;
let src: string;
let snapshot: string;

beforeAll(async () => {
  ({ dir, repo, src } = await smallSource());
  await ok(['init', '--repo', repo]);
  snapshot = (await okJson(['backup', '--repo', repo, '--path', src])).snapshot;
});

/** Whatever a refused command did, the repository still holds its one snapshot, intact. */
async function expectRepositoryIntact(): Promise<void> {
  const list = await okJson<{ id: string }[]>(['snapshots', '--repo', repo]);
  expect(list.map((s) => s.id)).toEqual([snapshot]);
  expect((await okJson(['verify', '--repo', repo, '--read-data'])).ok).toBe(true);
}

// The refusals run side by side: none of them may change the shared repository,
// which the last test checks once they are all done.
describe.concurrent('refusals', () => {
  describe('passwords', () => {
    test.concurrent.each([
      ['snapshots', () => ['snapshots', '--repo', repo]],
      ['backup', () => ['backup', '--repo', repo, '--path', src]],
      ['restore', () => ['restore', 'latest', '--repo', repo, '--target', path.join(dir, 'never')]],
      ['forget', () => ['forget', '--repo', repo, '--keep-last', '0', '--prune']],
    ])('a wrong password fails %s with exit 1 and one line', async (_cmd, args) => {
      const message = await fails(args(), 1, 'LB_ERR_WRONG_PASSWORD', { password: 'not the password' });
      expect(message).toContain('wrong password');
      await expect(fsp.stat(path.join(dir, 'never'))).rejects.toThrow();
    });

    test('no password at all is bad usage: exit 2', async () => {
      const message = await fails(['snapshots', '--repo', repo], 2, 'LB_ERR_PASSWORD_MISSING', { password: null });
      expect(message).toMatch(/LIFEBOAT_PASSWORD/);
      await fails(['init', '--repo', path.join(dir, 'nopw')], 2, 'LB_ERR_PASSWORD_MISSING', { password: null });
      await expect(fsp.stat(path.join(dir, 'nopw'))).rejects.toThrow();
      await fails(['backup', '--repo', repo, '--path', src], 2, 'LB_ERR_PASSWORD_MISSING', { password: '' });
    });

    test('an unreadable or empty --password-file is bad usage: exit 2', async () => {
      const missing = path.join(dir, 'no-such-password-file');
      expect(await fails(['snapshots', '--repo', repo, '--password-file', missing], 2, 'LB_ERR_USAGE')).toContain(missing);
      const empty = path.join(dir, 'empty-password');
      await fsp.writeFile(empty, '\n');
      await fails(['snapshots', '--repo', repo, '--password-file', empty], 2, 'LB_ERR_USAGE');
    });
  });

  describe('not a repository', () => {
    test('--repo pointing at a plain directory: LB_ERR_NOT_A_REPOSITORY, nothing written there', async () => {
      const plain = await tempDir();
      await fsp.writeFile(path.join(plain, 'photo.jpg'), 'not a repository');
      await fsp.mkdir(path.join(plain, 'packs'));
      const before = await manifest(plain);
      for (const args of [
        ['snapshots', '--repo', plain],
        ['backup', '--repo', plain, '--path', src],
        ['restore', 'latest', '--repo', plain, '--target', path.join(dir, 'never')],
        ['prune', '--repo', plain],
      ]) {
        expect(await fails(args, 1, 'LB_ERR_NOT_A_REPOSITORY')).toContain(plain);
      }
      expect(diffManifests(before, await manifest(plain))).toEqual([]);
    });

    test('--repo pointing at nothing: LB_ERR_NOT_A_REPOSITORY, and nothing is created', async () => {
      const nowhere = path.join(dir, 'does-not-exist');
      await fails(['snapshots', '--repo', nowhere], 1, 'LB_ERR_NOT_A_REPOSITORY');
      await fails(['backup', '--repo', nowhere, '--path', src], 1, 'LB_ERR_NOT_A_REPOSITORY');
      await expect(fsp.stat(nowhere)).rejects.toThrow();
    });

    test('the agent does not create its repository: run says how, exits 2 (a configuration error, not one to restart on), and creates nothing', async () => {
      const config = path.join(dir, 'agent-no-repo.toml');
      const repoPath = path.join(dir, 'agent-repo');
      await fsp.writeFile(config, `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'agent-state'))}\nlisten = ""\n[repository]\npath = ${JSON.stringify(repoPath)}\n`);
      const message = await fails(['run', '--config', config], 2, 'LB_ERR_CONFIG');
      expect(message).toContain(`${config}:5: repository.path: ${repoPath} is not a Lifeboat repository`);
      expect(message).toContain(`create it with: lifeboat --config ${config} init`);
      await expect(fsp.stat(repoPath)).rejects.toThrow();
    });
  });

  describe('init', () => {
    test('refuses a non-empty directory and leaves it alone', async () => {
      const busy = await tempDir();
      await fsp.writeFile(path.join(busy, 'precious.txt'), 'keep me');
      const before = await manifest(busy);
      const message = await fails(['init', '--repo', busy], 1, 'LB_ERR_REPOSITORY_EXISTS');
      expect(message).toContain(busy);
      expect(diffManifests(before, await manifest(busy))).toEqual([]);
    });

    test('refuses an existing repository, which keeps working', async () => {
      await fails(['init', '--repo', repo], 1, 'LB_ERR_REPOSITORY_EXISTS');
      await expectRepositoryIntact();
    });
  });

  describe('restore', () => {
    test.concurrent.each(['0123abcd', 'not-an-id'])('snapshot %j does not exist: LB_ERR_SNAPSHOT_NOT_FOUND', async (ref) => {
      const target = path.join(dir, 'never');
      const message = await fails(['restore', ref, '--repo', repo, '--target', target], 1, 'LB_ERR_SNAPSHOT_NOT_FOUND');
      expect(message).toContain(ref);
      await expect(fsp.stat(target)).rejects.toThrow();
    });

    test('"latest" in an empty repository: LB_ERR_SNAPSHOT_NOT_FOUND', async () => {
      const empty = path.join(await tempDir(), 'repo');
      await ok(['init', '--repo', empty]);
      await fails(['restore', 'latest', '--repo', empty, '--target', path.join(dir, 'never')], 1, 'LB_ERR_SNAPSHOT_NOT_FOUND');
      expect(await okJson(['snapshots', '--repo', empty])).toEqual([]);
    });

    test('a target that is not empty is refused and nothing is written to it', async () => {
      const target = await tempDir();
      await fsp.writeFile(path.join(target, 'data.bin'), 'already here');
      await fsp.mkdir(path.join(target, 'sub'));
      const before = await manifest(target);
      const message = await fails(['restore', snapshot, '--repo', repo, '--target', target], 1, 'LB_ERR_TARGET_NOT_EMPTY');
      expect(message).toContain(target);
      expect(diffManifests(before, await manifest(target))).toEqual([]);
    });

    test('a target that is a file is refused and left alone', async () => {
      const target = path.join(await tempDir(), 'a-file');
      await fsp.writeFile(target, 'a file, not a directory');
      await fails(['restore', 'latest', '--repo', repo, '--target', target], 1, 'LB_ERR_TARGET_NOT_EMPTY');
      expect(await fsp.readFile(target, 'utf8')).toBe('a file, not a directory');
    });
  });

  describe('bad usage: exit 2, one line, nothing done', () => {
    test.concurrent.each([
      ['an unknown command', ['bakup', '--repo', '<repo>']],
      ['an unknown option', ['backup', '--repo', '<repo>', '--path', '<src>', '--no-such-option']],
      ['backup without --path', ['backup', '--repo', '<repo>']],
      ['--block-size not a size', ['backup', '--repo', '<repo>', '--path', '<src>', '--block-size', 'huge']],
      ['--block-size not a power of two', ['backup', '--repo', '<repo>', '--path', '<src>', '--block-size', '3000']],
      ['--chunker unknown', ['backup', '--repo', '<repo>', '--path', '<src>', '--chunker', 'magic']],
      ['restore without a snapshot', ['restore', '--repo', '<repo>', '--target', '<never>']],
      ['restore without --target', ['restore', 'latest', '--repo', '<repo>']],
      ['forget without a policy', ['forget', '--repo', '<repo>']],
      ['no --repo and no --config', ['snapshots']],
    ])('%s', async (_what, template) => {
      const args = template.map((a) => a.replace('<repo>', repo).replace('<src>', src).replace('<never>', path.join(dir, 'never')));
      await fails(args, 2, 'LB_ERR_USAGE');
      await expect(fsp.stat(path.join(dir, 'never'))).rejects.toThrow();
    });

    test('--help and --version are not errors', async () => {
      expect((await ok(['--help'])).stdout).toContain('Usage: lifeboat');
      expect((await ok(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    });
  });

  describe('config', () => {
    test('config check accepts config.example.toml', async () => {
      const r = await ok(['config', 'check', '--config', path.join(ROOT, 'config.example.toml')]);
      expect(r.stdout).toContain('config.example.toml: ok');
      // the effective config, defaults filled in
      expect(r.stdout).toMatch(/^\[repository\]\npack_size = 16777216\n/m);
      expect(r.stdout).toMatch(/^hook_timeout = \d+$/m);
      const parsed = await okJson(['--config', path.join(ROOT, 'config.example.toml'), 'config', 'check']);
      expect(parsed.backup.block_size).toBe(65536);
    });

    test('an unknown key is refused with exit 2, naming file:line and the key path', async () => {
      const file = path.join(dir, 'typo.toml');
      await fsp.writeFile(file, '[agent]\nlog_level = "info"\n\n[backup]\nblok_size = "64KiB"\n');
      for (const args of [
        ['config', 'check', '--config', file],
        ['--config', file, 'config', 'check'],
        ['backup', '--repo', repo, '--path', src, '--config', file],
      ]) {
        const message = await fails(args, 2, 'LB_ERR_CONFIG');
        expect(message).toContain(`${file}:5`);
        expect(message).toContain('backup.blok_size');
      }
    });

    test('a bad value and broken TOML are refused the same way', async () => {
      const bad = path.join(dir, 'bad-value.toml');
      await fsp.writeFile(bad, '[repository]\n\ncompression_level = 99\n');
      const m1 = await fails(['config', 'check', '--config', bad], 2, 'LB_ERR_CONFIG');
      expect(m1).toContain(`${bad}:3`);
      expect(m1).toContain('repository.compression_level');
      const broken = path.join(dir, 'broken.toml');
      await fsp.writeFile(broken, '[agent]\nhost = \n');
      expect(await fails(['config', 'check', '--config', broken], 2, 'LB_ERR_CONFIG')).toContain(`${broken}:2`);
      await fails(['config', 'check', '--config', path.join(dir, 'missing.toml')], 2, 'LB_ERR_CONFIG');
    });

    test('config check without --config is bad usage', async () => {
      await fails(['config', 'check'], 2, 'LB_ERR_USAGE');
    });
  });

  describe('backup source problems', () => {
    test('a --path that does not exist fails with exit 1 and stores nothing', async () => {
      const missing = path.join(dir, 'no-such-source');
      const before = await hashFiles(path.join(repo, 'packs'));
      expect(await fails(['backup', '--repo', repo, '--path', missing], 1, 'LB_ERR_SOURCE')).toContain(missing);
      expect(await hashFiles(path.join(repo, 'packs'))).toEqual(before);
      await expectRepositoryIntact();
    });
  });
});

describe('after every refusal above', () => {
  test('the repository holds exactly its one snapshot, verifies, and restores equal to the source', async () => {
    await expectRepositoryIntact();
    const target = path.join(await tempDir(), 'restored');
    await ok(['restore', 'latest', '--repo', repo, '--target', target]);
    expect(diffManifests(await manifest(src), await manifest(target))).toEqual([]);
  });
});
