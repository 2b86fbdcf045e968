/**
 * The push protocol end to end over real mutual TLS: a source repository,
 * a peer's Receiver writing its replica, both in this process.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PeerRefusedError } from '../errors/errors.ts';
import { BlobType } from '../repo/ids.ts';
import { prune } from '../repo/prune.ts';
import { Repository } from '../repo/repository.ts';
import { deleteSnapshots, listSnapshots } from '../repo/snapshots.ts';
import { Store } from '../repo/store.ts';
import { backupDir, openTestRepo, restoreTo, TEST_PASSWORD, type TestRepo, TempDirs } from '../repo/testing/fixture.ts';
import { pseudoRandomBytes } from '../repo/testing/tree-builder.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { verify } from '../repo/verify.ts';
import { KiB } from '../util/units.ts';
import { openRepoWorkers } from '../agent/workers.ts';
import { type Identity, loadOrCreateIdentity } from './identity.ts';
import { encodeFrame } from './frames.ts';
import { encodeBlob, encodeHello, Msg } from './messages.ts';
import { push, type PushOptions } from './push.ts';
import { Receiver } from './receiver.ts';
import { replicaDir } from './replica-path.ts';
import { connectToPeer, listenForPeers } from './transport.ts';
import { INDEX_DB } from '../repo/index-db.ts';

const log = pino({ level: 'silent' });
const temp = new TempDirs();
let source: Identity;
let peer: Identity;
let peerState: string;
let server: tls.Server;
let port: number;
let receiver: Receiver;
const PEER_PACK = 256 * KiB;

beforeAll(async () => {
  source = await loadOrCreateIdentity(await temp.make('lifeboat-src-id-'));
  peer = await loadOrCreateIdentity(await temp.make('lifeboat-peer-id-'));
});
afterAll(() => temp.cleanup());

beforeEach(async () => {
  peerState = await temp.make('lifeboat-peer-state-');
  receiver = new Receiver({ stateDir: peerState, packSize: PEER_PACK, log });
  server = await listenForPeers({ identity: peer, listen: '127.0.0.1:0', peers: new Map([[source.id, 'src']]), log, onPeer: (c, n) => void receiver.accept(c, n) });
  port = (server.address() as { port: number }).port;
});
afterEach(async () => {
  await receiver.close();
  server.close();
});

const connect = () => connectToPeer({ identity: source, host: '127.0.0.1', port, expectedId: peer.id });

async function pushOnce(t: TestRepo, extra: Partial<PushOptions> = {}) {
  const conn = await connect();
  try {
    return await push(conn, t.repo, { scratchDir: path.join(t.dir, '..', 'scratch'), log, ...extra });
  } finally {
    conn.destroy();
    await receiver.settled();
  }
}

/** A source tree: small files in nested directories and one file large enough for list blobs (> 64 blocks). */
async function makeSource(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'a', 'b'), { recursive: true });
  for (let i = 0; i < 20; i++) await fsp.writeFile(path.join(dir, 'a', `f${i}`), pseudoRandomBytes(3 * KiB + i, i));
  await fsp.writeFile(path.join(dir, 'a', 'b', 'big.db'), pseudoRandomBytes(1100 * 4 * KiB, 99));
  await fsp.writeFile(path.join(dir, 'same1'), 'same');
  await fsp.writeFile(path.join(dir, 'same2'), 'same');
}

const splitter = { kind: 'fixed' as const, size: 4 * KiB };

/** Opens the peer's replica with the source's password, with workers of its own, for fn. */
async function withReplica<T>(fn: (replica: TestRepo) => Promise<T>): Promise<T> {
  const repo = await Repository.open(replicaDir(peerState, source.id), TEST_PASSWORD);
  const pool = openRepoWorkers(repo, { workers: 2, level: 3, packSize: PEER_PACK });
  try {
    return await fn({ repo, pool, temp, dir: repo.dir, packSize: PEER_PACK } as unknown as TestRepo);
  } finally {
    await pool.close();
    repo.close();
  }
}

