import fs from 'node:fs';
import { fingerprint, RangePrints } from './block-prints.ts';
import type { CaptureItem, CaptureResult } from './jobs.ts';

const CHUNK = 4 << 20;
let buffer: Buffer | undefined;
let zeros = Buffer.alloc(0);
const zeroHashes = new Map<number, bigint>();

/** Whether a block is all zeros (a hole in a sparse file): left a hole in the copy, which reads as zeros. */
function isZero(part: Buffer, hash: bigint): boolean {
  if (zeros.length < part.length) zeros = Buffer.alloc(part.length);
  const zero = zeros.subarray(0, part.length);
  let h = zeroHashes.get(part.length);
  if (h === undefined) zeroHashes.set(part.length, (h = fingerprint(zero)));
  return hash === h && part.equals(zero);
}

/**
 * In a worker: reads a range of a frozen file once, fingerprinting each
 * block, and writes into the copy the blocks that differ from the parent's.
 */
export function captureRange(item: CaptureItem): CaptureResult {
  const { block, start, end } = item;
  const prints = new RangePrints(item);
  const { hashes } = prints;
  const kept = new Uint8Array(hashes.length / 8);
  buffer ??= Buffer.allocUnsafe(CHUNK);
  let src: number | undefined;
  let dst: number | undefined;
  let copied = 0;
  const failed = (side: 'source' | 'copy', err: unknown): CaptureResult => {
    const e = err as NodeJS.ErrnoException;
    return { hashes, kept, copied, error: { side, code: e.code ?? 'EIO', message: e.message } };
  };
  try {
    try {
      src = fs.openSync(item.source, 'r');
    } catch (err) {
      return failed('source', err);
    }
    try {
      dst = fs.openSync(item.copy, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      return failed('copy', err);
    }
    for (let at = start; at < end; ) {
      let n: number;
      try {
        n = fs.readSync(src, buffer, 0, Math.min(CHUNK, end - at), at);
      } catch (err) {
        return failed('source', err);
      }
      if (n === 0) break; // shorter than seen: the lstat after the capture says so
      for (let o = 0; o < n; o += block) {
        const i = (at + o - start) / block;
        const part = buffer.subarray(o, Math.min(o + block, n));
        const hash = fingerprint(part);
        if (prints.take(at + o, part, hash)) kept[i] = 1;
        else if (!isZero(part, hash)) {
          try {
            for (let w = 0; w < part.length; ) w += fs.writeSync(dst, part, w, part.length - w, at + o + w);
            copied += part.length;
          } catch (err) {
            return failed('copy', err);
          }
        }
      }
      at += n;
    }
    return { hashes, kept, copied, error: null };
  } finally {
    if (src !== undefined) fs.closeSync(src);
    if (dst !== undefined) fs.closeSync(dst);
  }
}
