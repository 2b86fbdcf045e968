import { decodeList, type LoadBlob } from './content.ts';
import { type BlobId, BlobType } from './ids.ts';
import type { Snapshot } from './snapshot.ts';
import { decodeTree, type TreeNode } from './tree.ts';

export interface Visitor {
  /** Called before a tree or list blob is loaded; return false to skip it (already visited). */
  enter(id: BlobId, type: typeof BlobType.tree | typeof BlobType.list, path: string): boolean;
  node?(node: TreeNode, path: string): void;
  /** A file's block ids: its inline ones, or one list's worth at a time. */
  blocks?(hexIds: readonly string[], path: string): void;
}

/**
 * Depth-first over a snapshot's trees and block lists; memory holds one tree
 * per level. `load` says where blobs come from: the index (repo.loadBlob), or
 * the packs themselves when the index is not to be trusted (prune, verify).
 */
export async function walkSnapshot(load: LoadBlob, snapshot: Snapshot, visitor: Visitor): Promise<void> {
  await walkTree(load, snapshot.tree, '', visitor);
}

async function walkTree(load: LoadBlob, id: BlobId, path: string, visitor: Visitor): Promise<void> {
  if (!visitor.enter(id, BlobType.tree, path)) return;
  const tree = decodeTree(await load(id, BlobType.tree), path || '/');
  for (const node of tree.nodes) {
    const child = `${path}/${node.name}`;
    visitor.node?.(node, child);
    if (node.type === 'dir') await walkTree(load, Buffer.from(node.subtree!, 'hex') as BlobId, child, visitor);
    if (node.blocks) visitor.blocks?.(node.blocks, child);
    for (const hex of node.lists ?? []) {
      const list = Buffer.from(hex, 'hex') as BlobId;
      if (visitor.enter(list, BlobType.list, child)) visitor.blocks?.(decodeList(await load(list, BlobType.list), child), child);
    }
  }
}
