import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { CorruptIndexError } from '../errors/errors.ts';
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
const ENTRY_BYTES = 1 + BLOB_ID_BYTES + 4 + 4;
const FOOTER_BYTES = 4 + 4 + MAGIC.length;

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

/** Coalesces appends into large writes; one writer owns one pack file. */
export class PackWriter {
  readonly name: string;
  readonly entries: PackEntry[] = [];
  #file: fsp.FileHandle;
  #final: string;
  #tmp: string;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #size = 0;
  #flushing: Promise<void> = Promise.resolve();

  private constructor(name: string, file: fsp.FileHandle, tmp: string, final: string) {
    this.name = name;
    this.#file = file;
    this.#tmp = tmp;
    this.#final = final;
  }

  static async create(repoDir: string): Promise<PackWriter> {
    const name = newPackName();
    const final = packPath(repoDir, name);
    await fsp.mkdir(path.dirname(final), { recursive: true });
    const tmp = `${final}.tmp`;
    return new PackWriter(name, await fsp.open(tmp, 'wx', 0o600), tmp, final);
  }

  /** Bytes the pack holds so far, trailer excluded. */
  get size(): number {
    return this.#size;
  }

  append(id: BlobId, type: BlobType, stored: Buffer, rawLength: number): PackEntry {
    const entry = { id, type, offset: this.#size, length: stored.length, rawLength };
    this.entries.push(entry);
    this.#pending.push(stored);
    this.#pendingBytes += stored.length;
    this.#size += stored.length;
    if (this.#pendingBytes >= 1 << 20) this.#flush();
    return entry;
  }

  #flush(): void {
    const bufs = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#flushing = this.#flushing.then(() => writeAll(this.#file, bufs));
  }

  /** Writes the trailer, fsyncs, and moves the pack into place. Only then may the index name it. */
  async finish(): Promise<{ name: string; size: number; entries: PackEntry[] }> {
    this.#pending.push(encodeTrailer(this.entries));
    this.#flush();
    await this.#flushing;
    await this.#file.sync();
    const size = (await this.#file.stat()).size;
    await this.#file.close();
    await fsp.rename(this.#tmp, this.#final);
    await syncDir(path.dirname(this.#final));
    return { name: this.name, size, entries: this.entries };
  }

  async abort(): Promise<void> {
    await this.#flushing.catch(() => {});
    await this.#file.close().catch(() => {});
    await fsp.rm(this.#tmp, { force: true });
  }
}

async function writeAll(file: fsp.FileHandle, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    let { bytesWritten } = await file.writev(rest);
    const next: Buffer[] = [];
    for (const b of rest) {
      if (bytesWritten >= b.length) bytesWritten -= b.length;
      else {
        next.push(b.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}

export async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const fd = await fsp.open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
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
    if (type !== BT.data && type !== BT.tree) throw bad(`blob ${i} has unknown type ${type}`);
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
