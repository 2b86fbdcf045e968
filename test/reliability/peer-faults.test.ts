/**
 * Faults on the peer's side of replication: the file system holding its
 * replicas fills up in the middle of a push. The source hears the peer's own
 * reason (LB_ERR_NO_SPACE), the replica stays sound, and once there is room
 * the next push completes it. Its figures go to report.ts.
 */
import { execFileSync } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup, expectFailure, lifeboat, ok } from '../cli/run.ts';
import { diffManifests, manifest, randomBytes } from '../cli/tree.ts';
import { Fleet, makeAgent, replicaOf, type TestAgent, writeConfig } from '../replicate/agents.ts';
import { noteFailure, packFilesOf } from './crash-harness.ts';
import { writeSummary } from './report.ts';

const MiB = 1024 * 1024;
const counts = { faults_injected: 0, crashes_survived: 0, snapshots_checked: 0 };
const failures: string[] = [];
const fleet = new Fleet();
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
let mnt: string | undefined;
let cannotMount: string | undefined;

beforeAll(async () => {
  a = await makeAgent('a');
  b = await makeAgent('b');
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a, push: false }]);
  // the peer's replicas on a small file system of their own; its catalog and identity stay where they are
  const target = path.join(b.state, 'replicas');
  await fsp.mkdir(target, { recursive: true, mode: 0o700 });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', target], { stdio: 'pipe' });
    mnt = target;
  } catch (err) {
    cannotMount = `cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): ${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`;
  }
});

afterAll(async () => {
  await fleet.stopAll();
  if (mnt) execFileSync('umount', ['-l', mnt]);
  writeSummary({ suite: 'faults', part: 'peer-disk', counts, failures });
  await cleanup();
});

describe("the peer's disk fills up during a push", () => {
  test("the source hears the peer's LB_ERR_NO_SPACE, the replica stays sound, and with room the push completes", async (ctx) => {
    ctx.skip(mnt === undefined, cannotMount);
    ctx.onTestFailed(noteFailure(failures, 'peer disk full'));
    const src = path.join(a.dir, 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'small.bin'), randomBytes(MiB, 'peer-small'));
    await ok(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password });
    const first = await manifest(src);
    const db: Daemon = fleet.start(b);
    await until('the peer answers', async () => (await db.get('/healthz')).status === 200, { daemon: db, timeoutMs: 30_000 });
    await ok(['--config', a.config, 'replicate', 'b'], { password: a.password });

    // 10 MiB of random data cannot fit in what is left of the 6 MiB
    await fsp.writeFile(path.join(src, 'big.bin'), randomBytes(10 * MiB, 'peer-big'));
    await ok(['backup', '--repo', a.repo, '--path', src, '--host', 'a'], { password: a.password });
    counts.faults_injected++;
    const r = await lifeboat(['--config', a.config, 'replicate', 'b'], { password: a.password });
    expect(expectFailure(r, 1, 'LB_ERR_PEER_REFUSED')).toMatch(/no space left .*\[LB_ERR_NO_SPACE\]/);
    await until('the peer logs it', () => db.logs.some((l) => l.code === 'LB_ERR_NO_SPACE'), { daemon: db });

    // sound: what it held verifies and restores, and the failed session left no half-written pack behind
    const replica = replicaOf(b, a);
    await until('the session closed', async () => (await packFilesOf(replica)).every((f) => !f.endsWith('.tmp')), { daemon: db });
    const v = await ok(['verify', '--repo', replica, '--read-data', '--json'], { password: a.password });
    expect(JSON.parse(v.stdout).problems).toEqual([]);
    const listed = JSON.parse((await ok(['snapshots', '--repo', replica, '--json'], { password: a.password })).stdout) as { id: string }[];
    expect(listed).toHaveLength(1);
    const t1 = path.join(a.dir, 't1');
    await ok(['restore', listed[0]!.id, '--repo', replica, '--target', t1], { password: a.password });
    expect(diffManifests(first, await manifest(t1))).toEqual([]);
    counts.snapshots_checked++;

    execFileSync('mount', ['-o', 'remount,size=48m', mnt!]);
    await ok(['--config', a.config, 'replicate', 'b'], { password: a.password });
    const t2 = path.join(a.dir, 't2');
    await ok(['restore', 'latest', '--repo', replica, '--target', t2], { password: a.password });
    expect(diffManifests(await manifest(src), await manifest(t2))).toEqual([]);
    counts.snapshots_checked++;
    counts.crashes_survived++;
  });
});
