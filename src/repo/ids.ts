/** A blob id: HMAC-SHA256 of the plaintext under the repository's id key, as 32 raw bytes. */
export type BlobId = Buffer & { readonly __brand: 'BlobId' };

export const BLOB_ID_BYTES = 32;

/**
 * The most a stored blob may be: a block is at most 8 MiB, but a directory's
 * tree blob grows with its entries (about 50 MiB sealed for a million). An
 * index row or a peer claiming more is damage or hostility, refused before
 * anything is allocated for it.
 */
export const MAX_STORED_BLOB = 64 * 1024 * 1024;

/**
 * The most a blob's plaintext may be, by type: a block at most 64 MiB (8 MiB
 * fixed, 8 x 8 MiB content-defined), a list 1,024 ids, a tree or meta blob
 * what 64 MiB of stored zstd can hold. A row claiming more is damage, refused
 * before a reader allocates for it.
 */
export function maxRawLength(type: number): number {
  if (type === 0) return 64 * 1024 * 1024;
  if (type === 2) return 1024 * BLOB_ID_BYTES;
  return 1024 * 1024 * 1024;
}

/**
 * data: file blocks; tree: a directory; list: the block ids of part of a large
 * file; meta: what a snapshot records besides files (container specs, images).
 */
export const BlobType = { data: 0, tree: 1, list: 2, meta: 3 } as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

export function toHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}
