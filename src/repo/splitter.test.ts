import { createCipheriv, createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cdcSplitter, fixedSplitter, makeSplitter, type Splitter } from './splitter.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEED = new Uint8Array(32).fill(7);
const OTHER_SEED = new Uint8Array(32).fill(8);

/** Deterministic pseudo-random bytes (AES-CTR keystream), so failures reproduce. */
function randomBytes(n: number, stream = 0): Uint8Array {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(stream >>> 0, 0);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return new Uint8Array(Buffer.concat([c.update(Buffer.alloc(n)), c.final()]));
}

/** Feeds data in reads of the given sizes (cycled), carrying the incomplete tail like a caller. */
function cutStreaming(sp: Splitter, data: Uint8Array, readSizes: number[]): number[] {
  const out: number[] = [];
  let carry = new Uint8Array(0);
  let base = 0; // absolute offset of carry[0]
  let pos = 0;
  let k = 0;
  for (;;) {
    const size = readSizes[k++ % readSizes.length]!;
    const read = data.subarray(pos, Math.min(data.length, pos + size));
    pos += read.length;
    const final = pos === data.length;
    const buf = new Uint8Array(carry.length + read.length);
    buf.set(carry);
    buf.set(read, carry.length);
    const offs = sp.cut(buf, final);
    for (const o of offs) out.push(base + o);
    const last = offs.length > 0 ? offs[offs.length - 1]! : 0;
    carry = buf.slice(last);
    base += last;
    if (final) {
      expect(carry.length).toBe(0);
      return out;
    }
  }
}

function sizesOf(offsets: number[]): number[] {
  return offsets.map((o, i) => o - (i === 0 ? 0 : offsets[i - 1]!));
}

function chunkHashes(data: Uint8Array, offsets: number[]): string[] {
  let start = 0;
  return offsets.map((end) => {
    const h = createHash('sha256').update(data.subarray(start, end)).digest('hex');
    start = end;
    return h;
  });
}

/** Checks the cut() contract that holds for any splitter and input. */
function expectWellFormed(sp: Splitter, buf: Uint8Array, final: boolean, offs: number[]): void {
  for (let i = 0; i < offs.length; i++) {
    const prev = i === 0 ? 0 : offs[i - 1]!;
    expect(offs[i]!).toBeGreaterThan(prev);
    expect(offs[i]! - prev).toBeLessThanOrEqual(sp.maxBlock);
  }
  const last = offs.length > 0 ? offs[offs.length - 1]! : 0;
  if (final) expect(last).toBe(buf.length);
  else expect(buf.length - last).toBeLessThan(sp.maxBlock);
}

describe('fixedSplitter', () => {
  const sp = fixedSplitter(4096);

  it('cuts blocks of exactly blockSize, the last one shorter when final', () => {
    expect(sp.kind).toBe('fixed');
    expect(sp.maxBlock).toBe(4096);
    expect(sp.cut(new Uint8Array(10_000), true)).toEqual([4096, 8192, 10_000]);
    expect(sp.cut(new Uint8Array(8192), true)).toEqual([4096, 8192]);
    expect(sp.cut(new Uint8Array(1), true)).toEqual([1]);
  });

  it('leaves the partial tail to the caller when not final', () => {
    expect(sp.cut(new Uint8Array(10_000), false)).toEqual([4096, 8192]);
    expect(sp.cut(new Uint8Array(8192), false)).toEqual([4096, 8192]);
    expect(sp.cut(new Uint8Array(4095), false)).toEqual([]);
  });

  it('returns no offsets for an empty buffer', () => {
    expect(sp.cut(new Uint8Array(0), true)).toEqual([]);
    expect(sp.cut(new Uint8Array(0), false)).toEqual([]);
  });

  it('rejects a non-positive or fractional block size', () => {
    expect(() => fixedSplitter(0)).toThrow(RangeError);
    expect(() => fixedSplitter(-1)).toThrow(RangeError);
    expect(() => fixedSplitter(1.5)).toThrow(RangeError);
  });
});

