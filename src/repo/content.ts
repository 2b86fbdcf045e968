import { CorruptDataError } from '../errors/errors.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType, toHex } from './ids.ts';
import type { TreeNode } from './tree.ts';

/** Block ids per list blob: 32 KiB of ids, 64 MiB of file at 64 KiB blocks. */
export const LIST_SPAN = 1024;
/** Files with at most this many blocks keep them inline in their tree node. */
export const INLINE_MAX = 64;

/** A list blob is the raw 32-byte ids back to back: nothing to parse, nothing to escape. */
export function encodeList(hexIds: readonly string[]): Buffer {
  const out = Buffer.allocUnsafe(hexIds.length * BLOB_ID_BYTES);
  hexIds.forEach((hex, i) => out.write(hex, i * BLOB_ID_BYTES, 'hex'));
  return out;
}

export function decodeList(plain: Buffer, where: string): string[] {
  if (plain.length === 0 || plain.length % BLOB_ID_BYTES !== 0 || plain.length > LIST_SPAN * BLOB_ID_BYTES) {
    throw new CorruptDataError(`block list of ${where} is malformed (${plain.length} bytes)`);
  }
  const out: string[] = [];
  for (let o = 0; o < plain.length; o += BLOB_ID_BYTES) out.push(toHex(plain.subarray(o, o + BLOB_ID_BYTES)));
  return out;
}

/** Splits a file's block ids into the list groups a node refers to (fixed positions, so unchanged spans dedup). */
export function listGroups(hexIds: readonly string[]): string[][] {
  const groups: string[][] = [];
  for (let i = 0; i < hexIds.length; i += LIST_SPAN) groups.push(hexIds.slice(i, i + LIST_SPAN));
  return groups;
}

/** Loads a blob by id, for walking a file's content. */
export type LoadBlob = (id: BlobId, type: BlobType) => Promise<Buffer>;

/** A file's block ids in order, one group at a time (inline, or list by list): memory holds one list. */
export async function* blockGroups(load: LoadBlob, node: TreeNode, where: string): AsyncGenerator<string[]> {
  if (node.blocks) {
    yield [...node.blocks];
    return;
  }
  for (const hex of node.lists ?? []) yield decodeList(await load(Buffer.from(hex, 'hex') as BlobId, BlobType.list), where);
}
