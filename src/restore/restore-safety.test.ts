/**
 * Restore addressing (issue 12, item 6): entries are made relative to
 * directories the restore opened itself (/proc/self/fd/<dirfd>/<name>), with a
 * path-based fallback where /proc/self/fd is missing. These check the choice
 * between the two, that both restore a rich tree exactly, that symlinks
 * planted in the target are never followed, that warnings name entries (not
 * descriptor paths), that no descriptor is left open, and that emptying a
 * volume follows no symlink. The concurrent attack is test/reliability/restore-race.test.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupDir, openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { type Addressing, probeAddressing, restore } from './restorer.ts';
import { emptyDirectory } from './volume.ts';

const execFileP = promisify(execFile);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const linux = process.platform === 'linux';
const here = probeAddressing();

describe('probeAddressing', () => {
  it('uses paths on any platform but Linux', () => {
    for (const p of ['win32', 'darwin', 'freebsd', 'android'] as const) expect(probeAddressing(p)).toBe('path');
  });

  it.runIf(linux)('uses descriptors on Linux with /proc/self/fd, paths without it', async () => {
    expect(here).toBe(fs.existsSync('/proc/self/fd') ? 'fd' : 'path');
    expect(probeAddressing('linux', '/nonexistent/fd')).toBe('path');
    // A directory of numbered entries that are not this process's descriptors.
    const fake = await fsp.mkdtemp('/tmp/lifeboat-fake-fd-');
    try {
      for (let i = 0; i < 64; i++) await fsp.mkdir(path.join(fake, String(i)));
      expect(probeAddressing('linux', fake)).toBe('path');
    } finally {
      await fsp.rm(fake, { recursive: true });
    }
  });
});

const MiB = 1024 * 1024;

/**
 * Every kind of entry restore makes: small, large (written in ranges), sparse
 * and empty files, modes with set-id bits, owners, times, empty directories,
 * symlinks, hard links within and across directories, a fifo and a device.
 */
