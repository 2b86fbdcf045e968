import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CorruptIndexError, NoSpaceError } from '../errors/errors.ts';
import { type BlobId, BlobType } from './ids.ts';
import { decodeTrailer, encodeTrailer, NO_REFS, type PackEntry, PackWriter, packPath, readPackTrailer, readPackTrailerAsync } from './pack.ts';
import { TempDirs } from './testing/fixture.ts';

const NAME = 'ab0123456789abcdef0123456789abcd';

/** A whole pack in memory: the blobs' bytes back to back, then the trailer. */
function buildPack(blobs: { type: BlobType; length: number; rawLength: number; refs?: number }[]): { file: Buffer; entries: PackEntry[] } {
  const entries: PackEntry[] = [];
  let offset = 0;
  for (const b of blobs) {
    const refs = Array.from({ length: b.type === BlobType.data ? 0 : (b.refs ?? 0) }, () => crypto.randomBytes(32) as BlobId);
    entries.push({ id: crypto.randomBytes(32) as BlobId, type: b.type, offset, length: b.length, rawLength: b.rawLength, refs: refs.length > 0 ? refs : NO_REFS });
    offset += b.length;
  }
  return { file: Buffer.concat([crypto.randomBytes(offset), encodeTrailer(entries)]), entries };
}

const decode = (file: Buffer, name = NAME) =>
  decodeTrailer(name, file.length, (offset, length) => Buffer.from(file.subarray(offset, offset + length)));

function expectCorrupt(fn: () => unknown, why?: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CorruptIndexError);
  expect((err as Error).message).toContain(`pack ${NAME}`);
  if (why) expect((err as Error).message).toMatch(why);
}

const blobArb = fc.record({
  type: fc.constantFrom(BlobType.data, BlobType.tree, BlobType.list),
  length: fc.integer({ min: 29, max: 3000 }),
  rawLength: fc.integer({ min: 0, max: 0xffffffff }),
  refs: fc.integer({ min: 0, max: 5 }),
});

/** A pack of the first format (LBP1: entries, count, crc, magic; no edges), as older versions wrote it. */
function buildV1Pack(blobs: { type: BlobType; length: number; rawLength: number }[]): { file: Buffer; entries: PackEntry[] } {
  const entries: PackEntry[] = [];
  const table: Buffer[] = [];
  let offset = 0;
  for (const b of blobs) {
    const id = crypto.randomBytes(32) as BlobId;
    entries.push({ id, type: b.type, offset, length: b.length, rawLength: b.rawLength });
    const e = Buffer.alloc(41);
    e[0] = b.type;
    id.copy(e, 1);
    e.writeUInt32LE(b.length, 33);
    e.writeUInt32LE(b.rawLength, 37);
    table.push(e);
    offset += b.length;
  }
  const t = Buffer.concat(table);
  const footer = Buffer.alloc(12);
  footer.writeUInt32LE(blobs.length, 0);
  footer.writeUInt32LE(zlib.crc32(t), 4);
  footer.write('LBP1', 8);
  return { file: Buffer.concat([crypto.randomBytes(offset), t, footer]), entries };
}

describe('pack trailer', () => {
  it('decodes what it encodes, offsets included (property)', () => {
    fc.assert(
      fc.property(fc.array(blobArb, { maxLength: 40 }), (blobs) => {
        const { file, entries } = buildPack(blobs);
        const back = decode(file);
        expect(back.map((e) => ({ ...e, id: e.id.toString('hex') }))).toEqual(entries.map((e) => ({ ...e, id: e.id.toString('hex') })));
      }),
      { numRuns: 100 },
    );
  });

  it('reads packs of the first format, whose trees name nothing it can tell (refs unknown)', () => {
    const { file, entries } = buildV1Pack([
      { type: BlobType.data, length: 100, rawLength: 90 },
      { type: BlobType.tree, length: 50, rawLength: 300 },
    ]);
    const back = decode(file);
    expect(back.map((e) => ({ ...e, id: e.id.toString('hex') }))).toEqual(entries.map((e) => ({ ...e, id: e.id.toString('hex') })));
    expect(back.every((e) => e.refs === undefined)).toBe(true);
  });

  it('keeps what each tree and list names, and refuses a data blob said to name anything', () => {
    const { file, entries } = buildPack([
      { type: BlobType.tree, length: 100, rawLength: 90, refs: 3 },
      { type: BlobType.data, length: 50, rawLength: 50 },
      { type: BlobType.list, length: 70, rawLength: 70, refs: 1 },
    ]);
    const back = decode(file);
    expect(back.map((e) => e.refs!.map((r) => r.toString('hex')))).toEqual(entries.map((e) => e.refs!.map((r) => r.toString('hex'))));
    const lying = encodeTrailer([{ ...entries[1]!, offset: 0, refs: [crypto.randomBytes(32) as BlobId] }]);
    expectCorrupt(() => decode(Buffer.concat([file.subarray(100, 150), lying])), /names other blobs/);
  });

  it('refuses any single flipped byte in the trailer, naming the pack', () => {
    const { file } = buildPack([
      { type: BlobType.data, length: 100, rawLength: 90 },
      { type: BlobType.tree, length: 50, rawLength: 300 },
      { type: BlobType.data, length: 70, rawLength: 70 },
    ]);
    for (let i = 220; i < file.length; i++) {
      const bad = Buffer.from(file);
      bad[i]! ^= 0x10;
      expectCorrupt(() => decode(bad));
    }
  });

  it('refuses every truncation of the file', () => {
    const { file } = buildPack([
      { type: BlobType.data, length: 64, rawLength: 64 },
      { type: BlobType.data, length: 80, rawLength: 10 },
    ]);
    for (let n = 0; n < file.length; n++) expectCorrupt(() => decode(file.subarray(0, n)));
  });

  it('refuses a wrong magic, a short file, an impossible count, and lengths that do not add up', () => {
    const { file, entries } = buildPack([{ type: BlobType.data, length: 64, rawLength: 64 }]);
    const magic = Buffer.from(file);
    magic.write('LBPX', file.length - 4);
    expectCorrupt(() => decode(magic), /magic/);
    expectCorrupt(() => decode(Buffer.from('LBP1')), /too short/);
    const count = Buffer.from(file);
    count.writeUInt32LE(1_000_000, file.length - 12);
    expectCorrupt(() => decode(count), /claims/);
    // A consistent trailer (good CRC) whose lengths do not match the bytes before it.
    const extra = Buffer.concat([file.subarray(0, 64), Buffer.alloc(7), encodeTrailer(entries)]);
    expectCorrupt(() => decode(extra), /add up/);
    // A good CRC over an entry with an unknown type.
    const badType = encodeTrailer([{ ...entries[0]!, type: 7 as BlobType }]);
    expectCorrupt(() => decode(Buffer.concat([file.subarray(0, 64), badType])), /unknown type/);
  });

  it('decodes an empty pack', () => {
    expect(decode(encodeTrailer([]))).toEqual([]);
  });
});

