import { CorruptDataError, UnsafePathError } from '../errors/errors.ts';
import type { BlobId } from './ids.ts';

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket';
const NODE_TYPES: ReadonlySet<string> = new Set(['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket']);

/**
 * One directory entry. Times are nanoseconds since the epoch as decimal
 * strings (beyond 2^53), inode and device likewise. A file's content is its
 * block ids: inline in `blocks` for a small file, else in `lists`, list blobs
 * of LIST_SPAN ids each, so an in-place change to a large file rewrites one
 * list, not a tree that grows with the file. A directory's content is the id
 * of its own tree blob, so an unchanged directory is one shared blob.
 */
export interface TreeNode {
  readonly name: string;
  readonly type: NodeType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: string;
  readonly ctime: string;
  readonly ino: string;
  readonly dev: string;
  readonly nlink: number;
  readonly size: number;
  readonly blocks?: readonly string[];
  readonly lists?: readonly string[];
  readonly subtree?: string;
  /** A directory's totals below it: non-directory entries, directories, file bytes. */
  readonly files?: number;
  readonly dirs?: number;
  readonly bytes?: number;
  readonly target?: string;
  readonly rdev?: number;
}

export interface Tree {
  readonly nodes: readonly TreeNode[];
}

export function encodeTree(tree: Tree): Buffer {
  return Buffer.from(JSON.stringify(tree));
}

const HEX_ID = /^[0-9a-f]{64}$/;
const DECIMAL = /^\d{1,24}$/;
/** Times may be before 1970. */
const SIGNED_DECIMAL = /^-?\d{1,24}$/;

/**
 * Decodes and validates a tree blob. Trees are authenticated, but a restore
 * must not trust a name to stay inside its target whatever wrote it: names
 * with '/', NUL, '.' or '..' are refused here, once, for every consumer.
 */
export function decodeTree(plain: Buffer, where: string): Tree {
  let raw: unknown;
  try {
    raw = JSON.parse(plain.toString('utf8'));
  } catch {
    throw new CorruptDataError(`tree ${where} is not valid JSON`);
  }
  const bad = (why: string) => new CorruptDataError(`tree ${where} is malformed: ${why}`);
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { nodes?: unknown }).nodes)) throw bad('no node list');
  const nodes = (raw as { nodes: unknown[] }).nodes;
  let previous: string | undefined;
  for (const n of nodes) {
    if (typeof n !== 'object' || n === null) throw bad('node is not an object');
    const node = n as Record<string, unknown>;
    const name = node.name;
    if (typeof name !== 'string') throw bad('node without a name');
    checkName(name, where);
    if (previous !== undefined && !(previous < name)) throw bad(`names not sorted or repeated at ${JSON.stringify(name)}`);
    previous = name;
    if (typeof node.type !== 'string' || !NODE_TYPES.has(node.type)) throw bad(`${name}: unknown type`);
    for (const k of ['mode', 'uid', 'gid', 'nlink', 'size'] as const) {
      const v = node[k];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${name}: bad ${k}`);
    }
    for (const k of ['mtime', 'ctime', 'ino', 'dev'] as const) {
      const v = node[k];
      if (typeof v !== 'string' || !(k === 'mtime' || k === 'ctime' ? SIGNED_DECIMAL : DECIMAL).test(v)) throw bad(`${name}: bad ${k}`);
    }
    if (node.type === 'file') {
      const ids = (node.blocks ?? node.lists) as unknown;
      if ((node.blocks === undefined) === (node.lists === undefined)) throw bad(`${name}: needs exactly one of blocks and lists`);
      if (!Array.isArray(ids) || !ids.every((b) => typeof b === 'string' && HEX_ID.test(b))) throw bad(`${name}: bad block list`);
    }
    if (node.type === 'dir' && (typeof node.subtree !== 'string' || !HEX_ID.test(node.subtree))) throw bad(`${name}: bad subtree`);
    if (node.type === 'symlink' && (typeof node.target !== 'string' || node.target.includes('\0'))) throw bad(`${name}: bad link target`);
    if (node.rdev !== undefined && (typeof node.rdev !== 'number' || !Number.isSafeInteger(node.rdev))) throw bad(`${name}: bad rdev`);
    for (const k of ['files', 'dirs', 'bytes'] as const) {
      const v = node[k];
      if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) throw bad(`${name}: bad ${k}`);
    }
  }
  return raw as Tree;
}

/** On Windows a backslash also separates and ':' names a drive or stream, so neither may be in a name. */
export function checkName(name: string, where: string, platform: NodeJS.Platform = process.platform): void {
  if (
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    name.includes('\0') ||
    (platform === 'win32' && /[\\:]/.test(name))
  ) {
    throw new UnsafePathError(name, where);
  }
}

/** Code-point order, the order JavaScript's < uses and decodeTree checks. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Every blob id a tree names: its directories' trees, its files' blocks and lists, each once. */
export function treeRefs(tree: Tree): BlobId[] {
  const seen = new Set<string>();
  for (const n of tree.nodes) {
    if (n.subtree) seen.add(n.subtree);
    for (const hex of n.blocks ?? []) seen.add(hex);
    for (const hex of n.lists ?? []) seen.add(hex);
  }
  return [...seen].map((hex) => Buffer.from(hex, 'hex') as BlobId);
}
