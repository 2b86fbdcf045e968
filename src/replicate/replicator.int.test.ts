/**
 * The Replicator's bookkeeping over real TLS: a peer that is down through
 * several backups, what status says meanwhile, and the retry that catches up
 * in one push once it is back.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type tls from 'node:tls';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentCatalog } from '../catalog/agent-catalog.ts';
import { parseConfig } from '../config/load.ts';
import { Repository } from '../repo/repository.ts';
import { listSnapshots } from '../repo/snapshots.ts';
import { Store } from '../repo/store.ts';
import { backupDir, openTestRepo, TEST_PASSWORD, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { verify } from '../repo/verify.ts';
import { restore } from '../restore/restorer.ts';
import { openRepoWorkers } from '../agent/workers.ts';
import { freePort } from '../util/testing/ports.ts';
import { type Identity, loadOrCreateIdentity } from './identity.ts';
import { PeerStateStore } from './peer-state.ts';
import { Receiver } from './receiver.ts';
import { replicaDir } from './replica-path.ts';
import { replicaRetention } from './replica-retention.ts';
import { Replicator } from './replicator.ts';
import { listenForPeers } from './transport.ts';

const log = pino({ level: 'silent' });

describe('Replicator', () => {
  let t: TestRepo;
  let catalog: AgentCatalog;
  let me: Identity;
  let peer: Identity;
  let peerState: string;
  let port: number;
  let replicator: Replicator;
  let server: tls.Server | undefined;
  let receiver: Receiver;

  beforeEach(async () => {
    t = await openTestRepo();
    const state = await t.temp.make('lifeboat-state-');
    catalog = AgentCatalog.open(state);
    me = await loadOrCreateIdentity(state);
    peerState = await t.temp.make('lifeboat-peer-');
    peer = await loadOrCreateIdentity(peerState);
    port = await freePort();
    const config = parseConfig(
      [
        '[agent]',
        `state_dir = ${JSON.stringify(state)}`,
        '[replication]',
        'retry = "200ms"',
        'timeout = "5s"',
        '[[peer]]',
        'name = "dr"',
        `address = "127.0.0.1:${port}"`,
        `id = "${peer.id}"`,
      ].join('\n'),
      'test.toml',
    );
    replicator = new Replicator({ config, identity: me, repo: t.repo, state: new PeerStateStore(catalog.db), log, scratchDir: path.join(state, 'tmp') });
    receiver = new Receiver({ stateDir: peerState, packSize: 1 << 20, log });
  });

  afterEach(async () => {
    await replicator.stop();
    await receiver.close();
    server?.close();
    server = undefined;
    catalog.close();
    await t.close();
  });

  const bringPeerUp = async () => {
    server = await listenForPeers({ identity: peer, listen: `127.0.0.1:${port}`, peers: new Map([[me.id, 'source']]), log, onPeer: (c, n) => void receiver.accept(c, n) });
  };

  it('a peer down through 5 backups: each push fails with the reason, status shows 5 pending, and the retry catches up in one push', async () => {
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    for (let i = 0; i < 5; i++) {
      await fsp.writeFile(path.join(src, `f${i}`), `version ${i}`);
      await backupDir(t, src, { volume: 'data' });
      const [outcome] = await replicator.replicate();
      expect(outcome).toMatchObject({ peer: 'dr', ok: false, error: { code: 'LB_ERR_PEER_UNREACHABLE' } });
    }
    const down = replicator.status()[0]!;
    expect(down).toMatchObject({ name: 'dr', state: 'retrying', pending: 5, failures: 5, last_success: null });
    expect(down.last_error).toMatch(/ECONNREFUSED/);
    expect(down.lag_s).toBeGreaterThanOrEqual(0);
    expect(Date.parse(down.next_retry!)).toBeGreaterThan(Date.now() - 1000);

    await bringPeerUp();
    // nobody triggers: the retry timer (200 ms doubling, capped at 5 min) does, once the peer answers
    for (let i = 0; replicator.status()[0]!.pending !== 0; i++) {
      if (i > 300) throw new Error(`no catch-up: ${JSON.stringify(replicator.status())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const up = replicator.status()[0]!;
    expect(up).toMatchObject({ pending: 0, lag_s: 0, failures: 0, last_error: null, state: 'idle' });
    // per volume, the newest snapshot the peer holds: the recovery point a disaster here would leave
    expect(down.recovery_points).toEqual({});
    expect(up.recovery_points).toEqual({ data: listSnapshots(t.repo).at(-1)!.time });
    expect(up.last_push).toMatchObject({ snapshots: 5 });
    await receiver.settled();
    const store = Store.openStore(replicaDir(peerState, me.id));
    expect(listSnapshots(store).map((s) => s.id)).toEqual(listSnapshots(t.repo).map((s) => s.id));
    store.close();
  });

  it('triggers during a push coalesce into one more push; exclusive work waits for the push to end', async () => {
    await bringPeerUp();
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'f'), Buffer.alloc(3 << 20, 7));
    await backupDir(t, src);
    const first = replicator.replicate();
    const second = replicator.replicate();
    const third = replicator.replicate();
    const order: string[] = [];
    const exclusive = replicator.exclusive(async () => {
      order.push('exclusive');
    });
    void first.then(() => order.push('first'));
    const [a, b, c] = await Promise.all([first, second, third]);
    await exclusive;
    expect(a[0]!.ok && b[0]!.ok && c[0]!.ok).toBe(true);
    // the second and third share one follow-up push, which found nothing left to send
    expect(b[0]).toBe(c[0]);
    expect(b[0]!.report).toMatchObject({ snapshots: 0, already: 1 });
    expect(order[0]).toBe('first');
  });

  it('the peer\'s own retention keeps what its policy says of a replica, and the rest restores', async () => {
    await bringPeerUp();
    const src = path.join(await t.temp.make(), 'src');
    await fsp.mkdir(src);
    for (let i = 0; i < 3; i++) {
      await fsp.writeFile(path.join(src, `f${i}`), Buffer.alloc(200_000, i + 1));
      await backupDir(t, src);
    }
    expect((await replicator.replicate())[0]!.ok).toBe(true);
    await receiver.settled();
    const peerConfig = parseConfig(
      ['[agent]', `state_dir = ${JSON.stringify(peerState)}`, '[replication.retention]', 'keep_last = 1', '[[peer]]', 'name = "source"', 'address = "127.0.0.1:1"', `id = "${me.id}"`].join('\n'),
      'peer.toml',
    );
    const [report] = await replicaRetention(peerConfig, log);
    expect(report).toMatchObject({ source: 'source', kept: 1, removed: 2 });
    expect(report!.bytes_freed).toBeGreaterThan(0);
    const replica = await Repository.open(replicaDir(peerState, me.id), TEST_PASSWORD);
    const pool = openRepoWorkers(replica, { workers: 1, level: 0, packSize: 1 << 20 });
    try {
      const [kept] = listSnapshots(replica);
      expect(kept!.id).toBe(listSnapshots(t.repo).at(-1)!.id);
      const dst = path.join(await t.temp.make(), 'dst');
      await restore(replica, kept!, { target: dst, pool });
      expect(diffTrees(await describeTree(src), await describeTree(dst))).toEqual([]);
      expect((await verify(replica, pool, { readData: true })).problems).toEqual([]);
    } finally {
      await pool.close();
      replica.close();
    }
  });
});