describe('PackWriter', () => {
  const temp = new TempDirs();
  afterEach(() => temp.cleanup());

  it('writes blobs and trailer, then renames the pack into place; readPackTrailer agrees', async () => {
    const dir = await temp.make();
    const w = new PackWriter(dir);
    const blobs = [crypto.randomBytes(1000), crypto.randomBytes(3 << 20), crypto.randomBytes(5)];
    const ids = blobs.map(() => crypto.randomBytes(32) as BlobId);
    blobs.forEach((b, i) => w.append(ids[i]!, i === 2 ? BlobType.tree : BlobType.data, b, b.length * 2));
    expect(fs.existsSync(`${packPath(dir, w.name)}.tmp`)).toBe(true);
    expect(fs.existsSync(packPath(dir, w.name))).toBe(false);
    const done = w.finish();
    const file = packPath(dir, done.name);
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);
    expect((await fsp.stat(file)).size).toBe(done.size);
    const entries = readPackTrailer(file, done.name);
    expect(entries.map((e) => [e.id.toString('hex'), e.type, e.offset, e.length, e.rawLength])).toEqual(
      done.entries.map((e) => [e.id.toString('hex'), e.type, e.offset, e.length, e.rawLength]),
    );
    const bytes = await fsp.readFile(file);
    for (const [i, e] of entries.entries()) expect(bytes.subarray(e.offset, e.offset + e.length).equals(blobs[i]!)).toBe(true);
  });

  it('readPackTrailerAsync agrees, for a trailer in the last read and for one larger than it', async () => {
    const dir = await temp.make();
    for (const refs of [2, 3000]) {
      const w = new PackWriter(dir);
      w.append(crypto.randomBytes(32) as BlobId, BlobType.data, crypto.randomBytes(100_000), 100_000);
      w.append(crypto.randomBytes(32) as BlobId, BlobType.tree, crypto.randomBytes(300), 900, Array.from({ length: refs }, () => crypto.randomBytes(32) as BlobId));
      const done = w.finish();
      const file = packPath(dir, done.name);
      const read = await readPackTrailerAsync(file, done.name);
      expect(read.size).toBe(done.size);
      const show = (es: readonly PackEntry[]) => es.map((e) => [e.id.toString('hex'), e.type, e.offset, e.length, e.rawLength, e.refs!.map((r) => r.toString('hex'))]);
      expect(show(read.entries)).toEqual(show(done.entries));
      expect(show(readPackTrailer(file, done.name))).toEqual(show(done.entries));
    }
  });

  // Found by test/reliability/secrets.test.ts: the packs/xx directories were 0755.
  it('creates its directory 0700 and the pack 0600, whatever the umask leaves', async () => {
    const dir = await temp.make();
    const previous = process.umask(0o022);
    try {
      const done = new PackWriter(dir).finish();
      const file = packPath(dir, done.name);
      expect((await fsp.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
      expect((await fsp.stat(file)).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(previous);
    }
  });

  it('abort leaves no file behind', async () => {
    const dir = await temp.make();
    const w = new PackWriter(dir);
    w.append(crypto.randomBytes(32) as BlobId, BlobType.data, crypto.randomBytes(2 << 20), 1);
    w.abort();
    expect(await fsp.readdir(path.dirname(packPath(dir, w.name)))).toEqual([]);
  });

  it('writes the same pack behind, on the thread pool, as synchronously; drain bounds what is queued', async () => {
    const dir = await temp.make();
    // small and large blobs: batches end on the byte and on the blob count, and one blob is a batch alone
    const blobs = [...Array.from({ length: 600 }, (_, i) => crypto.randomBytes(29 + i * 7)), crypto.randomBytes(3 << 20), crypto.randomBytes(100)];
    const ids = blobs.map(() => crypto.randomBytes(32) as BlobId);
    const sync = new PackWriter(dir);
    const behind = new PackWriter(dir, { writeBehind: true });
    for (const [i, b] of blobs.entries()) {
      sync.append(ids[i]!, BlobType.data, b, b.length);
      behind.append(ids[i]!, BlobType.data, b, b.length);
      await behind.drain(1 << 20);
    }
    expect(() => behind.finish()).toThrow(/finishAsync/);
    const [a, b] = [sync.finish(), await behind.finishAsync()];
    expect(b.size).toBe(a.size);
    expect((await fsp.readFile(packPath(dir, b.name))).equals(await fsp.readFile(packPath(dir, a.name)))).toBe(true);
  });

  it('finishes a pack whose writes come back short, either way', async () => {
    const dir = await temp.make();
    // at most 1000 bytes of the first buffer a call, as a file system may
    const writevSync = fs.writevSync;
    const writev = fs.writev;
    vi.spyOn(fs, 'writevSync').mockImplementation((fd, buffers, position) => writevSync(fd, [(buffers[0] as Buffer).subarray(0, 1000)], position));
    vi.spyOn(fs, 'writev').mockImplementation(((fd: number, buffers: NodeJS.ArrayBufferView[], position: number, cb: (err: Error | null, n: number) => void) =>
      writev(fd, [(buffers[0] as Buffer).subarray(0, 1000)], position, cb)) as unknown as typeof fs.writev);
    try {
      const blobs = [crypto.randomBytes(2500), crypto.randomBytes(5), crypto.randomBytes(1 << 20)];
      const sync = new PackWriter(dir);
      const behind = new PackWriter(dir, { writeBehind: true });
      for (const b of blobs) for (const w of [sync, behind]) w.append(crypto.randomBytes(32) as BlobId, BlobType.data, b, b.length);
      for (const done of [sync.finish(), await behind.finishAsync()]) {
        const file = packPath(dir, done.name);
        expect(readPackTrailer(file, done.name).map((e) => e.length)).toEqual(blobs.map((b) => b.length));
        expect((await fsp.readFile(file)).subarray(0, 2505 + (1 << 20)).equals(Buffer.concat(blobs))).toBe(true);
      }
      // a call per 1000 bytes: the short writes were taken up where they stopped
      expect(vi.mocked(fs.writevSync).mock.calls.length).toBeGreaterThan(1000);
      expect(vi.mocked(fs.writev).mock.calls.length).toBeGreaterThan(1000);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('writing behind, a failed write is thrown by drain, append and finishAsync, and abort removes the file once queued writes end', async () => {
    const dir = await temp.make();
    const writes: (() => void)[] = [];
    vi.spyOn(fs, 'writev').mockImplementation(((_fd: number, _buffers: unknown, _position: number, cb: (err: Error | null, n: number) => void) =>
      writes.push(() => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), 0))) as unknown as typeof fs.writev);
    try {
      const w = new PackWriter(dir, { writeBehind: true });
      w.append(crypto.randomBytes(32) as BlobId, BlobType.data, crypto.randomBytes(2 << 20), 1);
      expect(writes).toHaveLength(1);
      const aborted = w.abort();
      // the write is still queued: the file stays (its descriptor open) until it ends
      expect(fs.existsSync(`${packPath(dir, w.name)}.tmp`)).toBe(true);
      writes.shift()!();
      await aborted;
      expect(await fsp.readdir(path.dirname(packPath(dir, w.name)))).toEqual([]);

      const v = new PackWriter(dir, { writeBehind: true });
      v.append(crypto.randomBytes(32) as BlobId, BlobType.data, crypto.randomBytes(2 << 20), 1);
      const drained = v.drain();
      writes.shift()!();
      await expect(drained).rejects.toBeInstanceOf(NoSpaceError);
      expect(() => v.append(crypto.randomBytes(32) as BlobId, BlobType.data, crypto.randomBytes(10), 1)).toThrow(NoSpaceError);
      await expect(v.finishAsync()).rejects.toBeInstanceOf(NoSpaceError);
      await v.abort();
      expect(await fsp.readdir(path.dirname(packPath(dir, v.name)))).toEqual([]);
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('readPackTrailer names the pack of a damaged file', async () => {
    const dir = await temp.make();
    const file = path.join(dir, NAME);
    const { file: bytes } = buildPack([{ type: BlobType.data, length: 64, rawLength: 64 }]);
    await fsp.writeFile(file, bytes.subarray(0, bytes.length - 1));
    expectCorrupt(() => readPackTrailer(file, NAME));
  });
});
