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

/** The distinct block ids a list blob names. */
export function listRefs(plain: Buffer): BlobId[] {
  const seen = new Map<string, BlobId>();
  for (let o = 0; o + BLOB_ID_BYTES <= plain.length; o += BLOB_ID_BYTES) {
    const id = plain.subarray(o, o + BLOB_ID_BYTES) as BlobId;
    seen.set(id.toString('latin1'), id);
  }
  return [...seen.values()];
}

export function decodeList(plain: Buffer, where: string): string[] {
  if (plain.length === 0 || plain.length % BLOB_ID_BYTES !== 0 || plain.length > LIST_SPAN * BLOB_ID_BYTES) {
    throw new CorruptDataError(`block list of ${where} is malformed (${plain.length} bytes)`);
  }
  const out: string[] = [];
  for (let o = 0; o < plain.length; o += BLOB_ID_BYTES) out.push(toHex(plain.subarray(o, o + BLOB_ID_BYTES)));
  return out;
}

/**
 * Builds a file's content reference from its block ids as they arrive, so
 * memory holds one list's worth of ids, not the file's (a 1 TiB file has 16
 * million). Up to INLINE_MAX ids stay inline; past that every LIST_SPAN ids,
 * cut at fixed positions so unchanged spans dedup across versions, become a
 * list blob through `saveList`, which returns its id (hex).
 */
export class BlockListBuilder {
  readonly #saveList: (list: Buffer) => string;
  readonly #lists: string[] = [];
  #group: string[] = [];

  constructor(saveList: (list: Buffer) => string) {
    this.#saveList = saveList;
  }

  add(hexId: string): void {
    this.#group.push(hexId);
    if (this.#group.length === LIST_SPAN) this.#seal();
  }

  /** What the file's tree node names: its block ids inline, or its list blobs. */
  finish(): { blocks: string[] } | { lists: string[] } {
    if (this.#lists.length === 0 && this.#group.length <= INLINE_MAX) return { blocks: this.#group };
    if (this.#group.length > 0) this.#seal();
    return { lists: this.#lists };
  }

  #seal(): void {
    this.#lists.push(this.#saveList(encodeList(this.#group)));
    this.#group = [];
  }
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