async function makeTree(root: string): Promise<void> {
  const file = async (rel: string, data: Buffer | string, mode = 0o644) => {
    const full = path.join(root, rel);
    await fsp.mkdir(path.dirname(full), { recursive: true });
    await fsp.writeFile(full, data);
    await fsp.chmod(full, mode);
  };
  await file('big/ranges.bin', Buffer.from(Array.from({ length: 3 * MiB }, (_, i) => (i * 7919) % 251)));
  await file('empty.txt', '');
  await file('tool.sh', '#!/bin/sh\necho hi\n', 0o755);
  await file('setuid-bin', 'not really a binary\n', 0o4755);
  await file('readonly.txt', 'do not touch\n', 0o444);
  for (let i = 0; i < 30; i++) await file(`a/b/c/small-${String(i).padStart(2, '0')}.txt`, `small ${i}\n`.repeat(i * 13));
  await fsp.mkdir(path.join(root, 'empty'));
  await fsp.mkdir(path.join(root, 'private'), { mode: 0o750 });
  await fsp.chmod(path.join(root, 'private'), 0o750);
  await file('private/secret.txt', 'shh\n', 0o600);
  const sparse = await fsp.open(path.join(root, 'sparse.img'), 'w', 0o644);
  await sparse.truncate(4 * MiB);
  await sparse.write(Buffer.alloc(64 * 1024, 'x'), 0, 64 * 1024, 2 * MiB);
  await sparse.close();
  await fsp.symlink('big/ranges.bin', path.join(root, 'link-relative'));
  await fsp.symlink('does/not/exist', path.join(root, 'link-dangling'));
  await fsp.symlink('a/b', path.join(root, 'link-to-dir'));
  await file('hard/one.txt', 'one inode, three names\n');
  await fsp.link(path.join(root, 'hard/one.txt'), path.join(root, 'hard/two.txt'));
  await fsp.link(path.join(root, 'hard/one.txt'), path.join(root, 'a/three.txt'));
  // Many directories between a file and its further links, so its directory is done and closed before they are made.
  for (let i = 0; i < 40; i++) await file(`spread/d${String(i).padStart(2, '0')}/f`, `file ${i}\n`);
  await fsp.link(path.join(root, 'spread/d00/f'), path.join(root, 'spread/d39/link-to-d00'));
  await fsp.link(path.join(root, 'spread/d00/f'), path.join(root, 'zz-last-link'));
  if (linux) await execFileP('mkfifo', ['-m', '640', path.join(root, 'pipe')]);
  if (isRoot) {
    await fsp.chown(path.join(root, 'private/secret.txt'), 1234, 2345);
    await fsp.chown(path.join(root, 'private'), 1234, 2345);
    await fsp.lchown(path.join(root, 'link-dangling'), 4321, 5432);
    await fsp.chmod(path.join(root, 'setuid-bin'), 0o4755);
    if (linux) {
      await execFileP('mknod', ['-m', '620', path.join(root, 'null-dev'), 'c', '1', '3']);
      await fsp.chown(path.join(root, 'null-dev'), 1234, 2345);
      await execFileP('mkfifo', [path.join(root, 'setgid-pipe')]);
      await fsp.chown(path.join(root, 'setgid-pipe'), 1234, 2345);
      await fsp.chmod(path.join(root, 'setgid-pipe'), 0o2670);
      await fsp.utimes(path.join(root, 'null-dev'), 1_234_567_890, 1_234_567_890);
    }
  }
  await fsp.utimes(path.join(root, 'big/ranges.bin'), 981_173_106.789, 981_173_106.789);
  await fsp.lutimes(path.join(root, 'link-relative'), 1_286_705_410, 1_286_705_410);
  // Directories last, deepest first, so their times are not changed by what is made in them.
  const dirs: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) if (e.isDirectory()) await walk(path.join(d, e.name));
    dirs.push(d);
  };
  await walk(root);
  for (const d of dirs) await fsp.utimes(d, 1_589_000_000.5, 1_589_000_000.5);
}

/**
 * Open descriptors of this process, where it can tell, but for those on the
 * packs under `packs`: each worker keeps the packs it has read open for good,
 * and which worker reads which pack changes from one restore to the next.
 */
function openFds(packs: string): number {
  if (!linux) return 0;
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return !fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(`${packs}/`);
    } catch {
      return false; // closed since it was listed (the listing's own descriptor)
    }
  }).length;
}

