/**
 * Crash consistency of replication: a push killed with SIGKILL at seeded
 * points on the source (the `replicate` command) and on the peer (the agent
 * receiving it), 25 times in all. After each kill: the replica verifies clean
 * with the source's password, every snapshot the peer had committed is still
 * there (and only the killed one may have joined, when the kill came after
 * its commit), the next push completes, and the newest snapshot restores
 * from the replica bit-exact. At the end prune leaves no half-written pack.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup, lifeboat, ok, type RunResult } from '../cli/run.ts';
import { diffManifests, type Manifest } from '../cli/tree.ts';
import { makeAgent, replicaOf, run, type TestAgent, writeConfig } from '../replicate/agents.ts';
import { packFilesOf, seeded, SEED, digestManifest } from './crash-harness.ts';
import { writeSummary } from './report.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Plan {
  readonly side: 'source' | 'peer';
  readonly point: string;
  readonly kills: number;
  /** The point lies after the peer committed the snapshot. */
  readonly commits?: boolean;
}

const PLANS: readonly Plan[] = [
  { side: 'source', point: 'push-blob', kills: 6 },
  { side: 'source', point: 'push-flushed', kills: 2 },
  { side: 'source', point: 'push-committed', kills: 3, commits: true },
  { side: 'peer', point: 'pack-blob', kills: 5 },
  { side: 'peer', point: 'pack-synced', kills: 2 },
  { side: 'peer', point: 'pack-finished', kills: 2 },
  { side: 'peer', point: 'replica-indexed', kills: 3 },
  { side: 'peer', point: 'replica-committed', kills: 2, commits: true },
];

const tally = { faults_injected: 0, crashes_survived: 0, snapshots_checked: 0, snapshots_lost: 0 };
const failures: string[] = [];
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
let src: string;
let peer: Daemon | undefined;
const random = seeded(`${SEED}/replication`);
/** Snapshots of the source with what they hold, oldest first, and whether the peer has committed them. */
const snapshots: { id: string; expected: Manifest; onPeer: boolean }[] = [];

const replica = () => replicaOf(b, a);

/** Seeded bytes that do not repeat within themselves: every 4 KiB block is its own. */
function seededBytes(n: number, name: string): Buffer {
  const r = seeded(`${SEED}/replication/${name}`);
  const out = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) out.writeUInt32LE(Math.floor(r() * 2 ** 32), i);
  return out;
}

/** A round of change (same shape every time, so every push passes each point as often), then its backup on the source. */
async function backupRound(round: number | string): Promise<void> {
  await fsp.mkdir(path.join(src, 'gen'), { recursive: true });
  for (const name of await fsp.readdir(path.join(src, 'gen'))) await fsp.rm(path.join(src, 'gen', name));
  await fsp.writeFile(path.join(src, 'gen', `gen-${round}.bin`), seededBytes(1.25 * MiB, `gen-${round}`));
  await fsp.mkdir(path.join(src, 'kept'), { recursive: true });
  await fsp.writeFile(path.join(src, 'kept', `kept-${round}.txt`), seededBytes(3 * KiB, `kept-${round}`));
  const out = await ok(['backup', '--repo', a.repo, '--path', src, '--host', 'a', '--block-size', '4KiB', '--json'], { password: a.password });
  snapshots.push({ id: JSON.parse(out.stdout).snapshot as string, expected: await digestManifest(src), onPeer: false });
}

function startPeer(env: Record<string, string> = {}): Daemon {
  peer = run(b, { env });
  return peer;
}

async function peerUp(d: Daemon): Promise<void> {
  await until('the peer answers', async () => (await d.get('/healthz')).status === 200, { daemon: d, timeoutMs: 30_000 });
}

const push = (env: Record<string, string> = {}): Promise<RunResult> => lifeboat(['--config', a.config, '--json', 'replicate', 'b'], { password: a.password, env });

async function listedOnPeer(): Promise<string[]> {
  const r = await ok(['snapshots', '--repo', replica(), '--json'], { password: a.password });
  return (JSON.parse(r.stdout) as { id: string }[]).map((s) => s.id);
}

async function passes(trace: string, point: string): Promise<number> {
  return (await fsp.readFile(trace, 'utf8').catch(() => '')).split('\n').filter((l) => l === point).length;
}

beforeAll(async () => {
  a = await makeAgent('a', { repository: 'pack_size = "1MiB"' });
  b = await makeAgent('b', { repository: 'pack_size = "1MiB"' });
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a, push: false }]);
  src = path.join(a.dir, 'src');
  await fsp.mkdir(src);
  await backupRound('base');
  await peerUp(startPeer());
  await ok(['--config', a.config, 'replicate', 'b'], { password: a.password });
  snapshots[0]!.onPeer = true;
});

afterAll(async () => {
  peer?.kill();
  await peer?.exited;
  writeSummary({ suite: 'crash', part: 'replication', counts: tally, failures });
  await cleanup();
});

