import xxhash from 'xxhash-wasm';

// Worker side: xxh64 runs at ~10 GB/s here, HMAC-SHA256 at ~1.5: a block whose
// fingerprint matches its parent's costs a seventh of one that is hashed for its id.
const xx = await xxhash();

/** A block's fingerprint. */
export const fingerprint = (part: Uint8Array): bigint => xx.h64Raw(part);

/**
 * The fingerprints of a block-aligned range of a file, taken block by block,
 * each compared with the parent's block at the same offset. `parent` holds
 * the parent's fingerprints from the range's first block on (possibly fewer
 * than the range has); a block matches only where the parent's has the same
 * length and the same fingerprint.
 */
export class RangePrints {
  readonly hashes: Buffer;
  readonly #parent: Buffer | null;
  readonly #block: number;
  readonly #start: number;
  readonly #parentSize: number;

  constructor(opts: { readonly start: number; readonly end: number; readonly block: number; readonly parent: Uint8Array | null; readonly parentSize: number }) {
    this.hashes = Buffer.alloc(Math.ceil((opts.end - opts.start) / opts.block) * 8);
    this.#parent = opts.parent && Buffer.from(opts.parent.buffer, opts.parent.byteOffset, opts.parent.byteLength);
    this.#block = opts.block;
    this.#start = opts.start;
    this.#parentSize = opts.parentSize;
  }

  /** Fingerprints the block at file offset `at`: whether the parent's block there is the same. */
  take(at: number, part: Uint8Array, hash = fingerprint(part)): boolean {
    const i = (at - this.#start) / this.#block;
    this.hashes.writeBigUInt64LE(hash, i * 8);
    const p = this.#parent;
    return p !== null && (i + 1) * 8 <= p.length && part.length === Math.min(this.#block, this.#parentSize - at) && p.compare(this.hashes, i * 8, i * 8 + 8, i * 8, i * 8 + 8) === 0;
  }
}