describe('cdcSplitter', () => {
  const avg = 8 * KiB;
  const sp = cdcSplitter({ avg, seed: SEED });

  it('has max = avg*8 and rejects averages that are not powers of two in range', () => {
    expect(sp.kind).toBe('cdc');
    expect(sp.maxBlock).toBe(8 * avg);
    expect(() => cdcSplitter({ avg: 48 * KiB, seed: SEED })).toThrow(RangeError);
    expect(() => cdcSplitter({ avg: 32, seed: SEED })).toThrow(RangeError);
    expect(() => cdcSplitter({ avg: 128 * MiB, seed: SEED })).toThrow(RangeError);
  });

  it('returns no offsets for an empty buffer', () => {
    expect(sp.cut(new Uint8Array(0), true)).toEqual([]);
    expect(sp.cut(new Uint8Array(0), false)).toEqual([]);
  });

  it('handles final: a short input is one block when final, carried otherwise', () => {
    const short = randomBytes(avg / 4 - 1);
    expect(sp.cut(short, true)).toEqual([short.length]);
    expect(sp.cut(short, false)).toEqual([]);
    const data = randomBytes(MiB);
    const offs = sp.cut(data, false);
    expectWellFormed(sp, data, false, offs);
    expect(sp.cut(data, true)).toEqual(
      offs[offs.length - 1] === data.length ? offs : [...offs, data.length],
    );
  });

  it('respects min (avg/4) and max (avg*8) on random and on constant data', () => {
    const random = randomBytes(8 * MiB, 1);
    const rOffs = sp.cut(random, true);
    expectWellFormed(sp, random, true, rOffs);
    const rSizes = sizesOf(rOffs).slice(0, -1); // the final block may be short
    expect(Math.min(...rSizes)).toBeGreaterThanOrEqual(avg / 4);
    expect(Math.max(...rSizes)).toBeLessThanOrEqual(avg * 8);

    // Constant data never matches a mask (or always does): either way the bounds hold.
    for (const fill of [0, 0xff, 0x5a]) {
      const flat = new Uint8Array(MiB).fill(fill);
      const sizes = sizesOf(sp.cut(flat, true)).slice(0, -1);
      expect(sizes.length).toBeGreaterThan(0);
      for (const s of sizes) {
        expect(s).toBeGreaterThanOrEqual(avg / 4);
        expect(s).toBeLessThanOrEqual(avg * 8);
      }
    }
  });

  it('is deterministic for a seed and cuts elsewhere with another seed', () => {
    const data = randomBytes(4 * MiB, 2);
    const a = sp.cut(data, true);
    expect(cdcSplitter({ avg, seed: SEED.slice() }).cut(data, true)).toEqual(a);
    const b = cdcSplitter({ avg, seed: OTHER_SEED }).cut(data, true);
    const shared = new Set(a.slice(0, -1));
    const common = b.slice(0, -1).filter((o) => shared.has(o)).length;
    expect(common / a.length).toBeLessThan(0.1);
  });

  it('resists shifts: an insertion near the start leaves >80% of chunks unchanged', () => {
    const data = randomBytes(4 * MiB, 3);
    const inserted = randomBytes(37, 4);
    const at = 1000;
    const shifted = new Uint8Array(data.length + inserted.length);
    shifted.set(data.subarray(0, at));
    shifted.set(inserted, at);
    shifted.set(data.subarray(at), at + inserted.length);

    const before = chunkHashes(data, sp.cut(data, true));
    const after = new Set(chunkHashes(shifted, sp.cut(shifted, true)));
    const kept = before.filter((h) => after.has(h)).length;
    expect(before.length).toBeGreaterThan(100);
    expect(kept / before.length).toBeGreaterThan(0.8);
  });

  it('averages within ±25% of avg on 32 MiB of random data', () => {
    const data = randomBytes(32 * MiB, 5);
    for (const a of [8 * KiB, 64 * KiB]) {
      const offs = cdcSplitter({ avg: a, seed: SEED }).cut(data, true);
      const mean = data.length / offs.length;
      expect(mean).toBeGreaterThan(a * 0.75);
      expect(mean).toBeLessThan(a * 1.25);
      // Normalized chunking level 2 makes a cut before avg/2 rare (~6%; ~22% without it).
      const small = sizesOf(offs).filter((s) => s < a / 2).length;
      expect(small / offs.length).toBeLessThan(0.1);
    }
  });
});

