import crypto from 'node:crypto';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CorruptDataError } from '../errors/errors.ts';
import { blobId, Codec, type MasterKeys, NONCE_BYTES, SEAL_OVERHEAD, seal, sealSecret, TAG_BYTES, unseal, unsealSecret } from './crypto.ts';
import { type BlobId, BlobType } from './ids.ts';
import { generateMasterKeys } from './keys.ts';
import { pseudoRandomBytes, repetitiveBytes } from './testing/tree-builder.ts';

const keys = generateMasterKeys();
const ZSTD = { level: 3 };
const RAW = { level: 0 };

/** Decrypts without decoding, to read the codec byte the sealer chose. */
function codecOf(k: MasterKeys, id: BlobId, type: BlobType, stored: Buffer): number {
  const d = crypto.createDecipheriv('aes-256-gcm', k.enc, stored.subarray(0, NONCE_BYTES));
  d.setAAD(Buffer.concat([Buffer.of(type), id]));
  d.setAuthTag(stored.subarray(stored.length - TAG_BYTES));
  const plain = Buffer.concat([d.update(stored.subarray(NONCE_BYTES, stored.length - TAG_BYTES)), d.final()]);
  return plain[0]!;
}

function sealed(data: Buffer, opts = ZSTD, type: BlobType = BlobType.data) {
  const id = blobId(keys, data);
  return { id, stored: seal(keys, id, type, data, opts) };
}

