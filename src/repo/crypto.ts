import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { CorruptDataError } from '../errors/errors.ts';
import { type BlobId, type BlobType, BLOB_ID_BYTES } from './ids.ts';

/** The repository's secrets: `enc` seals blobs, `mac` derives blob ids. Never logged. */
export interface MasterKeys {
  readonly enc: Buffer;
  readonly mac: Buffer;
}

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** What sealing adds to a payload: nonce, codec byte, tag. */
export const SEAL_OVERHEAD = NONCE_BYTES + 1 + TAG_BYTES;

/** Codec ids, the first plaintext byte of every sealed blob. */
export const Codec = { raw: 0, zstd: 1 } as const;

export interface SealOptions {
  /** zstd level; 0 stores everything raw. */
  readonly level: number;
}

/** Raw key buffers are turned into KeyObjects once: building one per call cost a third of the hashing time. */
const keyObjects = new WeakMap<Buffer, crypto.KeyObject>();
function keyObject(raw: Buffer): crypto.KeyObject {
  let k = keyObjects.get(raw);
  if (!k) {
    k = crypto.createSecretKey(raw);
    keyObjects.set(raw, k);
  }
  return k;
}

export function blobId(keys: MasterKeys, plaintext: Uint8Array): BlobId {
  return crypto.createHmac('sha256', keyObject(keys.mac)).update(plaintext).digest() as BlobId;
}

/** Random bytes drawn a batch at a time: one getrandom() for 4,096 nonces instead of one per blob. */
const NONCE_BATCH = 4096;
let nonces = Buffer.alloc(0);
let nonceAt = 0;

function freshNonce(): Buffer {
  if (nonceAt + NONCE_BYTES > nonces.length) {
    nonces = crypto.randomBytes(NONCE_BYTES * NONCE_BATCH);
    nonceAt = 0;
  }
  const n = nonces.subarray(nonceAt, nonceAt + NONCE_BYTES);
  nonceAt += NONCE_BYTES;
  return n;
}

/** Binds a ciphertext to its id and type, so a blob cannot be swapped for another. */
function aad(id: BlobId, type: BlobType): Buffer {
  const a = Buffer.allocUnsafe(1 + BLOB_ID_BYTES);
  a[0] = type;
  a.set(id, 1);
  return a;
}

/**
 * Stored form: nonce | AES-256-GCM(codec byte | payload) | tag, with the id and
 * type as associated data. zstd is skipped for blocks that look random and kept
 * only when it saves at least 1/32, so incompressible data never grows.
 */
export function seal(keys: MasterKeys, id: BlobId, type: BlobType, plaintext: Uint8Array, opts: SealOptions): Buffer {
  let codec: number = Codec.raw;
  let payload: Uint8Array = plaintext;
  if (opts.level > 0 && plaintext.byteLength >= 64 && !looksRandom(plaintext)) {
    const packed = zlib.zstdCompressSync(plaintext, {
      params: { [zlib.constants.ZSTD_c_compressionLevel]: opts.level },
    });
    if (packed.byteLength < plaintext.byteLength - (plaintext.byteLength >>> 5)) {
      codec = Codec.zstd;
      payload = packed;
    }
  }
  const nonce = freshNonce();
  const cipher = crypto.createCipheriv('aes-256-gcm', keyObject(keys.enc), nonce);
  cipher.setAAD(aad(id, type));
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + payload.byteLength);
  nonce.copy(out, 0);
  let o = NONCE_BYTES;
  o += cipher.update(Uint8Array.of(codec)).copy(out, o);
  o += cipher.update(payload).copy(out, o);
  o += cipher.final().copy(out, o);
  cipher.getAuthTag().copy(out, o);
  return out;
}

/**
 * Authenticates and decodes a stored blob. With `checkId` the plaintext is also
 * re-hashed against its id (verify --read-data); AEAD alone already proves a key
 * holder sealed these bytes under this id. With `rawLength` (the index's and the
 * pack trailer's raw length) decompression stops there, so a blob cannot make
 * the reader allocate more than the index promised, and must come out that long.
 */
export function unseal(keys: MasterKeys, id: BlobId, type: BlobType, stored: Uint8Array, checkId = false, rawLength?: number): Buffer {
  if (stored.byteLength < SEAL_OVERHEAD) throw new CorruptDataError(`blob ${hex(id)} is truncated`);
  const buf = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const decipher = crypto.createDecipheriv('aes-256-gcm', keyObject(keys.enc), buf.subarray(0, NONCE_BYTES));
  decipher.setAAD(aad(id, type));
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  let plain: Buffer;
  try {
    const part = decipher.update(buf.subarray(NONCE_BYTES, buf.length - TAG_BYTES));
    // GCM's final() only checks the tag: no copy of every blob to append nothing
    const rest = decipher.final();
    plain = rest.length === 0 ? part : Buffer.concat([part, rest]);
  } catch {
    throw new CorruptDataError(`blob ${hex(id)} failed authentication: its stored bytes were altered`);
  }
  let out: Buffer;
  if (plain[0] === Codec.raw) out = plain.subarray(1);
  else if (plain[0] === Codec.zstd) out = decompress(plain.subarray(1), id, rawLength);
  else throw new CorruptDataError(`blob ${hex(id)} has unknown codec ${plain[0]}`);
  if (rawLength !== undefined && out.length !== rawLength) {
    throw new CorruptDataError(`blob ${hex(id)} holds ${out.length} bytes, the index says ${rawLength}`);
  }
  if (checkId && !blobId(keys, out).equals(id)) {
    throw new CorruptDataError(`blob ${hex(id)} does not hash to its id`);
  }
  return out;
}

/** zstd's own errors (a damaged frame, output past the bound) are the blob's damage, not the reader's. */
function decompress(payload: Buffer, id: BlobId, rawLength: number | undefined): Buffer {
  try {
    return zlib.zstdDecompressSync(payload, rawLength === undefined ? {} : { maxOutputLength: Math.max(1, rawLength) });
  } catch (err) {
    throw new CorruptDataError(`blob ${hex(id)} does not decompress: ${(err as Error).message}`, { cause: err });
  }
}

const histogram = new Uint32Array(256);

/**
 * Byte entropy of a sample of every 16th byte, above 7.5 bits: encrypted or
 * already compressed data, which zstd would spend a third of the backup's CPU
 * failing to shrink. A block of repeated random runs is misjudged and stored
 * raw; that costs space, never correctness.
 */
export function looksRandom(data: Uint8Array): boolean {
  if (data.byteLength < 4096) return false;
  histogram.fill(0);
  let n = 0;
  for (let i = 0; i < data.byteLength; i += 16, n++) histogram[data[i]!]!++;
  let bits = 0;
  for (const c of histogram) if (c > 0) bits -= (c / n) * Math.log2(c / n);
  return bits > 7.5;
}

/** Small secrets (the key file's payload) sealed under a key with no id binding. */
export function sealSecret(key: Buffer, plaintext: Buffer): Buffer {
  const nonce = freshNonce();
  const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Returns undefined when the key is wrong or the bytes were altered: callers know which it means. */
export function unsealSecret(key: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined;
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}

function hex(id: Uint8Array): string {
  return Buffer.from(id).toString('hex').slice(0, 16);
}
