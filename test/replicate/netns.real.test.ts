/**
 * Replication over a link that is cut in the middle of a transfer: the peer
 * runs in a network namespace of its own, reached over a veth pair. The push
 * fails on its idle timeout, is retried, resumes once the link is back
 * without sending again what the peer had indexed, and the replica ends
 * equal to the source.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeTree, diffTrees } from '../../src/repo/testing/tree-compare.ts';
import { until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, lifeboat, tempDir } from '../cli/run.ts';
import { makeTestHost, type TestHost, testHostsUnavailable } from '../lib/netns.ts';
import { Fleet, makeAgent, packFiles, peer, replicaOf, type TestAgent, writeConfig } from './agents.ts';

const MiB = 1024 * 1024;
const TOTAL = 48 * MiB;
const PACK = 4 * MiB;
let host: TestHost;
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
let src: string;
const fleet = new Fleet();

const unavailable = testHostsUnavailable();
if (unavailable) console.warn(`skipping the link-cut test: ${unavailable}`);

beforeAll(async () => {
  if (unavailable) return;
  host = makeTestHost();
  src = path.join(await tempDir('lifeboat-netns-src-'), 'data');
  await fsp.mkdir(src);
  for (let i = 0; i < 12; i++) await fsp.writeFile(path.join(src, `part${i}.bin`), crypto.randomBytes(TOTAL / 12));
  a = await makeAgent('a', { replication: ['bandwidth = "8MiB"', 'timeout = "2s"', 'retry = "1s"'].join('\n') });
  b = await makeAgent('b', { host: host.address, repository: `pack_size = "${PACK / MiB}MiB"` });
  await writeConfig(a, [{ agent: b }]);
  // B does not push back: A's listener is on A's loopback, out of B's reach
  await writeConfig(b, [{ agent: a, push: false }]);
  const backup = await lifeboat(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password });
  expect(backup.code, backup.stderr).toBe(0);
});

afterAll(async () => {
  await fleet.stopAll();
  host?.remove();
  await cleanupDirs();
});

describe.skipIf(unavailable !== undefined)('replication across a link cut in the middle of a transfer', () => {
  it('fails on the idle timeout, resumes after the link is back without resending what the peer indexed, and the replica equals the source', async () => {
    const db = fleet.start(b, { netns: host.netns });
    await until('B answers in its namespace', async () => (await db.get('/healthz')).status === 200, { daemon: db, timeoutMs: 30_000 });
    const da = fleet.start(a);
    const replica = replicaOf(b, a);
    await until('B holds 3 packs of the push', () => packFiles(replica) >= 3, { daemon: da, intervalMs: 20, timeoutMs: 60_000 });
    host.cut();
    const failed = await until('the push fails on its idle timeout', async () => {
      const p = await peer(da, 'b');
      return p.failures > 0 && p;
    }, { daemon: da, timeoutMs: 30_000 });
    expect(failed.last_error).toMatch(/LB_ERR_PEER_TIMEOUT|LB_ERR_PEER_UNREACHABLE/);
    expect(failed.pending).toBe(1);
    const indexed = packFiles(replica);
    expect(indexed).toBeLessThan(TOTAL / PACK);
    host.restore();
    const done = await until('the retry completes', async () => {
      const p = await peer(da, 'b');
      return p.pending === 0 && p.failures === 0 && p;
    }, { daemon: da, timeoutMs: 120_000 });
    // the resumed push sent only what the peer had not indexed
    expect(done.last_push!.bytes_sent).toBeLessThan(TOTAL - 3 * PACK + MiB);
    expect(done.last_push!.bytes_sent).toBeGreaterThan(0);

    const snapshot = JSON.parse((await lifeboat(['snapshots', '--repo', replica, '--json'], { password: a.password })).stdout)[0].id as string;
    const target = path.join(await tempDir('lifeboat-netns-restore-'), 't');
    const restore = await lifeboat(['restore', snapshot, '--repo', replica, '--target', target], { password: a.password });
    expect(restore.code, restore.stderr).toBe(0);
    const want = await describeTree(src);
    const got = await describeTree(target);
    expect(diffTrees(want, got)).toEqual([]);
  });
});
