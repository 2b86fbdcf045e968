/**
 * Source trees for the CLI tests and a recursive comparer: a manifest records
 * everything a restore must reproduce (type, contents byte for byte, mode,
 * owner, mtime, symlink target, hard-link grouping), so a tree can be checked
 * against its state at backup time even after the source has moved on.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const KiB = 1024;
const MiB = 1024 * KiB;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export interface Entry {
  readonly type: 'file' | 'dir' | 'symlink' | 'fifo' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeNs: bigint;
  readonly size?: number;
  readonly data?: Buffer;
  readonly target?: string;
  /** For a file with more than one link: the first path (in walk order) of its inode within the tree. */
  readonly link?: string;
  /** Bytes actually allocated (st_blocks * 512). */
  readonly allocated?: number;
}

/** Relative path ('.' for the root) → entry. */
export type Manifest = Map<string, Entry>;

export async function manifest(root: string): Promise<Manifest> {
  const out: Manifest = new Map();
  const inodes = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const full = rel === '.' ? root : path.join(root, rel);
    const st = await fsp.lstat(full, { bigint: true });
    const base = { mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs };
    if (st.isDirectory()) {
      out.set(rel, { type: 'dir', ...base });
      for (const name of (await fsp.readdir(full)).sort()) await visit(rel === '.' ? name : path.join(rel, name));
    } else if (st.isFile()) {
      let link: string | undefined;
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        link = inodes.get(key) ?? rel;
        inodes.set(key, link);
      }
      out.set(rel, { type: 'file', ...base, size: Number(st.size), data: await fsp.readFile(full), link, allocated: Number(st.blocks) * 512 });
    } else if (st.isSymbolicLink()) {
      // A symlink's mode is always 0777 on Linux and not settable: leave it out.
      out.set(rel, { type: 'symlink', ...base, mode: 0, target: await fsp.readlink(full) });
    } else {
      out.set(rel, { type: st.isFIFO() ? 'fifo' : 'other', ...base });
    }
  };
  await visit('.');
  return out;
}

/**
 * Node sets times through a double of seconds (fs.utimes), which cannot carry
 * every nanosecond of a 2020s timestamp: allow 1 µs, far below any mtime
 * granularity that matters for change detection or for an operator.
 */
const MTIME_TOLERANCE_NS = 1000n;

/** Every difference between two manifests, one human-readable line each; [] when equal. */
export function diffManifests(expected: Manifest, actual: Manifest): string[] {
  const diffs: string[] = [];
  for (const [rel, e] of expected) {
    const a = actual.get(rel);
    if (!a) {
      diffs.push(`${rel}: missing`);
      continue;
    }
    if (a.type !== e.type) {
      diffs.push(`${rel}: type ${a.type}, expected ${e.type}`);
      continue;
    }
    if (a.mode !== e.mode) diffs.push(`${rel}: mode ${a.mode.toString(8)}, expected ${e.mode.toString(8)}`);
    if (a.uid !== e.uid || a.gid !== e.gid) diffs.push(`${rel}: owner ${a.uid}:${a.gid}, expected ${e.uid}:${e.gid}`);
    const dt = a.mtimeNs - e.mtimeNs;
    if (dt > MTIME_TOLERANCE_NS || dt < -MTIME_TOLERANCE_NS) diffs.push(`${rel}: mtime ${a.mtimeNs}, expected ${e.mtimeNs}`);
    if (e.type === 'file') {
      if (a.size !== e.size) diffs.push(`${rel}: size ${a.size}, expected ${e.size}`);
      else if (!a.data!.equals(e.data!)) diffs.push(`${rel}: contents differ (first at byte ${firstDifference(a.data!, e.data!)})`);
      if (a.link !== e.link) diffs.push(`${rel}: hard link to ${a.link ?? '(none)'}, expected ${e.link ?? '(none)'}`);
    }
    if (e.type === 'symlink' && a.target !== e.target) diffs.push(`${rel}: symlink to ${a.target}, expected ${e.target}`);
  }
  for (const rel of actual.keys()) if (!expected.has(rel)) diffs.push(`${rel}: unexpected`);
  return diffs;
}

function firstDifference(a: Buffer, b: Buffer): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

export async function compareTrees(expected: string, actual: string): Promise<string[]> {
  return diffManifests(await manifest(expected), await manifest(actual));
}

const execFileP = promisify(execFile);

/** Deterministic pseudo-random bytes (fast, and reproducible when a test fails). */
export function randomBytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  const key = crypto.createHash('sha256').update(seed).digest();
  const cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return cipher.update(out);
}

const at = (iso: string) => new Date(iso);

/**
 * A tree of about 8 MB apparent (under 4 MB stored) with everything a restore
 * must reproduce: random, repetitive, unaligned and empty files, nested and
 * empty directories, odd names, modes from 0444 to setuid and sticky, relative,
 * absolute, dangling and directory symlinks, a FIFO, hard links, a sparse file,
 * set mtimes (directories' last), and (as root) foreign owners.
 */
