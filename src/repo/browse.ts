import { CorruptDataError, PathNotFoundError } from '../errors/errors.ts';
import { decodeList } from './content.ts';
import { type BlobId, BlobType } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { decodeTree, type TreeNode } from './tree.ts';

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