describe('streaming equivalence', () => {
  // Small averages so that modest inputs hold many chunks, and every boundary case (a read
  // ending just before, at, or after a cut, or below min) comes up.
  const splitters: Splitter[] = [
    cdcSplitter({ avg: 256, seed: SEED }),
    cdcSplitter({ avg: 1024, seed: OTHER_SEED }),
    fixedSplitter(1000),
    fixedSplitter(7),
  ];

  // Random bytes, or low-entropy bytes (runs of few values) which push chunks to max size.
  const dataArb = fc.oneof(
    fc.record({ len: fc.nat(32 * KiB), stream: fc.nat() }).map(({ len, stream }) => randomBytes(len, stream)),
    fc
      .array(fc.record({ byte: fc.integer({ min: 0, max: 3 }), run: fc.integer({ min: 1, max: 4096 }) }), {
        maxLength: 40,
      })
      .map((runs) => {
        const parts = runs.map(({ byte, run }) => new Uint8Array(run).fill(byte));
        return new Uint8Array(Buffer.concat(parts));
      }),
  );
  // Mostly larger reads: an all-tiny read pattern re-scans the carry on every call, which is
  // quadratic and only slows the test down without covering more cases.
  const readsArb = fc.array(
    fc.oneof(
      { arbitrary: fc.integer({ min: 1, max: 64 }), weight: 1 },
      { arbitrary: fc.integer({ min: 1, max: 10_000 }), weight: 3 },
    ),
    { minLength: 1, maxLength: 20 },
  );

  it('gives the same cuts in one call as in random-sized reads with carry', () => {
    fc.assert(
      fc.property(dataArb, readsArb, fc.constantFrom(...splitters.keys()), (data, reads, k) => {
        const sp = splitters[k]!;
        const whole = sp.cut(data, true);
        expectWellFormed(sp, data, true, whole);
        expect(cutStreaming(sp, data, reads)).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('always finds a cut in a non-final buffer of maxBlock bytes', () => {
    fc.assert(
      fc.property(fc.nat(), fc.constantFrom(...splitters.keys()), (stream, k) => {
        const sp = splitters[k]!;
        const buf = randomBytes(sp.maxBlock, stream);
        const offs = sp.cut(buf, false);
        expect(offs.length).toBeGreaterThan(0);
        expectWellFormed(sp, buf, false, offs);
        const flat = new Uint8Array(sp.maxBlock);
        expect(sp.cut(flat, false).length).toBeGreaterThan(0);
      }),
      { numRuns: 100 },
    );
  });
});

describe('makeSplitter', () => {
  it('builds a fixed splitter or a CDC splitter with blockSize as avg', () => {
    const f = makeSplitter('fixed', 64 * KiB, SEED);
    expect(f.kind).toBe('fixed');
    expect(f.maxBlock).toBe(64 * KiB);
    const c = makeSplitter('cdc', 64 * KiB, SEED);
    expect(c.kind).toBe('cdc');
    expect(c.maxBlock).toBe(512 * KiB);
    const data = randomBytes(2 * MiB, 6);
    expect(c.cut(data, true)).toEqual(cdcSplitter({ avg: 64 * KiB, seed: SEED }).cut(data, true));
  });
});