export async function makeRichTree(root: string): Promise<void> {
  const file = async (rel: string, data: Buffer | string, mode = 0o644) => {
    const full = path.join(root, rel);
    await fsp.mkdir(path.dirname(full), { recursive: true });
    await fsp.writeFile(full, data);
    await fsp.chmod(full, mode);
  };
  await file('big/random.bin', randomBytes(2 * MiB, 'random'));
  await file('big/repetitive.bin', Buffer.alloc(MiB, 'lifeboat keeps your volumes afloat '));
  await file('big/unaligned.bin', randomBytes(200_003, 'unaligned'), 0o600);
  await file('empty.txt', '');
  await file('tool.sh', '#!/bin/sh\necho hi\n', 0o755);
  await file('readonly.txt', 'look, do not touch\n', 0o444);
  await file('setuid-bin', 'not really a binary\n', 0o4755);
  await file('ünïcødé name with spaces.txt', 'names are bytes\n');
  await file('-leading-dash', 'dash\n');
  for (let i = 0; i < 24; i++) {
    await file(`a/b/c/small-${String(i).padStart(2, '0')}.txt`, randomBytes((i * 397) % (10 * KiB), `small${i}`));
  }
  // Same 64 KiB block many times, inside and across files: dedup must not confuse them.
  const block = randomBytes(64 * KiB, 'block');
  await file('dup/one.bin', Buffer.concat([block, block, block]));
  await file('dup/two.bin', Buffer.concat([block, randomBytes(10, 'tail')]));

  await fsp.mkdir(path.join(root, 'empty'));
  await fsp.mkdir(path.join(root, 'a/b/empty-deep'), { recursive: true });
  await fsp.mkdir(path.join(root, 'private'), { mode: 0o750 });
  await fsp.chmod(path.join(root, 'private'), 0o750);
  await file('private/secret.txt', 'shh\n', 0o600);
  await fsp.mkdir(path.join(root, 'sticky'));
  await fsp.chmod(path.join(root, 'sticky'), 0o1777);

  await fsp.symlink('big/random.bin', path.join(root, 'link-relative'));
  await fsp.symlink('does/not/exist', path.join(root, 'link-dangling'));
  await fsp.symlink('/etc/hostname', path.join(root, 'link-absolute'));
  await fsp.symlink('a/b', path.join(root, 'link-to-dir'));

  await file('hard/one.txt', 'one inode, three names\n');
  await fsp.link(path.join(root, 'hard/one.txt'), path.join(root, 'hard/two.txt'));
  await fsp.link(path.join(root, 'hard/one.txt'), path.join(root, 'a/three.txt'));

  // 4 MiB apparent, 64 KiB of data in the middle: the rest are holes.
  const sparse = await fsp.open(path.join(root, 'sparse.img'), 'w', 0o644);
  await sparse.truncate(4 * MiB);
  await sparse.write(randomBytes(64 * KiB, 'sparse'), 0, 64 * KiB, 2 * MiB);
  await sparse.close();

  await execFileP('mkfifo', ['-m', '640', path.join(root, 'pipe')]);

  if (isRoot) {
    await fsp.chown(path.join(root, 'private/secret.txt'), 1234, 2345);
    await fsp.chown(path.join(root, 'private'), 1234, 2345);
    await fsp.lchown(path.join(root, 'link-dangling'), 4321, 5432);
    // chown cleared the set-id bits; put them back.
    await fsp.chmod(path.join(root, 'setuid-bin'), 0o4755);
  }

  await fsp.utimes(path.join(root, 'big/random.bin'), at('2001-02-03T04:05:06.789Z'), at('2001-02-03T04:05:06.789Z'));
  await fsp.utimes(path.join(root, 'empty.txt'), at('1999-12-31T23:59:59Z'), at('1999-12-31T23:59:59Z'));
  await fsp.lutimes(path.join(root, 'link-relative'), at('2010-10-10T10:10:10Z'), at('2010-10-10T10:10:10Z'));
  await setDirTimes(root, at('2020-05-06T07:08:09.5Z'));
}

/** A handful of small files: the quick tree for error and crash tests. */
export async function makeSmallTree(root: string, seed = 'small'): Promise<void> {
  await fsp.mkdir(path.join(root, 'sub/empty'), { recursive: true });
  await fsp.writeFile(path.join(root, 'data.bin'), randomBytes(512 * KiB, `${seed}-data`));
  await fsp.writeFile(path.join(root, 'sub/notes.txt'), `notes for ${seed}\n`);
  await fsp.symlink('sub/notes.txt', path.join(root, 'notes-link'));
}

/** Sets every directory's mtime, deepest first, so setting a child does not move its parent's. */
export async function setDirTimes(root: string, when: Date): Promise<void> {
  const dirs: string[] = [];
  const walk = async (d: string) => {
    dirs.push(d);
    for (const e of await fsp.readdir(d, { withFileTypes: true })) if (e.isDirectory()) await walk(path.join(d, e.name));
  };
  await walk(root);
  for (const d of dirs.reverse()) await fsp.utimes(d, when, when);
}

/** Total size of the regular files under dir. */
export async function du(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await fsp.stat(path.join(e.parentPath, e.name))).size;
  }
  return n;
}

/** sha256 of every regular file under dir, by relative path. */
export async function hashFiles(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const full = path.join(e.parentPath, e.name);
    out[path.relative(dir, full)] = crypto.createHash('sha256').update(await fsp.readFile(full)).digest('hex');
  }
  return out;
}

/** The pack files of a repository (final names, not temporaries). */
export async function packFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(repo, 'packs'), { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  }
  return out.sort();
}

/** XORs `length` bytes of a file at `offset` with 0xff, in place. */
export function flipBytes(file: string, offset: number, length = 4): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, offset);
    for (let i = 0; i < length; i++) buf[i] = buf[i]! ^ 0xff;
    fs.writeSync(fd, buf, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
}
