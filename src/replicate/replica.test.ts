/**
 * A replica session on its own, driven as the receiver drives it: blobs
 * taken while full packs are written and indexed behind it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NoSpaceError } from '../errors/errors.ts';
import { SEAL_OVERHEAD } from '../repo/crypto.ts';
import { type BlobId, BlobType } from '../repo/ids.ts';
import { generateMasterKeys, wrapKeys } from '../repo/keys.ts';
import { listPackFiles, packPath, readPackTrailer } from '../repo/pack.ts';
import { Store } from '../repo/store.ts';
import { TempDirs } from '../repo/testing/fixture.ts';
import type { BlobMessage, Hello } from './messages.ts';
import { ReplicaSession } from './replica.ts';
import { INDEX_DB } from '../repo/index-db.ts';

const temp = new TempDirs();
afterEach(async () => {
  vi.restoreAllMocks();
  await temp.cleanup();
});

const hello: Hello = {
  protocol: 1,
  config: { lifeboat_repository: 1, id: 'cd'.repeat(16), created: '2026-12-03T00:00:00.000Z' },
  keys: [{ name: '0123456789abcdef.json', text: JSON.stringify(wrapKeys(generateMasterKeys(), 'pw', { N: 1024, r: 8, p: 1 } as unknown as Parameters<typeof wrapKeys>[2])) }],
};

function blob(size: number, type: BlobType = BlobType.data, refs: BlobId[] = []): BlobMessage {
  const stored = crypto.randomBytes(SEAL_OVERHEAD + size);
  return { type, id: crypto.randomBytes(32) as BlobId, rawLength: size, sha256: crypto.createHash('sha256').update(stored).digest(), refs, stored };
}

async function openReplica(packSize: number): Promise<{ dir: string; session: ReplicaSession }> {
  const dir = path.join(await temp.make(), 'replica');
  return { dir, session: await ReplicaSession.open(dir, hello, { packSize }) };
}

/** Blobs in the replica's pack files (each pack's trailer), the index's blob rows, and any half-written pack. */
async function onDisk(dir: string): Promise<{ packed: number; indexed: number; tmp: number }> {
  const names = await listPackFiles(dir);
  const packed = names.filter((n) => !n.endsWith('.tmp')).reduce((n, name) => n + readPackTrailer(packPath(dir, name), name).length, 0);
  const store = Store.openStore(dir);
  try {
    return { packed, indexed: store[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get() as number, tmp: names.filter((n) => n.endsWith('.tmp')).length };
  } finally {
    store.close();
  }
}

describe('ReplicaSession', () => {
  it('takes blobs while full packs are made durable behind it, indexes none before its fsync, and writes none sent again before it is indexed', async () => {
    // two blobs a pack; fsyncs held until released
    const { dir, session } = await openReplica(4096);
    const fsync = fs.fsync;
    const held: (() => void)[] = [];
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: Error | null) => void) => held.push(() => fsync(fd, cb))) as unknown as typeof fs.fsync);
    const blobs = Array.from({ length: 4 }, () => blob(3000));
    const list = blob(100, BlobType.list, blobs.map((b) => b.id));
    expect(session.answer([...blobs, list])).toEqual(Array(5).fill(true));
    for (const b of blobs) await session.accept(b);
    await vi.waitFor(() => expect(held).toHaveLength(1));
    // two packs sealed, the first waiting for its fsync, the second behind it: nothing indexed yet
    expect((await onDisk(dir)).indexed).toBe(0);
    // sent again meanwhile: pending, so present, and not written again
    for (const b of blobs) await session.accept(b);
    // a list naming them is taken: pending counts as present
    await session.accept(list);
    const flushed = session.flush();
    for (let released = 0; released < 3; released++) {
      await vi.waitFor(() => expect(held.length).toBeGreaterThan(0));
      held.shift()!();
    }
    expect(await flushed).toEqual([]);
    expect(session.takeStats()).toMatchObject({ blobs: 5, rejected: 0, packs: 3 });
    // indexed now: asked again, they are not missing
    expect(session.answer(blobs)).toEqual([false, false, false, false]);
    await session.close();
    expect(await onDisk(dir)).toEqual({ packed: 5, indexed: 5, tmp: 0 });
  });

  it('a write failing behind it refuses the next blob or flush with the full disk, and closing leaves only what was indexed', async () => {
    const { dir, session } = await openReplica(64 * 1024);
    const blobs = Array.from({ length: 40 }, () => blob(30_000));
    session.answer(blobs);
    for (const b of blobs.slice(0, 6)) await session.accept(b);
    await session.flush();
    vi.spyOn(fs, 'writev').mockImplementation(((_fd: number, _buffers: unknown, _position: number, cb: (err: Error | null, n: number) => void) =>
      setImmediate(() => cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }), 0))) as unknown as typeof fs.writev);
    let failed: unknown;
    try {
      for (const b of blobs.slice(6)) await session.accept(b);
      await session.flush();
    } catch (err) {
      failed = err;
    }
    expect(failed).toBeInstanceOf(NoSpaceError);
    await session.close();
    expect(await onDisk(dir)).toEqual({ packed: 6, indexed: 6, tmp: 0 });
  });
});