describe.skipIf(process.platform === 'win32')('restore addressing', () => {
  let t: TestRepo;
  let src: string;
  let snapshot: Snapshot;

  beforeAll(async () => {
    t = await openTestRepo({ workers: 2 });
    src = path.join(await t.temp.make(), 'src');
    await makeTree(src);
    snapshot = await backupDir(t, src);
  });
  afterAll(() => t?.close());

  const modes: Addressing[] = here === 'fd' ? ['fd', 'path'] : ['path'];

  it.each(modes)('restores every kind of entry exactly, addressed by %s', async (mode) => {
    const target = path.join(await t.temp.make(), 'target');
    const warnings: string[] = [];
    const stats = await restore(t.repo, snapshot, { target, pool: t.pool, addressing: mode, onWarning: (p, e) => warnings.push(`${p}: ${e.message}`) });
    expect(warnings).toEqual([]);
    expect(stats.errors).toBe(0);
    expect(diffTrees(await describeTree(src), await describeTree(target))).toEqual([]);
    if (isRoot && linux) {
      // diffTrees sees a device as 'other': check what it is and what it points at.
      const dev = await fsp.lstat(path.join(target, 'null-dev'));
      expect([dev.isCharacterDevice(), dev.rdev, dev.mode & 0o7777, dev.uid, dev.gid]).toEqual([true, fs.lstatSync('/dev/null').rdev, 0o620, 1234, 2345]);
      expect(dev.mtimeMs).toBe(1_234_567_890_000);
    }
  });

  it.runIf(here === 'fd')('leaves no descriptor open, and keeps few open while it runs', async () => {
    // A first restore opens what stays open for good.
    await restore(t.repo, snapshot, { target: path.join(await t.temp.make(), 'warm'), pool: t.pool });
    const packs = path.join(fs.realpathSync(t.repo.dir), 'packs');
    const before = openFds(packs);
    let most = 0;
    const timer = setInterval(() => (most = Math.max(most, openFds(packs))), 1);
    try {
      await restore(t.repo, snapshot, { target: path.join(await t.temp.make(), 'target'), pool: t.pool });
    } finally {
      clearInterval(timer);
    }
    expect(openFds(packs)).toBe(before);
    expect(most - before).toBeLessThan(200);
  });

  it('never follows a symlink planted in the target, and names entries in warnings', async () => {
    const base = await t.temp.make();
    const outside = path.join(base, 'outside');
    await fsp.mkdir(outside, { mode: 0o755 });
    await fsp.writeFile(path.join(outside, 'sentinel'), 'keep\n');
    await fsp.utimes(outside, 1_000_000_000, 1_000_000_000);
    const target = path.join(base, 'target');
    await fsp.mkdir(target);
    // In the way of a directory, a file, a large file, a symlink and a fifo of the snapshot.
    await fsp.symlink(outside, path.join(target, 'a'));
    await fsp.symlink(path.join(outside, 'sentinel'), path.join(target, 'tool.sh'));
    await fsp.mkdir(path.join(target, 'big'));
    await fsp.symlink(path.join(outside, 'sentinel'), path.join(target, 'big', 'ranges.bin'));
    await fsp.symlink(outside, path.join(target, 'link-to-dir'));
    await fsp.symlink(outside, path.join(target, 'pipe'));
    const before = await describeTree(outside);
    const warnings: string[] = [];
    const stats = await restore(t.repo, snapshot, {
      target,
      pool: t.pool,
      allowNonEmpty: true,
      onWarning: (p, e) => warnings.push(`${path.relative(target, p)}: ${e.message}`),
    });
    expect(diffTrees(before, await describeTree(outside))).toEqual([]);
    expect(await fsp.readdir(outside)).toEqual(['sentinel']);
    // 'big' itself was there already: a directory in the way is a warning too, and its subtree is skipped.
    expect(warnings.map((w) => w.split(':')[0]).sort()).toEqual(['a', 'big', 'link-to-dir', 'pipe', 'tool.sh']);
    expect(stats.errors).toBe(5);
    for (const w of warnings) {
      expect(w).toMatch(/EEXIST|File exists/);
      expect(w).not.toContain('/proc/');
      expect(w).toContain(target);
    }
  });

  it('empties a volume without following a symlink in it', async () => {
    const base = await t.temp.make();
    const outside = path.join(base, 'outside');
    await fsp.mkdir(path.join(outside, 'keep'), { recursive: true });
    await fsp.writeFile(path.join(outside, 'keep', 'file'), 'keep\n');
    const volume = path.join(base, 'volume');
    await fsp.mkdir(path.join(volume, 'd', 'e'), { recursive: true });
    await fsp.writeFile(path.join(volume, 'd', 'e', 'f'), 'x');
    await fsp.symlink(outside, path.join(volume, 'to-outside'));
    await fsp.symlink(path.join(outside, 'keep'), path.join(volume, 'd', 'to-keep'));
    await fsp.symlink(path.join(outside, 'keep', 'file'), path.join(volume, 'd', 'e', 'to-file'));
    await execFileP('mkfifo', [path.join(volume, 'pipe')]);
    const before = await describeTree(outside);
    await emptyDirectory(volume);
    expect(await fsp.readdir(volume)).toEqual([]);
    expect(diffTrees(before, await describeTree(outside))).toEqual([]);
  });
});
