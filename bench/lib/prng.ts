// Seeded, deterministic randomness for the benchmark data.
// - Sfc32: a small fast PRNG for choices (sizes, offsets, record fields).
// - RandomStream: bulk pseudo-random bytes from AES-256-CTR over zeros (GB/s, no JS byte loops).
import { createCipheriv, createHash, type Cipheriv } from 'node:crypto';

function digest(seed: string, label: string): Buffer {
  return createHash('sha256').update(`${seed}\0${label}`).digest();
}

/** Small Fast Counter PRNG (sfc32), 32-bit state words. */
export class Sfc32 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: string, label: string) {
    const h = digest(seed, label);
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12) | 1;
    for (let i = 0; i < 12; i++) this.next();
  }

  /** Uniform uint32. */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

const ZEROS = Buffer.alloc(4 << 20);

/** Deterministic incompressible byte stream: AES-256-CTR keystream keyed by (seed, label). */
export class RandomStream {
  private readonly cipher: Cipheriv;

  constructor(seed: string, label: string) {
    const key = digest(seed, `aes:${label}`);
    this.cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }

  bytes(n: number): Buffer {
    if (n <= ZEROS.length) return this.cipher.update(ZEROS.subarray(0, n));
    const parts: Buffer[] = [];
    for (let left = n; left > 0; left -= ZEROS.length) {
      parts.push(this.cipher.update(ZEROS.subarray(0, Math.min(left, ZEROS.length))));
    }
    return Buffer.concat(parts, n);
  }
}
