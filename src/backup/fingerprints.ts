import crypto from 'node:crypto';
import type { SourceFingerprints } from '../catalog/fingerprints.ts';
import type { TreeNode } from '../repo/tree.ts';

/**
 * A file's per-block fingerprints (xxh64, 8 bytes a block) as a backup last
 * read them, and the snapshot content they describe: `key` is contentKey() of
 * the node that read produced. They stand for the parent snapshot's blocks
 * only when the parent's node has that key. Where they are kept (the agent's
 * catalog, the CLI's cache) is the store's business, never the repository:
 * an unkeyed hash of plaintext blocks would tell whoever holds the repository
 * which blocks are equal to a guess.
 */
export type FingerprintStore = SourceFingerprints;

/** What a read knows of a file's parent version: the fingerprints of its blocks, and its size. */
export interface ParentBlocks {
  readonly hashes: Buffer;
  readonly size: number;
}

/** Identifies the content a node names (its block or list ids), so fingerprints are used only for the version they describe. */
export function contentKey(content: Pick<TreeNode, 'blocks' | 'lists'>): Buffer {
  return crypto.createHash('sha256').update(JSON.stringify([content.blocks ?? null, content.lists ?? null])).digest();
}

/** The fingerprints `store` keeps for `rel` when they describe `before`, the parent's node, block for block at `block` bytes. */
export function parentBlocks(store: FingerprintStore, block: number, rel: string, before: TreeNode | undefined): ParentBlocks | undefined {
  if (before?.type !== 'file') return undefined;
  const f = unlessFailing(() => store.get(rel));
  const fits = f && f.block === block && f.hashes.length === Math.ceil(before.size / block) * 8 && f.key.equals(contentKey(before));
  return fits ? { hashes: f.hashes, size: before.size } : undefined;
}

/** Remembers what a read of `rel` found, once its content (the node's ids) is known. */
export function rememberBlocks(store: FingerprintStore, block: number, rel: string, content: Pick<TreeNode, 'blocks' | 'lists'>, hashes: Buffer): void {
  unlessFailing(() => store.put(rel, { key: contentKey(content), block, hashes }));
}

/** Forgets what a walk of every file did not find. */
export function keepOnlyBlocks(store: FingerprintStore, paths: ReadonlySet<string>): void {
  unlessFailing(() => store.keepOnly(paths));
}

/** Fingerprints are a cache: one that cannot be read or written (damaged, a full disk) costs hashing, never a backup. */
function unlessFailing<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
