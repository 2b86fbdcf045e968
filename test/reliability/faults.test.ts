/**
 * Faults of the disk under the repository: it fills up during a backup, and a
 * stored block rots. Its figures go to report.ts.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cleanup, fails, lifeboat, ok, okJson, tempDir } from '../cli/run.ts';
import { diffManifests, flipBytes, manifest, randomBytes } from '../cli/tree.ts';
import { noteFailure, packFilesOf } from './crash-harness.ts';
import { writeSummary } from './report.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

const counts = { faults_injected: 0, crashes_survived: 0, snapshots_checked: 0 };
const failures: string[] = [];

afterAll(async () => {
  writeSummary({ suite: 'faults', part: 'disk', counts, failures });
  await cleanup();
});

const free = (dir: string) => {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
};

describe('the repository file system fills up during a backup', () => {
  let mnt: string | undefined;
  let cannotMount: string | undefined;

  beforeAll(async () => {
    const dir = await tempDir('lifeboat-enospc-');
    const target = path.join(dir, 'mnt');
    await fsp.mkdir(target);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', target], { stdio: 'pipe' });
      mnt = target;
    } catch (err) {
      cannotMount = `cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`;
    }
  });

  afterAll(() => {
    if (mnt) execFileSync('umount', ['-l', mnt]);
  });

  test('fails with LB_ERR_NO_SPACE, gives back what it wrote, leaves the repository sound, and with room the backup works', async (ctx) => {
    ctx.skip(mnt === undefined, cannotMount);
    ctx.onTestFailed(noteFailure(failures, 'disk full'));
    const repo = path.join(mnt!, 'repo');
    const src = path.join(path.dirname(mnt!), 'src');
    // 1 MiB packs, so the failing backup finishes and indexes some before the disk fills;
    // one worker, so which ones does not depend on timing.
    const config = path.join(path.dirname(mnt!), 'lifeboat.toml');
    await fsp.writeFile(config, '[repository]\npack_size = "1MiB"\n\n[backup]\nworkers = 1\n');
    const run = (args: string[]) => [...args, '--repo', repo, '--config', config];
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'small.bin'), randomBytes(MiB, 'enospc-small'));
    await ok(run(['init']));
    const a = (await okJson(run(['backup', '--path', src]))).snapshot as string;
    const expectedA = await manifest(src);
    const before = free(mnt!);

    // 3 MiB that fit (stored and indexed), then 8 MiB into the rest of the 6 MiB.
    await fsp.writeFile(path.join(src, 'mid.bin'), randomBytes(3 * MiB, 'enospc-mid'));
    await fsp.writeFile(path.join(src, 'zz-big.bin'), randomBytes(8 * MiB, 'enospc-big'));
    counts.faults_injected++;
    const message = await fails(run(['backup', '--path', src]), 1, 'LB_ERR_NO_SPACE');
    expect(message).toMatch(/no space left/);

    // The failing backup takes back all it wrote, indexed or not (no other process held the
    // repository, so none can have deduplicated against it): the disk has its room back at once.
    expect((await packFilesOf(repo)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const afterFailure = free(mnt!);
    expect(before - afterFailure).toBeLessThan(256 * KiB);
    const check = await okJson(run(['verify', '--read-data']));
    expect(check.problems).toEqual([]);
    expect(check.unreferenced_packs).toBe(0);
    expect(check.snapshots).toBe(1);
    expect((await okJson<{ id: string }[]>(run(['snapshots']))).map((s) => s.id)).toEqual([a]);

    // Nothing is left for prune to take back.
    const pruned = await okJson(run(['prune']));
    expect(pruned.packs_deleted + pruned.orphans_removed).toBe(0);
    expect(free(mnt!)).toBeGreaterThanOrEqual(before - 256 * KiB);
    expect((await okJson(run(['verify', '--read-data']))).unreferenced_packs).toBe(0);

    execFileSync('mount', ['-o', 'remount,size=32m', mnt!]);
    const b = await okJson(run(['backup', '--path', src]));
    expect(b.parent).toBe(a);
    const expectedB = await manifest(src);
    for (const [id, expected] of [[a, expectedA], [b.snapshot as string, expectedB]] as const) {
      const target = path.join(path.dirname(mnt!), `restored-${id.slice(0, 8)}`);
      await ok(run(['restore', id, '--target', target]));
      expect(diffManifests(expected, await manifest(target))).toEqual([]);
      counts.snapshots_checked++;
    }
    counts.crashes_survived++;
  });
});

describe('the file system is full to the last byte', () => {
  let mnt: string | undefined;
  let cannotMount: string | undefined;

  beforeAll(async () => {
    const target = path.join(await tempDir('lifeboat-full-'), 'mnt');
    await fsp.mkdir(target);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m,mode=0700', 'tmpfs', target], { stdio: 'pipe' });
      mnt = target;
    } catch (err) {
      cannotMount = `cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`;
    }
  });

  afterAll(() => {
    if (mnt) execFileSync('umount', ['-l', mnt]);
  });

  test('snapshots, verify, forget and prune still run, and prune gives the space back; a backup fails in one line', async (ctx) => {
    ctx.skip(mnt === undefined, cannotMount);
    ctx.onTestFailed(noteFailure(failures, 'full disk'));
    const repo = path.join(mnt!, 'repo');
    const src = path.join(path.dirname(mnt!), 'src');
    const config = path.join(path.dirname(mnt!), 'lifeboat.toml');
    await fsp.writeFile(config, '[repository]\npack_size = "1MiB"\n');
    const run = (args: string[]) => [...args, '--repo', repo, '--config', config];
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.bin'), randomBytes(2 * MiB, 'full-a'));
    await ok(run(['init']));
    await ok(run(['backup', '--path', src]));
    await fsp.writeFile(path.join(src, 'a.bin'), randomBytes(2 * MiB, 'full-b'));
    const keep = (await okJson(run(['backup', '--path', src]))).snapshot as string;
    const expected = await manifest(src);
    // something else fills the file system to its last byte
    const filler = path.join(mnt!, 'filler');
    await fsp.writeFile(filler, '');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'pipe' });
    } catch {
      // dd ends with ENOSPC: that is the point
    }
    counts.faults_injected++;
    expect(free(mnt!)).toBe(0);

    await fails(run(['backup', '--path', src]), 1, 'LB_ERR_NO_SPACE');
    expect((await okJson<unknown[]>(run(['snapshots']))).length).toBe(2);
    expect((await okJson(run(['verify']))).problems).toEqual([]);
    await okJson(run(['forget', '--keep-last', '1']));
    const pruned = await okJson(run(['prune']));
    expect(pruned.packs_deleted).toBeGreaterThan(0);
    expect(free(mnt!)).toBeGreaterThanOrEqual(2 * MiB);

    await fsp.rm(filler);
    const check = await okJson(run(['verify', '--read-data']));
    expect(check.problems).toEqual([]);
    const target = path.join(path.dirname(mnt!), 'restored-full');
    await ok(run(['restore', keep, '--target', target]));
    expect(diffManifests(expected, await manifest(target))).toEqual([]);
    counts.snapshots_checked++;
    counts.crashes_survived++;
  });
});

describe('a block rots on disk', () => {
  test('verify --read-data names every snapshot and file that uses it, and restore refuses with LB_ERR_CORRUPT_DATA', async (ctx) => {
    ctx.onTestFailed(noteFailure(failures, 'block rot'));
    const dir = await tempDir();
    const repo = path.join(dir, 'repo');
    const src = path.join(dir, 'src');
    const run = (args: string[]) => [...args, '--repo', repo];
    // One 64 KiB block in two files (deduplicated to one blob), in two snapshots.
    const shared = randomBytes(64 * KiB, 'rot-shared');
    await fsp.mkdir(path.join(src, 'b'), { recursive: true });
    await fsp.writeFile(path.join(src, 'a.bin'), shared);
    await fsp.writeFile(path.join(src, 'b', 'copy.bin'), shared);
    await fsp.writeFile(path.join(src, 'other.txt'), 'not affected\n');
    await ok(run(['init']));
    const first = (await okJson(run(['backup', '--path', src]))).snapshot as string;
    await fsp.appendFile(path.join(src, 'other.txt'), 'changed\n');
    const second = (await okJson(run(['backup', '--path', src]))).snapshot as string;

    // The shared block is the only 64 KiB blob: find its pack by size and flip a byte inside it.
    const packs = await Promise.all((await packFilesOf(repo)).map(async (p) => ({ p, size: (await fsp.stat(p)).size })));
    const data = packs.sort((x, y) => y.size - x.size)[0]!.p;
    counts.faults_injected++;
    flipBytes(data, 1000);

    const r = await lifeboat(run(['verify', '--read-data', '--json']));
    expect(r.code).toBe(1);
    const report = r.json();
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0].kind).toBe('damaged-blob');
    const where = (report.problems[0].affects as { snapshot: string; path: string }[]).map((a) => `${a.snapshot} ${a.path.replace(/^.*?src\//, '')}`);
    expect(where.sort()).toEqual(
      [`${first.slice(0, 8)} a.bin`, `${first.slice(0, 8)} b/copy.bin`, `${second.slice(0, 8)} a.bin`, `${second.slice(0, 8)} b/copy.bin`].sort(),
    );
    await fails(run(['restore', second, '--target', path.join(dir, 'restored')]), 1, 'LB_ERR_CORRUPT_DATA');
  });
});
