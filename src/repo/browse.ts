import path from 'node:path';
import { CorruptDataError, PathNotFoundError } from '../errors/errors.ts';
import { decodeList } from './content.ts';
import { type BlobId, BlobType } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { byName, decodeTree, type TreeNode } from './tree.ts';

/**
 * An entry of a snapshot by its path from the root of what was backed up
 * ("/a/b", as restore lays it out); the root itself has no node.
 */
export interface Entry {
  readonly path: string;
  readonly node: TreeNode | null;
}

const hexId = (hex: string) => Buffer.from(hex, 'hex') as BlobId;

async function children(repo: Repository, tree: BlobId, where: string): Promise<readonly TreeNode[]> {
  return decodeTree(await repo.loadBlob(tree, BlobType.tree), where || '/').nodes;
}

/** The tree of what was backed up: a snapshot's root tree holds it as its one directory (its name the source's). */
async function sourceTree(repo: Repository, snapshot: Snapshot): Promise<BlobId> {
  const top = await children(repo, snapshot.tree, '');
  if (top.length !== 1 || top[0]!.type !== 'dir') throw new CorruptDataError(`snapshot ${snapshot.id.slice(0, 8)}: its root tree is malformed`);
  return hexId(top[0]!.subtree!);
}

/** "/a//b/", "a/b" and "/a/b" name the same entry; "" and "/" the root. */
export function normalizePath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  return parts.length === 0 ? '/' : `/${parts.join('/')}`;
}

/** The entry at `path`, loading only the trees on the way to it. */
export async function findEntry(repo: Repository, snapshot: Snapshot, path: string): Promise<Entry> {
  const want = normalizePath(path);
  let node: TreeNode | null = null;
  let tree: BlobId | undefined = await sourceTree(repo, snapshot);
  let at = '';
  for (const name of want === '/' ? [] : want.slice(1).split('/')) {
    const found: TreeNode | undefined = tree && (await children(repo, tree, at)).find((n) => n.name === name);
    if (!found) throw new PathNotFoundError(`snapshot ${snapshot.id.slice(0, 8)} holds no ${want}`);
    node = found;
    at = `${at}/${name}`;
    tree = found.type === 'dir' ? hexId(found.subtree!) : undefined;
  }
  return { path: want, node };
}

/**
 * The entry at `path` and, for a directory, everything below it, depth first
 * in name order; memory holds one tree per level, whatever the tree's size.
 */
export async function* walkEntries(repo: Repository, snapshot: Snapshot, path: string): AsyncGenerator<Entry> {
  const top = await findEntry(repo, snapshot, path);
  if (top.node) yield top;
  if (top.node && top.node.type !== 'dir') return;
  yield* below(repo, top.node ? hexId(top.node.subtree!) : await sourceTree(repo, snapshot), top.path === '/' ? '' : top.path);
}

async function* below(repo: Repository, tree: BlobId, at: string): AsyncGenerator<Entry> {
  for (const node of await children(repo, tree, at)) {
    const path = `${at}/${node.name}`;
    yield { path, node };
    if (node.type === 'dir') yield* below(repo, hexId(node.subtree!), path);
  }
}

/** A file's contents, block by block, in order: one block in memory at a time. */
export async function* fileBlocks(repo: Repository, node: TreeNode, path: string): AsyncGenerator<Buffer> {
  for (const hex of node.blocks ?? []) yield repo.loadBlob(hexId(hex), BlobType.data);
  for (const list of node.lists ?? []) {
    for (const hex of decodeList(await repo.loadBlob(hexId(list), BlobType.list), path)) yield repo.loadBlob(hexId(hex), BlobType.data);
  }
}

/** What differs at a path: added, removed, content modified, type changed, or only metadata (mode, owner, times) updated. */
export type Change = '+' | '-' | 'M' | 'T' | 'U';

export interface Difference {
  readonly path: string;
  readonly change: Change;
}

const sameContent = (a: TreeNode, b: TreeNode) =>
  a.size === b.size && (a.target ?? '') === (b.target ?? '') && (a.blocks ?? []).join() === (b.blocks ?? []).join() && (a.lists ?? []).join() === (b.lists ?? []).join();
const sameMeta = (a: TreeNode, b: TreeNode) => a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtime === b.mtime;

/**
 * The differences from snapshot `a` to `b`, depth first in name order. A
 * directory both hold under the same tree id is the same all the way down
 * and is not opened: the cost follows what changed, not the snapshots' size.
 */
export async function* diffSnapshots(repo: Repository, a: Snapshot, b: Snapshot): AsyncGenerator<Difference> {
  yield* diffTrees(repo, await sourceTree(repo, a), await sourceTree(repo, b), '');
}

async function* everything(repo: Repository, node: TreeNode, path: string, change: '+' | '-'): AsyncGenerator<Difference> {
  yield { path, change };
  if (node.type === 'dir') for await (const e of below(repo, hexId(node.subtree!), path)) yield { path: e.path, change };
}

async function* diffTrees(repo: Repository, a: BlobId, b: BlobId, at: string): AsyncGenerator<Difference> {
  if (a.equals(b)) return;
  const [left, right] = await Promise.all([children(repo, a, at), children(repo, b, at)]);
  let i = 0;
  let j = 0;
  // both are sorted by name (byName), so one pass merges them
  while (i < left.length || j < right.length) {
    const l = left[i];
    const r = right[j];
    const order = !l ? 1 : !r ? -1 : byName(l, r);
    const path = `${at}/${(order <= 0 ? l : r)!.name}`;
    if (order < 0) {
      yield* everything(repo, l!, path, '-');
      i++;
    } else if (order > 0) {
      yield* everything(repo, r!, path, '+');
      j++;
    } else {
      if (l!.type !== r!.type) {
        yield { path, change: 'T' };
      } else if (l!.type === 'dir') {
        if (!sameMeta(l!, r!)) yield { path, change: 'U' };
        yield* diffTrees(repo, hexId(l!.subtree!), hexId(r!.subtree!), path);
      } else if (!sameContent(l!, r!)) {
        yield { path, change: 'M' };
      } else if (!sameMeta(l!, r!)) {
        yield { path, change: 'U' };
      }
      i++;
      j++;
    }
  }
}

/**
 * Whether an entry's path matches a glob (`*`, `?`, `[...]`, `**`): a pattern
 * with a slash is matched against the whole path from the root, one without
 * against the entry's name, as restic's find does.
 */
export function matchesPattern(entryPath: string, pattern: string): boolean {
  return pattern.includes('/') ? path.posix.matchesGlob(entryPath, pattern.startsWith('/') ? pattern : `/**/${pattern}`) : path.posix.matchesGlob(path.posix.basename(entryPath), pattern);
}
