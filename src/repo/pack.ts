import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { CorruptIndexError, noSpace } from '../errors/errors.ts';
import { faultPoint } from '../util/fault.ts';
import { type BlobId, type BlobType, BLOB_ID_BYTES, BlobType as BT } from './ids.ts';
import { syncDir } from '../util/durable.ts';

/**
 * A pack is blobs back to back, then a trailer that lists them, so the index
 * can be rebuilt from packs alone. The trailer holds only what a peer without
 * the password may see (HMAC ids, types, lengths, and which blob ids each
 * tree and list blob names) and a CRC, so a replica can write, check and
 * prune packs it cannot decrypt; each blob authenticates itself.
 *
 *   blob 0 | ... | entries (41 B each) | edges (36 B each) | edge count u32 | count u32 | crc32 u32 | "LBP2"
 *   entry: type u8 | id [32] | length u32 | raw length u32
 *   edge:  entry index u32 | child id [32]       (crc32 covers entries, edges and the edge count)
 *
 * In an LBP2 pack the edges of a tree or list entry are all it names, so
 * what a snapshot needs can be marked from trailers alone. Packs of the first
 * format ("LBP1": no edges, no edge count) are still read; their trees' edges
 * are unknown.
 */
const MAGIC = Buffer.from('LBP2');
const MAGIC_V1 = Buffer.from('LBP1');
export const TRAILER_ENTRY_BYTES = 1 + BLOB_ID_BYTES + 4 + 4;
export const TRAILER_EDGE_BYTES = 4 + BLOB_ID_BYTES;
export const TRAILER_FOOTER_BYTES = 4 + 4 + 4 + MAGIC.length;
const V1_FOOTER_BYTES = 4 + 4 + MAGIC_V1.length;
const ENTRY_BYTES = TRAILER_ENTRY_BYTES;
const EDGE_BYTES = TRAILER_EDGE_BYTES;
/** A batch of blobs is written once it holds this many bytes, or this many blobs (well under IOV_MAX). */
const BATCH_BYTES = 1 << 20;
const BATCH_BUFFERS = 256;
/** What a data or meta blob names. */
export const NO_REFS: readonly BlobId[] = Object.freeze([]);

export interface PackEntry {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
  /** The blob ids a tree or list names; undefined when unknown (a pack of the first format). */
  readonly refs?: readonly BlobId[];
}

export function packPath(repoDir: string, name: string): string {
  return path.join(repoDir, 'packs', name.slice(0, 2), name);
}

export function newPackName(): string {
  return crypto.randomBytes(16).toString('hex');
}

/**
 * Appends sealed blobs to a new pack. Blobs are held by reference and written
 * together, about 1 MiB at a time, with one writev: no copy of the bytes. By
 * default the writes are synchronous: on the worker threads blocking is the
 * point, and the main thread writes only a few tree blobs. A daemon taking a
 * stream of blobs on its event loop (a replica receiving a push) writes
 * behind instead: each batch goes to the thread pool while appending goes on,
 * so the loop never waits on the disk; it bounds what is queued with drain()
 * and ends with finishAsync().
 */
export class PackWriter {
  readonly name: string;
  readonly entries: PackEntry[] = [];
  readonly #fd: number;
  #fdOpen = true;
  readonly #final: string;
  readonly #tmp: string;
  readonly #behind: boolean;
  /** Blobs appended and not handed to the file yet. */
  #batch: Uint8Array[] = [];
  #batched = 0;
  #size = 0;
  /** Where the next write goes: bytes handed to the file so far. */
  #position = 0;
  /** Write behind: writes queued on the thread pool (none ever rejects), the bytes they hold, the first failure. */
  readonly #writes = new Set<Promise<void>>();
  #queued = 0;
  #failure: unknown;

