/**
 * One conformance suite for every storage backend (restic's and kopia's
 * habit): what a repository relies on, run against each implementation.
 */
import crypto from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileExistsError, FileNotFoundError, InvalidFileNameError } from '../../errors/errors.ts';
import { type Backend, FILE_KINDS, type FileInfo, type FileKind } from '../backend.ts';

export interface BackendUnderTest {
  readonly backend: Backend;
  /** Another handle on the same files, as a second process would open them. */
  reopen(): Backend;
  cleanup(): Promise<void>;
}

const bytes = (n: number, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 0xff));
const packName = (seed: number) => crypto.createHash('sha256').update(`pack ${seed}`).digest('hex');

async function listed(b: Backend, kind: FileKind): Promise<FileInfo[]> {
  const out: FileInfo[] = [];
  for await (const f of b.list(kind)) out.push(f);
  return out.sort((x, y) => x.name.localeCompare(y.name));
}

export function backendConformance(name: string, open: () => Promise<BackendUnderTest>): void {
  describe(`${name} backend`, () => {
    let t: BackendUnderTest;
    let b: Backend;
    beforeEach(async () => {
      t = await open();
      b = t.backend;
    });
    afterEach(async () => {
      await t.cleanup();
    });

    it('reads back what was written, whole and by range, and says how large it is', async () => {
      const data = bytes(100_000, 3);
      await b.writeOnce('pack', packName(1), data);
      expect((await b.read('pack', packName(1))).equals(data)).toBe(true);
      expect((await b.read('pack', packName(1), { offset: 1000, length: 5000 })).equals(data.subarray(1000, 6000))).toBe(true);
      expect(await b.stat('pack', packName(1))).toEqual({ name: packName(1), size: 100_000 });
      expect(await t.reopen().stat('pack', packName(1))).toEqual({ name: packName(1), size: 100_000 });
    });

    it('reads fewer bytes of a range the file ends within, none past its end', async () => {
      await b.writeOnce('snapshot', 'short', bytes(10));
      expect((await b.read('snapshot', 'short', { offset: 6, length: 100 })).equals(bytes(10).subarray(6))).toBe(true);
      expect((await b.read('snapshot', 'short', { offset: 10, length: 5 })).length).toBe(0);
      expect((await b.read('snapshot', 'short', { offset: 500, length: 5 })).length).toBe(0);
      expect((await b.read('snapshot', 'short', { offset: 3, length: 0 })).length).toBe(0);
      await expect(b.read('snapshot', 'short', { offset: -1, length: 5 })).rejects.toThrow(RangeError);
      await expect(b.read('snapshot', 'short', { offset: 0.5, length: 5 })).rejects.toThrow(RangeError);
    });

    it('holds an empty file', async () => {
      await b.writeOnce('key', 'empty', new Uint8Array(0));
      expect((await b.read('key', 'empty')).length).toBe(0);
      expect(await listed(b, 'key')).toEqual([{ name: 'empty', size: 0 }]);
    });

    it('writes a name once: a second write fails and changes nothing', async () => {
      await b.writeOnce('key', 'k1', bytes(64, 1));
      await expect(b.writeOnce('key', 'k1', bytes(64, 2))).rejects.toBeInstanceOf(FileExistsError);
      await expect(t.reopen().writeOnce('key', 'k1', bytes(10, 3))).rejects.toBeInstanceOf(FileExistsError);
      expect((await b.read('key', 'k1')).equals(bytes(64, 1))).toBe(true);
    });

    it('lets one of many racing writers of a name win whole', async () => {
      const writers = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? b : t.reopen()).writeOnce('pack', packName(7), bytes(200_000 + i, i)));
      const results = await Promise.allSettled(writers);
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(FileExistsError);
      expect((await b.read('pack', packName(7))).equals(bytes(200_000 + won[0]!, won[0]!))).toBe(true);
      expect(await listed(b, 'pack')).toEqual([{ name: packName(7), size: 200_000 + won[0]! }]);
    });

    it('keeps what it was given, not the caller\'s buffer, and hands out copies', async () => {
      const data = bytes(32, 5);
      await b.writeOnce('snapshot', 'mine', data);
      data.fill(0);
      const first = await b.read('snapshot', 'mine');
      first.fill(1);
      expect((await b.read('snapshot', 'mine')).equals(bytes(32, 5))).toBe(true);
    });

    it('fails to read, and stats as absent, a file that does not exist', async () => {
      await expect(b.read('pack', packName(2))).rejects.toBeInstanceOf(FileNotFoundError);
      expect(await b.stat('pack', packName(2))).toBeUndefined();
    });

    it('keeps the kinds apart', async () => {
      for (const [i, kind] of FILE_KINDS.entries()) await b.writeOnce(kind, 'same.json', bytes(i + 1, i));
      for (const [i, kind] of FILE_KINDS.entries()) {
        expect((await b.read(kind, 'same.json')).equals(bytes(i + 1, i))).toBe(true);
        expect(await listed(b, kind)).toEqual([{ name: 'same.json', size: i + 1 }]);
      }
    });

    it('lists every complete file of a kind, many and spread out', async () => {
      const names = Array.from({ length: 600 }, (_, i) => packName(100 + i));
      await Promise.all(names.map((n, i) => b.writeOnce('pack', n, bytes(i % 50, i))));
      const got = await listed(t.reopen(), 'pack');
      expect(got.map((f) => f.name)).toEqual([...names].sort());
      expect(got.find((f) => f.name === names[49])?.size).toBe(49);
      expect(await listed(b, 'snapshot')).toEqual([]);
    });

    it('deletes a file, then the name is free again; deleting what is not there is no error', async () => {
      await b.writeOnce('index', 'i1', bytes(10));
      await b.delete('index', 'i1');
      expect(await b.stat('index', 'i1')).toBeUndefined();
      expect(await listed(b, 'index')).toEqual([]);
      await b.delete('index', 'i1');
      await b.writeOnce('index', 'i1', bytes(11));
      expect((await b.read('index', 'i1')).length).toBe(11);
    });

    it('refuses names that are paths, dot names, or could be taken for a temporary file', async () => {
      const bad = ['', '.', '..', '../x', 'a/b', 'a\\b', '/abs', '.hidden', 'x.tmp', 'x.tmp-123', 'nul\0byte', 'x'.repeat(129), 'sp ace'];
      for (const n of bad) {
        await expect(b.writeOnce('key', n, bytes(1)), n).rejects.toBeInstanceOf(InvalidFileNameError);
        await expect(b.read('key', n), n).rejects.toBeInstanceOf(InvalidFileNameError);
        await expect(b.delete('key', n), n).rejects.toBeInstanceOf(InvalidFileNameError);
      }
      expect(await listed(b, 'key')).toEqual([]);
    });

    it('holds a large file (a full pack) bit for bit', async () => {
      const big = crypto.randomBytes(17 * 1024 * 1024);
      await b.writeOnce('pack', packName(3), big);
      expect((await b.read('pack', packName(3))).equals(big)).toBe(true);
      expect((await b.read('pack', packName(3), { offset: big.length - 100, length: 100 })).equals(big.subarray(-100))).toBe(true);
    });
  });
}
