import crypto from 'node:crypto';
import fs from 'node:fs';
import { blobId, seal } from '../repo/crypto.ts';
import { BLOB_ID_BYTES, BlobType } from '../repo/ids.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { makeSplitter, type Splitter } from '../repo/splitter.ts';
import { MiB } from '../util/units.ts';
import type { WorkerContext } from '../workers/context.ts';
import type { StoreItem, StoreResult } from '../workers/protocol.ts';

const READ = 4 * MiB;

class SourceReadError extends Error {}

function readSource(fd: number, buf: Buffer, at: number, length: number, position: number): number {
  try {
    return fs.readSync(fd, buf, at, length, position);
  } catch (err) {
    throw new SourceReadError((err as Error).message);
  }
}

/** Per worker: one read buffer and one splitter per spec, reused by every item. */
let buffer: Buffer | undefined;
const splitters = new Map<string, Splitter>();

export function cdcSeed(ctx: { keys: { mac: Buffer } }): Buffer {
  return crypto.createHmac('sha256', ctx.keys.mac).update('lifeboat cdc seed').digest();
}

function splitterFor(ctx: WorkerContext, spec: SplitterSpec): Splitter {
  const key = `${spec.kind}:${spec.size}`;
  let s = splitters.get(key);
  if (!s) {
    s = makeSplitter(spec.kind, spec.size, cdcSeed(ctx));
    splitters.set(key, s);
  }
  return s;
}

/**
 * Runs on a worker: reads a file (or a block-aligned range of it), cuts it
 * into blocks, and seals and packs every block the repository lacks. Returns
 * the ids in order. A file that cannot be read is reported, not thrown, so one
 * unreadable file does not fail the batch it travels in.
 */
export function storeItem(ctx: WorkerContext, spec: SplitterSpec, item: StoreItem): StoreResult {
  const splitter = splitterFor(ctx, spec);
  const size = READ + splitter.maxBlock;
  if (!buffer || buffer.length < size) buffer = Buffer.allocUnsafe(size);
  const buf = buffer;
  const ids: Buffer[] = [];
  let fd: number;
  try {
    fd = fs.openSync(item.path, 'r');
  } catch (err) {
    return { ids: new Uint8Array(0), bytesRead: 0, error: (err as Error).message };
  }
  let bytesRead = 0;
  try {
    let pos = item.start;
    let carry = 0;
    for (;;) {
      const want = item.end === null ? READ : Math.min(READ, item.end - pos);
      const n = want > 0 ? readSource(fd, buf, carry, want, pos) : 0;
      pos += n;
      bytesRead += n;
      const final = n < want || want === 0 || (item.end !== null && pos >= item.end);
      const data = buf.subarray(0, carry + n);
      const cuts = splitter.cut(data, final);
      let start = 0;
      for (const end of cuts) {
        const block = data.subarray(start, end);
        const id = blobId(ctx.keys, block);
        ids.push(id);
        if (!ctx.has(id)) ctx.write(id, BlobType.data, seal(ctx.keys, id, BlobType.data, block, { level: ctx.level }), block.length);
        start = end;
      }
      carry = data.length - start;
      if (carry > 0) buf.copyWithin(0, start, data.length);
      if (final) break;
    }
  } catch (err) {
    // Only the source failing is this file's problem; a pack write failing fails the backup.
    if (!(err instanceof SourceReadError)) throw err;
    return { ids: new Uint8Array(0), bytesRead, error: err.message };
  } finally {
    fs.closeSync(fd);
  }
  const out = new Uint8Array(ids.length * BLOB_ID_BYTES);
  ids.forEach((id, i) => out.set(id, i * BLOB_ID_BYTES));
  return { ids: out, bytesRead, error: null };
}