/** Passes of each point in one push of one round: a traced run on each side. */
async function record(): Promise<Map<string, number>> {
  await backupRound('recording');
  const sourceTrace = path.join(a.dir, 'trace-source');
  const peerTrace = path.join(b.dir, 'trace-peer');
  peer!.child.kill('SIGTERM');
  await peer!.exited;
  await peerUp(startPeer({ LIFEBOAT_FAULT_TRACE: peerTrace }));
  const r = await push({ LIFEBOAT_FAULT_TRACE: sourceTrace });
  expect(r.code, r.stderr).toBe(0);
  snapshots.at(-1)!.onPeer = true;
  peer!.child.kill('SIGTERM');
  await peer!.exited;
  await peerUp(startPeer());
  const counts = new Map<string, number>();
  for (const p of PLANS) counts.set(p.point, await passes(p.side === 'source' ? sourceTrace : peerTrace, p.point));
  return counts;
}

/** One kill of a push at the nth pass of the plan's point, on the plan's side; proves it was that kill. */
async function killPush(plan: Plan, n: number, where: string): Promise<void> {
  const fault = `${plan.point}:${n}`;
  if (plan.side === 'source') {
    const trace = path.join(a.dir, `trace-${tally.faults_injected}`);
    const r = await push({ LIFEBOAT_FAULT: fault, LIFEBOAT_FAULT_TRACE: trace });
    expect(r.signal, `${where}: exit ${r.code} ${r.stderr}`).toBe('SIGKILL');
    expect(await fsp.readFile(trace, 'utf8'), where).toContain(`kill ${plan.point} ${n}`);
  } else {
    const trace = path.join(b.dir, `trace-${tally.faults_injected}`);
    peer!.child.kill('SIGTERM');
    await peer!.exited;
    const d = startPeer({ LIFEBOAT_FAULT: fault, LIFEBOAT_FAULT_TRACE: trace });
    await peerUp(d);
    const r = await push();
    // the source sees its peer vanish: the push fails, typed, with one line
    expect(r.code, `${where}: ${r.stderr}`).toBe(1);
    expect(r.stderr).toMatch(/^lifeboat: replication to b failed: .+ \[LB_ERR_[A-Z_]+\]\n$/);
    expect(await d.exited, where).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await fsp.readFile(trace, 'utf8'), where).toContain(`kill ${plan.point} ${n}`);
    await peerUp(startPeer());
  }
  tally.faults_injected++;
}

/** After a kill: the replica verifies, nothing the peer had committed is gone, and only the killed snapshot may have joined. */
async function checkReplica(plan: Plan, where: string): Promise<void> {
  const v = await lifeboat(['verify', '--repo', replica(), '--read-data', '--json'], { password: a.password });
  expect(v.code, `${where}: ${v.stderr}`).toBe(0);
  expect(JSON.parse(v.stdout).problems, where).toEqual([]);
  const listed = await listedOnPeer();
  const lost = snapshots.filter((s) => s.onPeer && !listed.includes(s.id));
  tally.snapshots_lost += lost.length;
  expect(lost.map((s) => s.id), `${where}: snapshots lost from the replica`).toEqual([]);
  const extra = listed.filter((id) => !snapshots.some((s) => s.onPeer && s.id === id));
  expect(extra, where).toEqual(plan.commits ? [snapshots.at(-1)!.id] : []);
}

/** The newest snapshot restores from the replica exactly as it was backed up. */
async function newestRestores(where: string): Promise<void> {
  const s = snapshots.at(-1)!;
  const target = path.join(a.dir, `restored-${tally.crashes_survived}`);
  await ok(['restore', s.id, '--repo', replica(), '--target', target], { password: a.password });
  expect(diffManifests(s.expected, await digestManifest(target)), `${where}: restore of ${s.id.slice(0, 8)} from the replica`).toEqual([]);
  await fsp.rm(target, { recursive: true, force: true });
  tally.snapshots_checked++;
}

describe('replication killed with SIGKILL at seeded points on either side, then checked and pushed again', () => {
  test(`${PLANS.reduce((n, p) => n + p.kills, 0)} kills: ${PLANS.map((p) => `${p.side} ${p.point} x${p.kills}`).join(', ')}`, async (ctx) => {
    ctx.onTestFailed(() => void failures.push(ctx.task.result?.errors?.[0]?.message?.split('\n')[0] ?? 'failed'));
    const counts = await record();
    const kills = PLANS.flatMap((plan) => {
      const total = counts.get(plan.point) ?? 0;
      expect(total, `the recording push never passed ${plan.point} on the ${plan.side}`).toBeGreaterThan(0);
      return Array.from({ length: plan.kills }, () => ({ plan, n: 1 + Math.floor(random() * total) }));
    });
    for (const [i, { plan, n }] of kills.entries()) {
      const where = `kill ${i + 1}/${kills.length}: ${plan.side} at ${plan.point}:${n} (CRASH_SEED=${SEED})`;
      await backupRound(i);
      await killPush(plan, n, where);
      await checkReplica(plan, where);
      const again = await push();
      expect(again.code, `${where}: the next push: ${again.stderr}`).toBe(0);
      snapshots.at(-1)!.onPeer = true;
      await newestRestores(where);
      tally.crashes_survived++;
    }
    // the peer's own sweep: nothing half-written stays, and the packs are what the index names
    await ok(['prune', '--repo', replica()], { password: a.password });
    expect((await packFilesOf(replica())).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const v = await ok(['verify', '--repo', replica(), '--read-data', '--json'], { password: a.password });
    expect(JSON.parse(v.stdout)).toMatchObject({ problems: [], unreferenced_packs: 0 });
    expect(await listedOnPeer()).toEqual(expect.arrayContaining(snapshots.map((s) => s.id)));
    await newestRestores('after the final prune');
  }, 900_000);
});
