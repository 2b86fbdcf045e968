import { listRefs } from './content.ts';
import { type BlobId, BlobType } from './ids.ts';
import { NO_REFS } from './pack.ts';
import { decodeTree, treeRefs } from './tree.ts';

/** What a blob names, from its plaintext: a tree's children and blocks, a list's blocks, nothing for the rest. */
export function blobRefs(type: BlobType, plain: Buffer): readonly BlobId[] {
  if (type === BlobType.tree) return treeRefs(decodeTree(plain, 'a tree'));
  if (type === BlobType.list) return listRefs(plain);
  return NO_REFS;
}
