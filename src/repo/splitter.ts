/**
 * Block splitters: fixed-size blocks (the default, so in-place writes dirty only the blocks
 * they touch) and FastCDC content-defined chunks (for data that shifts).
 *
 * Splitters are stateless: a caller feeding a file in read buffers keeps the bytes after the
 * last returned offset and prepends them to the next read. Every cut depends only on the bytes
 * since the previous cut, so any read pattern yields the same blocks as one whole-file call.
 */
import { createHmac } from 'node:crypto';

export interface Splitter {
  readonly kind: 'fixed' | 'cdc';
  /** Largest block this splitter can emit; callers size read buffers from it. */
  readonly maxBlock: number;
  /** End offsets (exclusive, strictly increasing) of the complete blocks found in buf.
   *  When final is false, bytes after the last returned offset are an incomplete block the
   *  caller must carry into the next call; when final is true the last offset is buf.length
   *  (no offsets for an empty buf). A non-final buf of at least maxBlock bytes always yields
   *  at least one offset. */
  cut(buf: Uint8Array, final: boolean): number[];
}

export function fixedSplitter(blockSize: number): Splitter {
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
    throw new RangeError(`fixed block size must be a positive integer, got ${blockSize}`);
  }
  return {
    kind: 'fixed',
    maxBlock: blockSize,
    cut(buf: Uint8Array, final: boolean): number[] {
      const n = buf.length;
      const out: number[] = [];
      let end = blockSize;
      for (; end <= n; end += blockSize) out.push(end);
      if (final && end - blockSize < n) out.push(n);
      return out;
    },
  };
}

/** Smallest and largest accepted CDC average (the mask for avg*4 must fit a 32-bit hash). */
export const CDC_MIN_AVG = 64;
export const CDC_MAX_AVG = 64 * 1024 * 1024;

/**
 * FastCDC (Xia et al., USENIX ATC 2016): gear rolling hash, cut-point skipping below min, and
 * normalized chunking level 2 (a mask with 2 extra bits before avg, 2 fewer after), which
 * concentrates chunk sizes around avg. min = avg/4, max = avg*8; avg must be a power of two.
 */
export function cdcSplitter(opts: { avg: number; seed: Uint8Array }): Splitter {
  const { avg, seed } = opts;
  if (!Number.isSafeInteger(avg) || avg < CDC_MIN_AVG || avg > CDC_MAX_AVG || (avg & (avg - 1)) !== 0) {
    throw new RangeError(
      `CDC average block size must be a power of two in [${CDC_MIN_AVG}, ${CDC_MAX_AVG}], got ${avg}`,
    );
  }
  const bits = Math.log2(avg);
  const min = avg / 4;
  const max = avg * 8;
  // In a 32-bit gear hash bit k depends only on the last k+1 bytes, so the masks take the top
  // bits, which see the widest window (the paper spreads bits for the same reason in 64 bits).
  const maskS = topBits(bits + 2);
  const maskL = topBits(bits - 2);
  const gear = gearTable(seed);

  /** End of the chunk starting at s, or -1 when buf ends before its cut point is known. */
  function nextCut(buf: Uint8Array, s: number): number {
    const n = buf.length;
    const end = s + max < n ? s + max : n;
    const normal = s + avg < end ? s + avg : end;
    let h = 0;
    let i = s + min;
    for (; i < normal; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskS) === 0) return i + 1;
    }
    for (; i < end; i++) {
      h = ((h << 1) + gear[buf[i]!]!) | 0;
      if ((h & maskL) === 0) return i + 1;
    }
    return end === s + max ? end : -1;
  }

  return {
    kind: 'cdc',
    maxBlock: max,
    cut(buf: Uint8Array, final: boolean): number[] {
      const n = buf.length;
      const out: number[] = [];
      let s = 0;
      while (s < n) {
        const c = nextCut(buf, s);
        if (c < 0) break;
        out.push(c);
        s = c;
      }
      if (final && s < n) out.push(n);
      return out;
    },
  };
}

export function makeSplitter(kind: 'fixed' | 'cdc', blockSize: number, seed: Uint8Array): Splitter {
  switch (kind) {
    case 'fixed':
      return fixedSplitter(blockSize);
    case 'cdc':
      return cdcSplitter({ avg: blockSize, seed });
    default:
      throw new RangeError(`unknown splitter kind: ${String(kind satisfies never)}`);
  }
}

/** Mask of the n highest bits of a 32-bit word, as a signed int32 to stay in V8's int fast path. */
function topBits(n: number): number {
  return (~0 << (32 - n)) | 0;
}

/**
 * Gear table keyed by the repository's secret seed: with a public table, chunk boundaries
 * (visible as blob sizes) would fingerprint known content across repositories.
 */
function gearTable(seed: Uint8Array): Int32Array {
  const table = new Int32Array(256);
  const label = Buffer.from('lifeboat-gear');
  for (let i = 0; i < 256; i++) {
    const mac = createHmac('sha256', seed).update(label).update(Uint8Array.of(i)).digest();
    table[i] = mac.readInt32LE(0);
  }
  return table;
}
