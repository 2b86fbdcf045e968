import { type BlobId, BlobType } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import { decodeTree, type TreeNode } from './tree.ts';

export interface Visitor {
  /** Called before a tree is loaded; return false to skip it (already visited). */
  enterTree(id: BlobId, path: string): boolean;
  node?(node: TreeNode, path: string): void;
}

/** Depth-first over a snapshot's trees; memory holds one tree per level. */
export async function walkSnapshot(repo: Repository, snapshot: Snapshot, visitor: Visitor): Promise<void> {
  await walkTree(repo, snapshot.tree, '', visitor);
}

async function walkTree(repo: Repository, id: BlobId, path: string, visitor: Visitor): Promise<void> {
  if (!visitor.enterTree(id, path)) return;
  const tree = decodeTree(await repo.loadBlob(id, BlobType.tree), path || '/');
  for (const node of tree.nodes) {
    const child = `${path}/${node.name}`;
    visitor.node?.(node, child);
    if (node.type === 'dir') await walkTree(repo, Buffer.from(node.subtree!, 'hex') as BlobId, child, visitor);
  }
}
