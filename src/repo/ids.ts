/** A blob id: HMAC-SHA256 of the plaintext under the repository's id key, as 32 raw bytes. */
export type BlobId = Buffer & { readonly __brand: 'BlobId' };

export const BLOB_ID_BYTES = 32;

export const BlobType = { data: 0, tree: 1 } as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

export function blobIdFromHex(hex: string): BlobId | undefined {
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  return Buffer.from(hex, 'hex') as BlobId;
}

export function toHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}