/** The replica restores the snapshot equal to `src`, and verifies clean reading every blob. */
async function replicaHolds(snapshotId: string, src: string): Promise<void> {
  await withReplica(async (r) => {
    const s = listSnapshots(r.repo).find((x) => x.id === snapshotId)!;
    const dst = path.join(await temp.make(), 'dst');
    await restoreTo(r, s, dst);
    expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
    expect((await verify(r.repo, r.pool, { readData: true })).problems).toEqual([]);
  });
}

describe('push', () => {
  let t: TestRepo;
  let src: string;
  beforeEach(async () => {
    t = await openTestRepo({ packSize: 128 * KiB });
    src = path.join(await t.temp.make(), 'src');
    await makeSource(src);
  });
  afterEach(() => t.close());

  it('sends every blob once, the replica restores equal with the source password, and a second push sends nothing', async () => {
    const s1 = await backupDir(t, src, { splitter });
    const blobs = t.repo[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get() as number;
    let told = 0;
    const first = await pushOnce(t, { onSent: () => void told++ });
    expect(first).toMatchObject({ snapshots: 1, already: 0, blobs_resent: 0 });
    // a progress line hears of every blob sent
    expect(told).toBe(first.blobs_sent);
    // every blob the snapshot reaches, and nothing else: a fresh repository holds only those
    expect(first.blobs_sent).toBe(blobs);
    await withReplica(async (r) => expect(listSnapshots(r.repo).map((s) => s.id)).toEqual([s1.id]));
    await replicaHolds(s1.id, src);
    await expect(Repository.open(replicaDir(peerState, source.id), 'another password')).rejects.toThrow(/wrong password/);
    expect(await pushOnce(t)).toMatchObject({ snapshots: 0, already: 1, blobs_sent: 0, ids_queried: 0 });
  });

  it('sends only what an in-place change made new: the changed block, its list and the trees above it', async () => {
    await backupDir(t, src, { splitter });
    await pushOnce(t);
    const fh = await fsp.open(path.join(src, 'a', 'b', 'big.db'), 'r+');
    await fh.write(pseudoRandomBytes(4 * KiB, 7), 0, 4 * KiB, 500 * 4 * KiB);
    await fh.close();
    const s2 = await backupDir(t, src, { splitter });
    const second = await pushOnce(t);
    // the block, its list, and the trees of b/, a/, the source directory and the snapshot's root
    expect(second).toMatchObject({ snapshots: 1, already: 1, blobs_sent: 6 });
    // only what changed is asked about: the peer holds the first snapshot, so the 1,099 unchanged
    // blocks of the file and the 20 files beside it are known to be there
    expect(second.ids_queried).toBe(6);
    expect(second.bytes_sent).toBeLessThan(4 * KiB + 32 * KiB + 8 * KiB);
    await replicaHolds(s2.id, src);
  });

  it('sends a blob damaged in flight again, and the replica is exact', async () => {
    const s1 = await backupDir(t, src, { splitter });
    let n = 0;
    const report = await pushOnce(t, {
      onSend: (b) => {
        if (b.type !== BlobType.data || ++n !== 3) return b;
        const stored = Buffer.from(b.stored);
        stored[stored.length >> 1]! ^= 0xff;
        return { ...b, stored };
      },
    });
    // the damaged blob, and the lists and trees above it, which the peer refuses while it lacks the blob
    expect(report.blobs_resent).toBeGreaterThanOrEqual(1);
    expect(report.blobs_resent).toBeLessThanOrEqual(6);
    await replicaHolds(s1.id, src);
  });

  it('resumes a cut transfer without sending again what the peer had indexed', async () => {
    const s1 = await backupDir(t, src, { splitter });
    const total = t.repo[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get() as number;
    const ac = new AbortController();
    let sent = 0;
    await expect(
      pushOnce(t, {
        signal: ac.signal,
        onSend: (b) => {
          if (++sent === 700) ac.abort();
          return b;
        },
      }),
    ).rejects.toThrow();
    // the peer notices the cut and drops its open pack; what it indexed stays
    const store = Store.openStore(replicaDir(peerState, source.id));
    const indexed = store[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get() as number;
    store.close();
    expect(indexed).toBeGreaterThan(0);
    expect(indexed).toBeLessThan(700);
    const again = await pushOnce(t);
    expect(again.blobs_sent).toBe(total - indexed);
    await replicaHolds(s1.id, src);
  });

  it('keeps the replica append-only, and its own prune, marking through the declared edges, keeps the rest restorable', async () => {
    const s1 = await backupDir(t, src, { splitter });
    await fsp.rm(path.join(src, 'a', 'b', 'big.db'));
    await fsp.writeFile(path.join(src, 'a', 'new'), pseudoRandomBytes(9 * KiB, 5));
    const s2 = await backupDir(t, src, { splitter });
    await pushOnce(t);
    // the source forgets s1: the peer keeps it
    deleteSnapshots(t.repo, [s1.id]);
    await pushOnce(t);
    const store = Store.openStore(replicaDir(peerState, source.id));
    try {
      expect(listSnapshots(store).map((s) => s.id).sort()).toEqual([s1.id, s2.id].sort());
      // the peer's retention forgets s1, and prunes without the password
      deleteSnapshots(store, [s1.id]);
      const report = await prune(store, { maxUnused: 0.2, packSize: PEER_PACK });
      expect(report.blobs_removed).toBeGreaterThanOrEqual(1100);
    } finally {
      store.close();
    }
    await replicaHolds(s2.id, src);
  });
});

describe('a peer receiving from three sources at once', () => {
  it('keeps three exact replicas, each in its own store', async () => {
    const sources = await Promise.all([0, 1, 2].map(async (n) => {
      const id = await loadOrCreateIdentity(await temp.make(`lifeboat-src${n}-id-`));
      const t = await openTestRepo({ packSize: 128 * KiB });
      const src = path.join(await t.temp.make(), 'src');
      await makeSource(src);
      await fsp.writeFile(path.join(src, 'who'), `source ${n}`);
      return { id, t, src, snapshot: await backupDir(t, src, { splitter }) };
    }));
    const multi = new Receiver({ stateDir: peerState, packSize: PEER_PACK, log });
    const srv = await listenForPeers({ identity: peer, listen: '127.0.0.1:0', peers: new Map(sources.map((x, n) => [x.id.id, `src${n}`])), log, onPeer: (c, n) => void multi.accept(c, n) });
    const at = (srv.address() as { port: number }).port;
    try {
      const reports = await Promise.all(sources.map(async (x) => {
        const conn = await connectToPeer({ identity: x.id, host: '127.0.0.1', port: at, expectedId: peer.id });
        try {
          return await push(conn, x.t.repo, { scratchDir: path.join(x.t.dir, '..', 'scratch'), log });
        } finally {
          conn.destroy();
        }
      }));
      expect(reports.map((r) => r.snapshots)).toEqual([1, 1, 1]);
      await multi.settled();
      for (const x of sources) {
        const repo = await Repository.open(replicaDir(peerState, x.id.id), TEST_PASSWORD);
        const pool = openRepoWorkers(repo, { workers: 1, level: 0, packSize: PEER_PACK });
        try {
          expect(listSnapshots(repo).map((s) => s.id)).toEqual([x.snapshot.id]);
          const dst = path.join(await temp.make(), 'dst');
          await restoreTo({ repo, pool } as unknown as TestRepo, x.snapshot, dst);
          expect(diffTrees(await describeTree(x.src), await describeTree(dst))).toEqual([]);
        } finally {
          await pool.close();
          repo.close();
        }
      }
    } finally {
      await multi.close();
      srv.close();
      for (const x of sources) await x.t.close();
    }
  });
});

describe('a hostile or broken source', () => {
  let t: TestRepo;
  beforeEach(async () => {
    t = await openTestRepo();
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'x'), 'x');
    await backupDir(t, src);
  });
  afterEach(() => t.close());

  /** Sends raw frames as a source and returns how the peer answered (its ERROR, if any). */
  async function talk(frames: [number, Buffer][]): Promise<string> {
    const conn = await connect();
    try {
      for (const [type, payload] of frames) await conn.send(type, payload);
      for (;;) {
        const f = await conn.receive();
        if (f.type === Msg.error) return JSON.parse(f.payload.toString()).message as string;
      }
    } catch (err) {
      return `closed: ${(err as Error).message}`;
    } finally {
      conn.destroy();
    }
  }

  const hello = async (keys?: { name: string; text: string }[]) => {
    const config = JSON.parse(await fsp.readFile(path.join(t.dir, 'config.json'), 'utf8'));
    const name = fs.readdirSync(path.join(t.dir, 'keys'))[0]!;
    return encodeHello({ protocol: 1, config, keys: keys ?? [{ name, text: await fsp.readFile(path.join(t.dir, 'keys', name), 'utf8') }] });
  };

  it('refuses key file names that would leave the store, and key files that are not', async () => {
    const text = '{"version":1}';
    for (const name of ['../x.json', '/etc/x.json', 'a\0.json', '..json/../../x.json']) {
      expect(await talk([[Msg.hello, await hello([{ name, text }])]])).toMatch(/malformed hello/);
    }
    expect(await talk([[Msg.hello, await hello([{ name: 'ok.json', text }])]])).toMatch(/not one/);
    expect(fs.existsSync(path.join(peerState, 'x.json'))).toBe(false);
    expect(fs.readdirSync(peerState).filter((n) => n !== 'replicas')).toEqual([]);
  });

  it('refuses a blob it never asked for, a frame before hello, and a frame too large to buffer', async () => {
    const blob = Buffer.concat(encodeBlob({ type: BlobType.data, id: Buffer.alloc(32, 1) as never, rawLength: 1, sha256: Buffer.alloc(32), refs: [], stored: Buffer.alloc(64) }));
    expect(await talk([[Msg.blob, blob]])).toMatch(/not hello/);
    expect(await talk([[Msg.hello, await hello()], [Msg.blob, blob]])).toMatch(/never asked for/);
    const store = Store.openStore(replicaDir(peerState, source.id));
    expect(store[INDEX_DB].prepare('SELECT count(*) FROM blobs').pluck().get()).toBe(0);
    store.close();
    // a frame announcing 1 GiB is refused from its header: the peer hangs up without buffering it
    const socket = tls.connect({ host: '127.0.0.1', port, cert: source.certPem, key: source.keyPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    socket.on('error', () => {});
    // a reset is how the refusal may arrive: wait for the close, not for the absence of an error
    const closed = new Promise((r) => socket.once('close', r));
    await once(socket, 'secureConnect');
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1 << 30);
    header[4] = Msg.blob;
    socket.write(Buffer.concat([encodeFrame(Msg.hello, await hello()), header, Buffer.alloc(64 * KiB)]));
    socket.resume();
    await closed;
  });

  it('reports a refusal from the peer as the peer\'s code', async () => {
    const other = await openTestRepo();
    try {
      const s = path.join(await other.temp.make(), 's');
      await fsp.mkdir(s);
      await backupDir(other, s);
      await pushOnce(t);
      // same source id, another repository: the peer refuses to mix them
      const err = await pushOnce(other).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PeerRefusedError);
      expect((err as PeerRefusedError).peerCode).toBe('LB_ERR_REPLICA_MISMATCH');
    } finally {
      await other.close();
    }
  });
});