describe('seal / unseal', () => {
  it('round-trips compressible data through zstd and stores it smaller', () => {
    const data = repetitiveBytes(64 * 1024, 5);
    const { id, stored } = sealed(data);
    expect(codecOf(keys, id, BlobType.data, stored)).toBe(Codec.zstd);
    expect(stored.length).toBeLessThan(data.length / 4);
    expect(unseal(keys, id, BlobType.data, stored, true).equals(data)).toBe(true);
  });

  it('stores random data raw, exactly the overhead bigger', () => {
    const data = pseudoRandomBytes(64 * 1024, 6);
    const { id, stored } = sealed(data);
    expect(codecOf(keys, id, BlobType.data, stored)).toBe(Codec.raw);
    expect(stored.length).toBe(data.length + SEAL_OVERHEAD);
    expect(unseal(keys, id, BlobType.data, stored, true).equals(data)).toBe(true);
  });

  it('at level 0 stores even compressible data raw', () => {
    const data = repetitiveBytes(64 * 1024, 7);
    const { id, stored } = sealed(data, RAW);
    expect(codecOf(keys, id, BlobType.data, stored)).toBe(Codec.raw);
    expect(stored.length).toBe(data.length + SEAL_OVERHEAD);
    expect(unseal(keys, id, BlobType.data, stored).equals(data)).toBe(true);
  });

  it('keeps zstd only when it saves at least 1/32 of the block', () => {
    // Random bytes with a short compressible tail: zstd saves a little, less than 1/32.
    const marginal = Buffer.concat([pseudoRandomBytes(8192, 8), Buffer.alloc(100)]);
    const m = sealed(marginal);
    expect(codecOf(keys, m.id, BlobType.data, m.stored)).toBe(Codec.raw);
    // Half zeros: zstd saves far more than 1/32.
    const half = Buffer.concat([pseudoRandomBytes(4096, 9), Buffer.alloc(4096)]);
    const h = sealed(half);
    expect(codecOf(keys, h.id, BlobType.data, h.stored)).toBe(Codec.zstd);
    // Under 64 bytes nothing is attempted.
    const tiny = Buffer.alloc(63);
    const t = sealed(tiny);
    expect(codecOf(keys, t.id, BlobType.data, t.stored)).toBe(Codec.raw);
  });

  it('never stores a blob bigger than plaintext + overhead, and always round-trips (property)', () => {
    const data = fc.oneof(
      fc.uint8Array({ maxLength: 5000 }),
      fc.record({ n: fc.nat(20_000), seed: fc.nat() }).map(({ n, seed }) => repetitiveBytes(n, seed)),
      fc.record({ n: fc.nat(20_000), seed: fc.nat(), zeros: fc.nat(2000) }).map(({ n, seed, zeros }) =>
        Buffer.concat([pseudoRandomBytes(n, seed), Buffer.alloc(zeros)]),
      ),
    );
    fc.assert(
      fc.property(data, fc.constantFrom(0, 1, 3, 19), fc.constantFrom(BlobType.data, BlobType.tree), (bytes, level, type) => {
        const plain = Buffer.from(bytes);
        const id = blobId(keys, plain);
        const stored = seal(keys, id, type, plain, { level });
        expect(stored.length).toBeLessThanOrEqual(plain.length + SEAL_OVERHEAD);
        expect(unseal(keys, id, type, stored, true).equals(plain)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('uses a fresh nonce: the same blob sealed twice differs', () => {
    const data = pseudoRandomBytes(1000, 10);
    const id = blobId(keys, data);
    expect(seal(keys, id, BlobType.data, data, ZSTD).equals(seal(keys, id, BlobType.data, data, ZSTD))).toBe(false);
  });

  it('rejects a flipped bit in any stored byte (raw and zstd blobs)', () => {
    for (const data of [pseudoRandomBytes(200, 11), repetitiveBytes(400, 12)]) {
      const { id, stored } = sealed(data);
      for (let i = 0; i < stored.length; i++) {
        const bad = Buffer.from(stored);
        bad[i]! ^= 1 << i % 8;
        expect(() => unseal(keys, id, BlobType.data, bad), `byte ${i}`).toThrow(CorruptDataError);
      }
    }
  });

  it('rejects truncated or extended blobs', () => {
    const { id, stored } = sealed(pseudoRandomBytes(300, 13));
    for (const len of [0, 1, SEAL_OVERHEAD - 1, SEAL_OVERHEAD, stored.length - 1]) {
      expect(() => unseal(keys, id, BlobType.data, stored.subarray(0, len)), `length ${len}`).toThrow(CorruptDataError);
    }
    expect(() => unseal(keys, id, BlobType.data, Buffer.concat([stored, Buffer.of(0)]))).toThrow(CorruptDataError);
  });

  it('binds the id and the type: another id or type fails authentication', () => {
    const data = pseudoRandomBytes(500, 14);
    const { id, stored } = sealed(data);
    const otherId = blobId(keys, Buffer.from('something else'));
    const flippedId = Buffer.from(id) as BlobId;
    flippedId[31]! ^= 0x80;
    expect(() => unseal(keys, otherId, BlobType.data, stored)).toThrow(CorruptDataError);
    expect(() => unseal(keys, flippedId, BlobType.data, stored)).toThrow(CorruptDataError);
    expect(() => unseal(keys, id, BlobType.tree, stored)).toThrow(CorruptDataError);
    expect(unseal(keys, id, BlobType.data, stored).equals(data)).toBe(true);
  });

  it('fails authentication under another repository key', () => {
    const data = pseudoRandomBytes(500, 15);
    const { id, stored } = sealed(data);
    expect(() => unseal(generateMasterKeys(), id, BlobType.data, stored)).toThrow(CorruptDataError);
  });

  it('checkId catches a plaintext that does not hash to its id', () => {
    // A key holder sealed the wrong bytes under an id: AEAD passes, only the re-hash notices.
    const real = pseudoRandomBytes(500, 16);
    const claimed = blobId(keys, Buffer.from('the block the id promises'));
    const stored = seal(keys, claimed, BlobType.data, real, ZSTD);
    expect(unseal(keys, claimed, BlobType.data, stored, false).equals(real)).toBe(true);
    expect(() => unseal(keys, claimed, BlobType.data, stored, true)).toThrow(CorruptDataError);
  });

  /** What a key holder could seal: any codec byte and payload, authenticated. */
  function forge(id: BlobId, codec: number, payload: Buffer): Buffer {
    const nonce = crypto.randomBytes(NONCE_BYTES);
    const c = crypto.createCipheriv('aes-256-gcm', keys.enc, nonce);
    c.setAAD(Buffer.concat([Buffer.of(BlobType.data), id]));
    const body = Buffer.concat([c.update(Buffer.concat([Buffer.of(codec), payload])), c.final()]);
    return Buffer.concat([nonce, body, c.getAuthTag()]);
  }

  // Found by the fuzz harness (test/reliability/fuzz): an authentic blob whose zstd payload is damaged
  // escaped as zlib's own Error instead of CorruptDataError.
  it('reports an authentic but undecodable zstd payload as CorruptDataError', () => {
    const id = blobId(keys, Buffer.from('x'));
    for (const payload of [Buffer.alloc(0), Buffer.from('not zstd at all'), zlib.zstdCompressSync(Buffer.alloc(4096, 7)).subarray(0, 10)]) {
      expect(() => unseal(keys, id, BlobType.data, forge(id, Codec.zstd, payload))).toThrow(CorruptDataError);
    }
  });

  it('with the raw length from the index, stops decompressing there and requires exactly that length', () => {
    const bomb = zlib.zstdCompressSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const id = blobId(keys, Buffer.from('y'));
    const stored = forge(id, Codec.zstd, bomb);
    const before = process.memoryUsage().arrayBuffers;
    expect(() => unseal(keys, id, BlobType.data, stored, false, 64 * 1024)).toThrow(CorruptDataError);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    const data = repetitiveBytes(64 * 1024, 7);
    const good = sealed(data);
    expect(unseal(keys, good.id, BlobType.data, good.stored, true, data.length).equals(data)).toBe(true);
    expect(() => unseal(keys, good.id, BlobType.data, good.stored, false, data.length - 1)).toThrow(CorruptDataError);
    const raw = sealed(pseudoRandomBytes(1000, 8), RAW);
    expect(() => unseal(keys, raw.id, BlobType.data, raw.stored, false, 999)).toThrow(CorruptDataError);
  });
});

describe('blobId', () => {
  it('is HMAC-SHA256 under the mac key: 32 bytes, deterministic, key-dependent', () => {
    const data = Buffer.from('block contents');
    const a = blobId(keys, data);
    expect(a.length).toBe(32);
    expect(blobId(keys, data).equals(a)).toBe(true);
    expect(a.equals(crypto.createHmac('sha256', keys.mac).update(data).digest())).toBe(true);
    // Same enc key, different mac key: different id, so ids leak nothing across repositories.
    const other: MasterKeys = { enc: keys.enc, mac: crypto.randomBytes(32) };
    expect(blobId(other, data).equals(a)).toBe(false);
    expect(a.equals(crypto.createHash('sha256').update(data).digest())).toBe(false);
    expect(blobId(keys, Buffer.from('block contentz')).equals(a)).toBe(false);
  });
});

describe('sealSecret / unsealSecret', () => {
  it('round-trips and returns undefined for a wrong key, altered or short input', () => {
    const key = crypto.randomBytes(32);
    const secret = Buffer.from('{"enc":"...","mac":"..."}');
    const box = sealSecret(key, secret);
    expect(unsealSecret(key, box)?.equals(secret)).toBe(true);
    expect(unsealSecret(crypto.randomBytes(32), box)).toBeUndefined();
    const bad = Buffer.from(box);
    bad[NONCE_BYTES]! ^= 1;
    expect(unsealSecret(key, bad)).toBeUndefined();
    expect(unsealSecret(key, box.subarray(0, NONCE_BYTES + TAG_BYTES - 1))).toBeUndefined();
  });
});
