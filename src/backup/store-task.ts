import crypto from 'node:crypto';
import fs from 'node:fs';
import { blobId, seal } from '../repo/crypto.ts';
import { BLOB_ID_BYTES, BlobType } from '../repo/ids.ts';
import type { SplitterSpec } from '../repo/splitter-spec.ts';
import { makeSplitter, type Splitter } from '../repo/splitter.ts';
import { MiB } from '../util/units.ts';
import type { WorkerContext } from '../repo/worker-context.ts';
import { RangePrints } from './block-prints.ts';
import type { SeenFile, StoreItem, StoreResult } from './jobs.ts';

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

/** A file the walk saw may have become a FIFO by the time it is opened: O_NONBLOCK keeps the open from waiting for a writer. */
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** What differs between a descriptor's stat and what the walk saw, or null when nothing does. */
function difference(st: fs.BigIntStats, seen: SeenFile): string | null {
  if (st.ino !== seen.ino || st.dev !== seen.dev) return 'replaced by another file';
  if (st.size !== seen.size) return `size ${seen.size} became ${st.size}`;
  if (st.mtimeNs !== seen.mtimeNs) return 'modified';
  if (st.ctimeNs !== seen.ctimeNs) return 'its status changed';
  return null;
}

function statSource(fd: number): fs.BigIntStats {
  try {
    return fs.fstatSync(fd, { bigint: true });
  } catch (err) {
    throw new SourceReadError((err as Error).message);
  }
}

const NO_IDS = new Uint8Array(0);

/**
 * Runs on a worker: reads a file (or a block-aligned range of it), cuts it
 * into blocks, and seals and packs every block the repository lacks. Returns
 * the ids in order. A file that cannot be read is reported, not thrown, so one
 * unreadable file does not fail the batch it travels in.
 *
 * The read must be of the file the walk saw, as it saw it: the descriptor's
 * stat at open and again after the read must match the walk's lstat (inode,
 * device, size, mtime, ctime), and the range must not end early. Otherwise the
 * result says what changed and carries no ids: the blocks read may mix
 * versions of the file, and the main thread reads it again. Two fstats per
 * item, none per block; a file found changed at open is not read at all.
 */
export function storeItem(ctx: WorkerContext, spec: SplitterSpec, item: StoreItem): StoreResult {
  const splitter = splitterFor(ctx, spec);
  const size = READ + splitter.maxBlock;
  if (!buffer || buffer.length < size) buffer = Buffer.allocUnsafe(size);
  const buf = buffer;
  const ids: Uint8Array[] = [];
  let fd: number;
  try {
    fd = fs.openSync(item.path, OPEN_FLAGS);
  } catch (err) {
    // Gone since the walk saw it: a change; the read again finds out what is there now.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && item.seen) return { ids: NO_IDS, bytesRead: 0, error: null, changed: 'removed' };
    return { ids: NO_IDS, bytesRead: 0, error: (err as Error).message, changed: null };
  }
  let bytesRead = 0;
  const prints = item.prints && spec.kind === 'fixed' && item.end !== null ? new RangePrints({ start: item.start, end: item.end, block: spec.size, ...item.prints }) : undefined;
  const parentIds = item.prints?.ids;
  try {
    const checked = item.seen && !item.tolerant ? item.seen : undefined;
    const before = checked ? difference(statSource(fd), checked) : null;
    if (before !== null) return { ids: NO_IDS, bytesRead, error: null, changed: before };
    const last = item.end ?? Infinity;
    let pos = item.start;
    let carry = 0;
    for (;;) {
      const want = Math.min(READ, last - pos);
      let n = 0;
      while (n < want) {
        const got = readSource(fd, buf, carry + n, want - n, pos + n);
        if (got === 0) break;
        n += got;
      }
      bytesRead += n;
      if (n < want && item.end !== null) {
        if (!item.tolerant) return { ids: NO_IDS, bytesRead, error: null, changed: `ended at byte ${pos + n}, before ${item.end}` };
        buf.fill(0, carry + n, carry + want);
        n = want;
      }
      pos += n;
      const final = n < want || pos >= last;
      const data = buf.subarray(0, carry + n);
      const cuts = splitter.cut(data, final);
      let start = 0;
      for (const end of cuts) {
        const block = data.subarray(start, end);
        const at = pos - data.length + start;
        if (prints?.take(at, block) && parentIds) {
          const i = (at - item.start) / spec.size;
          ids.push(parentIds.subarray(i * BLOB_ID_BYTES, (i + 1) * BLOB_ID_BYTES));
        } else {
          const id = blobId(ctx.keys, block);
          ids.push(id);
          if (!ctx.has(id)) ctx.write(id, BlobType.data, seal(ctx.keys, id, BlobType.data, block, { level: ctx.level }), block.length);
        }
        start = end;
      }
      carry = data.length - start;
      if (carry > 0) buf.copyWithin(0, start, data.length);
      if (final) break;
    }
    const after = checked ? difference(statSource(fd), checked) : null;
    if (after !== null) return { ids: NO_IDS, bytesRead, error: null, changed: after };
  } catch (err) {
    // Only the source failing is this file's problem; a pack write failing fails the backup.
    if (!(err instanceof SourceReadError)) throw err;
    return { ids: NO_IDS, bytesRead, error: err.message, changed: null };
  } finally {
    fs.closeSync(fd);
  }
  const out = new Uint8Array(ids.length * BLOB_ID_BYTES);
  ids.forEach((id, i) => out.set(id, i * BLOB_ID_BYTES));
  return { ids: out, bytesRead, error: null, changed: null, ...(prints ? { hashes: prints.hashes } : {}) };
}
