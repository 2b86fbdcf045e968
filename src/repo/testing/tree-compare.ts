/**
 * Describes a directory tree as it is on disk and lists how two trees differ:
 * types, contents (SHA-256), modes, owners, mtimes, symlink targets, hard-link
 * groups and empty directories. Used by the round-trip tests and the CLI tests.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

export interface EntryInfo {
  /** Relative to the described root, '/'-separated; '.' is the root itself. */
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  /** Permission bits with set-id and sticky (0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeNs: bigint;
  readonly size: number;
  /** Bytes the file system allocated (st_blocks × 512): what holes save. */
  readonly allocated: number;
  readonly nlink: number;
  /** dev:ino, for hard-link groups. */
  readonly inode: string;
  readonly sha256?: string;
  readonly target?: string;
}

export type TreeInfo = ReadonlyMap<string, EntryInfo>;

/** Every entry under root, root included, by relative path. Reads file contents to hash them. */
export async function describeTree(root: string): Promise<TreeInfo> {
  const out = new Map<string, EntryInfo>();
  const visit = async (abs: string, rel: string) => {
    const st = await fsp.lstat(abs, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    out.set(rel, {
      path: rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
      size: Number(st.size),
      allocated: Number(st.blocks) * 512,
      nlink: Number(st.nlink),
      inode: `${st.dev}:${st.ino}`,
      ...(type === 'file' ? { sha256: await hashFile(abs) } : {}),
      ...(type === 'symlink' ? { target: await fsp.readlink(abs) } : {}),
    });
    if (type === 'dir') {
      for (const name of (await fsp.readdir(abs)).sort()) await visit(path.join(abs, name), rel === '.' ? name : `${rel}/${name}`);
    }
  };
  await visit(root, '.');
  return out;
}

async function hashFile(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface DiffOptions {
  /** Largest mtime difference that still counts as equal. Default 1 ms (exclusive). */
  readonly mtimeToleranceNs?: bigint;
  /** Compare uid/gid. Default: whether running as root (only root can restore owners). */
  readonly ownership?: boolean;
  /** Compare the root's own mode and mtime. Default true. */
  readonly root?: boolean;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Human-readable differences between an expected tree and an actual one; empty when equal. */
export function diffTrees(expected: TreeInfo, actual: TreeInfo, opts: DiffOptions = {}): string[] {
  const tolerance = opts.mtimeToleranceNs ?? 1_000_000n;
  const ownership = opts.ownership ?? isRoot;
  const compareRoot = opts.root ?? true;
  const diffs: string[] = [];
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) {
      diffs.push(`${p}: missing`);
      continue;
    }
    if (a.type !== e.type) {
      diffs.push(`${p}: type ${a.type}, expected ${e.type}`);
      continue;
    }
    if (p === '.' && !compareRoot) continue;
    if (e.type !== 'symlink' && a.mode !== e.mode) diffs.push(`${p}: mode ${oct(a.mode)}, expected ${oct(e.mode)}`);
    if (ownership && (a.uid !== e.uid || a.gid !== e.gid)) diffs.push(`${p}: owner ${a.uid}:${a.gid}, expected ${e.uid}:${e.gid}`);
    const dt = a.mtimeNs - e.mtimeNs;
    if (dt >= tolerance || -dt >= tolerance) diffs.push(`${p}: mtime ${a.mtimeNs} ns, expected ${e.mtimeNs} ns`);
    if (e.type === 'file') {
      if (a.size !== e.size) diffs.push(`${p}: size ${a.size}, expected ${e.size}`);
      else if (a.sha256 !== e.sha256) diffs.push(`${p}: contents differ`);
    }
    if (e.type === 'symlink' && a.target !== e.target) diffs.push(`${p}: link target ${JSON.stringify(a.target)}, expected ${JSON.stringify(e.target)}`);
  }
  for (const p of actual.keys()) if (!expected.has(p)) diffs.push(`${p}: unexpected`);

  // Hard links: the paths sharing a file's inode must be the same set on both sides.
  const groups = (t: TreeInfo) => {
    const byInode = new Map<string, string[]>();
    for (const e of t.values()) if (e.type === 'file') byInode.set(e.inode, [...(byInode.get(e.inode) ?? []), e.path]);
    const of = new Map<string, string>();
    for (const paths of byInode.values()) for (const p of paths) of.set(p, paths.sort().join(' = '));
    return of;
  };
  const eg = groups(expected);
  const ag = groups(actual);
  for (const [p, g] of eg) {
    const other = ag.get(p);
    if (other !== undefined && other !== g) diffs.push(`${p}: hard links [${other}], expected [${g}]`);
  }
  return [...new Set(diffs)];
}

const oct = (m: number) => `0o${m.toString(8)}`;
