import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { CorruptIndexError, noSpace } from '../errors/errors.ts';
import { faultPoint } from '../util/fault.ts';
import { type BlobId, type BlobType, BLOB_ID_BYTES, BlobType as BT } from './ids.ts';

/**
 * A pack is blobs back to back, then a trailer that lists them, so the index
 * can be rebuilt from packs alone. The trailer holds only what a peer without
 * the password may see (HMAC ids, types, lengths) and a CRC, so a replica can
 * write and check packs it cannot decrypt; each blob authenticates itself.
 *
 *   blob 0 | blob 1 | ... | entries (41 bytes each) | count u32 | crc32 u32 | "LBP1"
 *   entry: type u8 | id [32] | length u32 | raw length u32
 */
const MAGIC = Buffer.from('LBP1');
export const TRAILER_ENTRY_BYTES = 1 + BLOB_ID_BYTES + 4 + 4;
export const TRAILER_FOOTER_BYTES = 4 + 4 + MAGIC.length;
const ENTRY_BYTES = TRAILER_ENTRY_BYTES;
const FOOTER_BYTES = TRAILER_FOOTER_BYTES;
const STAGE_BYTES = 1 << 20;

export interface PackEntry {
  readonly id: BlobId;
  readonly type: BlobType;
  readonly offset: number;
  readonly length: number;
  readonly rawLength: number;
}

export function packPath(repoDir: string, name: string): string {
  return path.join(repoDir, 'packs', name.slice(0, 2), name);
}

export function newPackName(): string {
  return crypto.randomBytes(16).toString('hex');
}

/**
 * Appends sealed blobs to a new pack through a 1 MiB staging buffer. Synchronous:
 * it runs on the worker threads, where blocking is the point, and for the few
 * tree blobs the main thread writes.
 */
export class PackWriter {
  readonly name: string;
  readonly entries: PackEntry[] = [];
  readonly #fd: number;
  readonly #final: string;
  readonly #tmp: string;
  readonly #stage = Buffer.allocUnsafe(STAGE_BYTES);
  #staged = 0;
  #size = 0;

  constructor(repoDir: string) {
    this.name = newPackName();
    this.#final = packPath(repoDir, this.name);
    this.#tmp = `${this.#final}.tmp`;
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

  append(id: BlobId, type: BlobType, stored: Uint8Array, rawLength: number): PackEntry {
    const entry = { id, type, offset: this.#size, length: stored.byteLength, rawLength };
    this.entries.push(entry);
    this.#write(stored);
    this.#size += stored.byteLength;
    faultPoint('pack-blob');
    return entry;
  }

  #write(data: Uint8Array): void {
    if (this.#staged + data.byteLength > STAGE_BYTES) this.#flush();
    if (data.byteLength >= STAGE_BYTES) this.#io(() => writeAllSync(this.#fd, data));
    else {
      this.#stage.set(data, this.#staged);
      this.#staged += data.byteLength;
    }
  }

  #flush(): void {
    if (this.#staged === 0) return;
    this.#io(() => writeAllSync(this.#fd, this.#stage.subarray(0, this.#staged)));
    this.#staged = 0;
  }

  /** Writes the trailer, fsyncs, and moves the pack into place. Only then may the index name it. */
  finish(): FinishedPack {
    this.#write(encodeTrailer(this.entries));
    this.#flush();
    const size = this.#io(() => {
      fs.fsyncSync(this.#fd);
      return fs.fstatSync(this.#fd).size;
    });
    fs.closeSync(this.#fd);
    faultPoint('pack-synced');
    this.#io(() => {
      fs.renameSync(this.#tmp, this.#final);
      syncDir(path.dirname(this.#final));
    });
    faultPoint('pack-finished');
    return { name: this.name, size, entries: this.entries };
  }

  /** finish() for the main thread of a daemon: the fsyncs, which take tens of milliseconds, do not hold the event loop. */
  async finishAsync(): Promise<FinishedPack> {
    this.#write(encodeTrailer(this.entries));
    this.#flush();
    const size = await this.#ioAsync(async () => {
      await new Promise<void>((resolve, reject) => fs.fsync(this.#fd, (err) => (err ? reject(err) : resolve())));
      return fs.fstatSync(this.#fd).size;
    });
    fs.closeSync(this.#fd);
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

  abort(): void {
    try {
      fs.closeSync(this.#fd);
    } catch {
      // already closed by finish()
    }
    fs.rmSync(this.#tmp, { force: true });
  }
}

export interface FinishedPack {
  readonly name: string;
  readonly size: number;
  readonly entries: readonly PackEntry[];
}

function writeAllSync(fd: number, data: Uint8Array): void {
  let o = 0;
  while (o < data.byteLength) o += fs.writeSync(fd, data, o, data.byteLength - o);
}

export function syncDir(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function encodeTrailer(entries: readonly PackEntry[]): Buffer {
  const out = Buffer.alloc(entries.length * ENTRY_BYTES + FOOTER_BYTES);
  let o = 0;
  for (const e of entries) {
    out[o] = e.type;
    out.set(e.id, o + 1);
    out.writeUInt32LE(e.length, o + 1 + BLOB_ID_BYTES);
    out.writeUInt32LE(e.rawLength, o + 5 + BLOB_ID_BYTES);
    o += ENTRY_BYTES;
  }
  out.writeUInt32LE(entries.length, o);
  out.writeUInt32LE(zlib.crc32(out.subarray(0, o)), o + 4);
  MAGIC.copy(out, o + 8);
  return out;
}

/** Parses and checks a pack's trailer; any inconsistency is a CorruptIndexError naming the pack. */
export function decodeTrailer(name: string, fileSize: number, tail: (offset: number, length: number) => Buffer): PackEntry[] {
  const bad = (why: string) => new CorruptIndexError(`pack ${name} is damaged: ${why}`);
  if (fileSize < FOOTER_BYTES) throw bad('too short for a trailer');
  const footer = tail(fileSize - FOOTER_BYTES, FOOTER_BYTES);
  if (!footer.subarray(8).equals(MAGIC)) throw bad('trailer magic missing');
  const count = footer.readUInt32LE(0);
  const trailerBytes = count * ENTRY_BYTES;
  if (trailerBytes + FOOTER_BYTES > fileSize) throw bad(`trailer claims ${count} blobs`);
  const table = tail(fileSize - FOOTER_BYTES - trailerBytes, trailerBytes);
  if (zlib.crc32(table) !== footer.readUInt32LE(4)) throw bad('trailer checksum mismatch');
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const o = i * ENTRY_BYTES;
    const type = table[o]!;
    if (!Object.values(BT).includes(type as BlobType)) throw bad(`blob ${i} has unknown type ${type}`);
    const length = table.readUInt32LE(o + 1 + BLOB_ID_BYTES);
    entries.push({
      type: type as BlobType,
      id: Buffer.from(table.subarray(o + 1, o + 1 + BLOB_ID_BYTES)) as BlobId,
      offset,
      length,
      rawLength: table.readUInt32LE(o + 5 + BLOB_ID_BYTES),
    });
    offset += length;
  }
  if (offset !== fileSize - FOOTER_BYTES - trailerBytes) throw bad('blob lengths do not add up to the pack size');
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

/** Names of pack files on disk (temporary files included, with their suffix). */
export async function listPackFiles(repoDir: string): Promise<string[]> {
  const root = path.join(repoDir, 'packs');
  const out: string[] = [];
  for (const sub of await fsp.readdir(root).catch(() => [])) {
    for (const name of await fsp.readdir(path.join(root, sub)).catch(() => [])) out.push(name);
  }
  return out;
}