  constructor(repoDir: string, opts: { writeBehind?: boolean } = {}) {
    this.name = newPackName();
    this.#final = packPath(repoDir, this.name);
    this.#tmp = `${this.#final}.tmp`;
    this.#behind = opts.writeBehind ?? false;
    this.#fd = this.#io(() => {
      fs.mkdirSync(path.dirname(this.#final), { recursive: true, mode: 0o700 });
      return fs.openSync(this.#tmp, 'wx', 0o600);
    });
  }

  /** A full disk is a NoSpaceError naming the pack; any other failure passes as it is. */
  #io<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw noSpace(err, `pack ${this.name}`);
    }
  }

  /** Bytes the pack holds so far, trailer excluded. */
  get size(): number {
    return this.#size;
  }

  /**
   * `stored` is held by reference: the caller must not change it until the
   * pack is finished (or, writing behind, drained). `refs`: every blob id a
   * tree or list blob names (the trailer's promise).
   */
  append(id: BlobId, type: BlobType, stored: Uint8Array, rawLength: number, refs: readonly BlobId[] = NO_REFS): PackEntry {
    if (this.#failure !== undefined) throw this.#failure;
    const entry = { id, type, offset: this.#size, length: stored.byteLength, rawLength, refs };
    this.entries.push(entry);
    this.#write(stored);
    this.#size += stored.byteLength;
    faultPoint('pack-blob');
    return entry;
  }

  #write(data: Uint8Array): void {
    this.#batch.push(data);
    this.#batched += data.byteLength;
    if (this.#batched >= BATCH_BYTES || this.#batch.length >= BATCH_BUFFERS) this.#flush();
  }

  /** Hands the batch to the file, after what was handed before: now, or queued on the thread pool (a failure kept for drain). */
  #flush(): void {
    const batch = this.#batch;
    const bytes = this.#batched;
    if (bytes === 0) return;
    this.#batch = [];
    this.#batched = 0;
    const position = this.#position;
    this.#position += bytes;
    if (!this.#behind) {
      this.#io(() => {
        for (let done = 0; done < bytes; ) done += fs.writevSync(this.#fd, unwritten(batch, done), position + done);
      });
      return;
    }
    this.#queued += bytes;
    const write: Promise<void> = writevAll(this.#fd, batch, position)
      .catch((err: unknown) => {
        this.#failure ??= noSpace(err, `pack ${this.name}`);
      })
      .finally(() => {
        this.#queued -= bytes;
        this.#writes.delete(write);
      });
    this.#writes.add(write);
  }

  /** Write behind: waits until at most `maxQueued` bytes are still queued; throws what a write failed with. */
  async drain(maxQueued = 0): Promise<void> {
    while (this.#queued > maxQueued) await Promise.race(this.#writes);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Writes the trailer, fsyncs, and moves the pack into place. Only then may the index name it. */
  finish(): FinishedPack {
    if (this.#behind) throw new Error(`pack ${this.name} writes behind: it must end with finishAsync()`);
    this.#write(encodeTrailer(this.entries));
    this.#flush();
    const size = this.#io(() => {
      fs.fsyncSync(this.#fd);
      return fs.fstatSync(this.#fd).size;
    });
    this.#closeFd();
    faultPoint('pack-synced');
    this.#io(() => {
      fs.renameSync(this.#tmp, this.#final);
      syncDir(path.dirname(this.#final));
    });
    faultPoint('pack-finished');
    return { name: this.name, size, entries: this.entries };
  }

  /** finish() for the main thread of a daemon: the writes and fsyncs, which take tens of milliseconds, do not hold the event loop. */
  async finishAsync(): Promise<FinishedPack> {
    if (this.#failure !== undefined) throw this.#failure;
    this.#write(encodeTrailer(this.entries));
    this.#flush();
    await this.drain();
    const size = await this.#ioAsync(async () => {
      await new Promise<void>((resolve, reject) => fs.fsync(this.#fd, (err) => (err ? reject(err) : resolve())));
      return fs.fstatSync(this.#fd).size;
    });
    this.#closeFd();
    faultPoint('pack-synced');
    await this.#ioAsync(async () => {
      await fsp.rename(this.#tmp, this.#final);
      if (process.platform === 'win32') return;
      const dir = await fsp.open(path.dirname(this.#final), 'r');
      await dir.sync().finally(() => dir.close());
    });
    faultPoint('pack-finished');
    return { name: this.name, size, entries: this.entries };
  }

  async #ioAsync<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw noSpace(err, `pack ${this.name}`);
    }
  }

  /**
   * Drops the pack (once finished, nothing: the file is in place). Resolves
   * once the file is gone: at return for a writer that writes synchronously;
   * one that writes behind first lets its queued writes end, as its
   * descriptor must not be closed (and its number reused) under them.
   */
  abort(): Promise<void> {
    if (this.#writes.size > 0) return this.drain().then(() => this.abort(), () => this.abort());
    this.#closeFd();
    fs.rmSync(this.#tmp, { force: true });
    return Promise.resolve();
  }

  /** Closes the descriptor once: closing a number twice could close another file that got it meanwhile. */
  #closeFd(): void {
    if (!this.#fdOpen) return;
    this.#fdOpen = false;
    fs.closeSync(this.#fd);
  }
}

export interface FinishedPack {
  readonly name: string;
  readonly size: number;
  readonly entries: readonly PackEntry[];
}

async function writevAll(fd: number, batch: readonly Uint8Array[], position: number): Promise<void> {
  const bytes = batch.reduce((n, b) => n + b.byteLength, 0);
  for (let done = 0; done < bytes; ) {
    done += await new Promise<number>((resolve, reject) => fs.writev(fd, unwritten(batch, done), position + done, (err, n) => (err ? reject(err) : resolve(n))));
  }
}

/** What of `batch` is left after its first `done` bytes were written (a write may be short). */
function unwritten(batch: readonly Uint8Array[], done: number): readonly Uint8Array[] {
  if (done === 0) return batch;
  let i = 0;
  while (done >= batch[i]!.byteLength) done -= batch[i++]!.byteLength;
  return [batch[i]!.subarray(done), ...batch.slice(i + 1)];
}

export function encodeTrailer(entries: readonly PackEntry[]): Buffer {
  const edges = entries.reduce((n, e) => n + (e.refs?.length ?? 0), 0);
  const out = Buffer.alloc(entries.length * ENTRY_BYTES + edges * EDGE_BYTES + TRAILER_FOOTER_BYTES);
  let o = 0;
  for (const e of entries) {
    out[o] = e.type;
    out.set(e.id, o + 1);
    out.writeUInt32LE(e.length, o + 1 + BLOB_ID_BYTES);
    out.writeUInt32LE(e.rawLength, o + 5 + BLOB_ID_BYTES);
    o += ENTRY_BYTES;
  }
  entries.forEach((e, i) => {
    for (const child of e.refs ?? NO_REFS) {
      out.writeUInt32LE(i, o);
      out.set(child, o + 4);
      o += EDGE_BYTES;
    }
  });
  out.writeUInt32LE(edges, o);
  out.writeUInt32LE(entries.length, o + 4);
  out.writeUInt32LE(zlib.crc32(out.subarray(0, o + 4)), o + 8);
  MAGIC.copy(out, o + 12);
  return out;
}

interface Footer {
  readonly v1: boolean;
  readonly footer: Buffer;
  readonly count: number;
  readonly edgeCount: number;
  readonly tableBytes: number;
}

/** Reads and checks the footer through `tail`; the table's size follows from it. */
function readFooter(name: string, fileSize: number, tail: (offset: number, length: number) => Buffer): Footer {
  const bad = (why: string) => new CorruptIndexError(`pack ${name} is damaged: ${why}`);
  if (fileSize < V1_FOOTER_BYTES) throw bad('too short for a trailer');
  const magic = tail(fileSize - 4, 4);
  const v1 = magic.equals(MAGIC_V1);
  if (!v1 && !magic.equals(MAGIC)) throw bad('trailer magic missing');
  const footerBytes = v1 ? V1_FOOTER_BYTES : TRAILER_FOOTER_BYTES;
  if (fileSize < footerBytes) throw bad('too short for a trailer');
  const footer = tail(fileSize - footerBytes, footerBytes);
  const edgeCount = v1 ? 0 : footer.readUInt32LE(0);
  const count = footer.readUInt32LE(footerBytes - 12);
  const tableBytes = count * ENTRY_BYTES + edgeCount * EDGE_BYTES;
  if (tableBytes + footerBytes > fileSize) throw bad(`trailer claims ${count} blobs and ${edgeCount} edges`);
  return { v1, footer, count, edgeCount, tableBytes };
}

/** How many bytes at the end of a pack its trailer takes, from its last bytes (at least the footer's). */
function trailerSize(name: string, fileSize: number, last: Buffer): number {
  const base = fileSize - last.length;
  const f = readFooter(name, fileSize, (offset, length) => last.subarray(offset - base, offset - base + length));
  return f.tableBytes + f.footer.length;
}

/** Parses and checks a pack's trailer, either format; any inconsistency is a CorruptIndexError naming the pack. */
export function decodeTrailer(name: string, fileSize: number, tail: (offset: number, length: number) => Buffer): PackEntry[] {
  const bad = (why: string) => new CorruptIndexError(`pack ${name} is damaged: ${why}`);
  const { v1, footer, count, edgeCount, tableBytes } = readFooter(name, fileSize, tail);
  const footerBytes = footer.length;
  const table = tail(fileSize - footerBytes - tableBytes, tableBytes);
  const crc = v1 ? zlib.crc32(table) : zlib.crc32(footer.subarray(0, 4), zlib.crc32(table));
  if (crc !== footer.readUInt32LE(footerBytes - 8)) throw bad('trailer checksum mismatch');
  // by entry index; an entry of an LBP2 pack without edges names nothing
  const refs = new Map<number, BlobId[]>();
  for (let k = 0, o = count * ENTRY_BYTES; k < edgeCount; k++, o += EDGE_BYTES) {
    const parent = table.readUInt32LE(o);
    if (parent >= count) throw bad(`edge ${k} names blob ${parent} of ${count}`);
    const child = Buffer.from(table.subarray(o + 4, o + EDGE_BYTES)) as BlobId;
    const list = refs.get(parent);
    if (list) list.push(child);
    else refs.set(parent, [child]);
  }
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const o = i * ENTRY_BYTES;
    const type = table[o]!;
    if (!Object.values(BT).includes(type as BlobType)) throw bad(`blob ${i} has unknown type ${type}`);
    const mine = refs.get(i);
    if (mine && type !== BT.tree && type !== BT.list) throw bad(`blob ${i} of type ${type} names other blobs`);
    const length = table.readUInt32LE(o + 1 + BLOB_ID_BYTES);
    entries.push({
      type: type as BlobType,
      id: Buffer.from(table.subarray(o + 1, o + 1 + BLOB_ID_BYTES)) as BlobId,
      offset,
      length,
      rawLength: table.readUInt32LE(o + 5 + BLOB_ID_BYTES),
      ...(v1 ? {} : { refs: mine ?? NO_REFS }),
    });
    offset += length;
  }
  if (offset !== fileSize - footerBytes - tableBytes) throw bad('blob lengths do not add up to the pack size');
  return entries;
}

/** Entries of a pack another thread wrote, from the trailer it reported. */
export function entriesFromTrailer(name: string, size: number, trailer: Uint8Array): PackEntry[] {
  const t = Buffer.from(trailer.buffer, trailer.byteOffset, trailer.byteLength);
  const dataBytes = size - t.length;
  return decodeTrailer(name, size, (offset, length) => {
    if (offset < dataBytes || offset + length > size) throw new CorruptIndexError(`pack ${name} reported a trailer that does not match its size`);
    return t.subarray(offset - dataBytes, offset - dataBytes + length);
  });
}

export function readPackTrailer(file: string, name: string): PackEntry[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    return decodeTrailer(name, size, (offset, length) => {
      const b = Buffer.alloc(length);
      fs.readSync(fd, b, 0, length, offset);
      return b;
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** readPackTrailer off the event loop: for a daemon reading the trailers of every pack (prune, verify, an index rebuild). */
export async function readPackTrailerAsync(file: string, name: string): Promise<{ size: number; entries: PackEntry[] }> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    // one read takes a data pack's whole trailer (~10 KiB); a larger one takes a second
    let span = Math.min(size, 64 * 1024);
    let tail = Buffer.allocUnsafe(span);
    await fh.read(tail, 0, span, size - span);
    const need = trailerSize(name, size, tail);
    if (need > span) {
      span = need;
      tail = Buffer.allocUnsafe(span);
      await fh.read(tail, 0, span, size - span);
    }
    const base = size - span;
    return { size, entries: decodeTrailer(name, size, (offset, length) => tail.subarray(offset - base, offset - base + length)) };
  } finally {
    await fh.close();
  }
}

/** Names of pack files on disk (temporary files included, with their suffix). */
export async function listPackFiles(repoDir: string): Promise<string[]> {
  const root = path.join(repoDir, 'packs');
  const out: string[] = [];
  for (const sub of await fsp.readdir(root).catch(() => [])) {
    for (const name of await fsp.readdir(path.join(root, sub)).catch(() => [])) out.push(name);
  }
  return out;
}
