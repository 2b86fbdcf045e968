/**
 * The whole DR path between two hosts, each a real agent on its own engine:
 * host A (a second dockerd) runs a container writing to a volume; its agent
 * backs the volume up continuously and pushes to B's agent; B's scheduled
 * drill recovers A's containers into isolation from the replica and passes;
 * then A is lost (agent and engine stopped) and `recover --from a` on B
 * brings the container back on B's engine with the data of the last
 * replicated snapshot, from the replica and the password kept for A.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, lifeboat } from '../cli/run.ts';
import { cleanup, DEFAULT_SOCKET, ensureEngine, removeImage, type SecondEngine, startSecondEngine, TEST_RUN_ID, uniqueName } from '../docker/harness.ts';
import { Fleet, makeAgent, peer, replicaOf, status, type TestAgent, writeConfig } from '../replicate/agents.ts';
import { startWriterApp } from './rootfs.ts';

const APP = `lifeboat-test/replicated-app-${TEST_RUN_ID}:1`;
let engineA: DockerodeEngine;
let engineB: DockerodeEngine;
let second: SecondEngine | undefined;
let secondDir: string;
let a: TestAgent & { setup: object };
let b: TestAgent & { setup: object };
let appId: string;
const volume = uniqueName('dr-data');
const writer = uniqueName('dr-writer');
let mountA: string;
const fleet = new Fleet();

const start = (agent: TestAgent): Daemon => fleet.start(agent);

/** What a drill made and left on the engine (other test files share it, so only the drill's own objects count). */
async function drillLeftovers(engine: DockerodeEngine): Promise<string[]> {
  const [c, v, n] = await Promise.all([engine.listContainers(), engine.listVolumes(), engine.listNetworks()]);
  const mine = (x: { name: string; labels: Readonly<Record<string, string>> }) => x.name.startsWith('lbdrill-') || 'lifeboat.drill' in x.labels;
  return [...c.filter(mine).map((x) => `container ${x.name}`), ...v.filter(mine).map((x) => `volume ${x.name}`), ...n.filter(mine).map((x) => `network ${x.name}`)];
}

beforeAll(async () => {
  engineB = await ensureEngine(DEFAULT_SOCKET);
  secondDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-dr-2nd-'));
  second = await startSecondEngine(secondDir);
  engineA = await ensureEngine(second.socket);
  ({ appId, mount: mountA } = await startWriterApp(engineA, second.socket, { app: APP, volume, writer }));
  expect(await engineB.inspectImage(appId)).toBeUndefined();

  a = await makeAgent('a', { docker: `unix://${second.socket}`, extra: ['[[volume]]', `name = ${JSON.stringify(volume)}`, 'continuous = true', 'debounce = "1s"'].join('\n') });
  // B drills every 10 s in this test; a real site would drill daily or weekly
  b = await makeAgent('b', { extra: ['[drill]', 'schedule = "*/10 * * * * *"'].join('\n') });
  const passwordOfA = path.join(b.dir, 'a.password');
  await fsp.writeFile(passwordOfA, `${a.password}\n`, { mode: 0o600 });
  await writeConfig(a, [{ agent: b }]);
  await writeConfig(b, [{ agent: a, push: false }]);
  // the peer entry of B keeps A's password, for drills and recovery, and keeps A's images warm here
  await fsp.appendFile(b.config, `password_file = ${JSON.stringify(passwordOfA)}\nstandby = true\n`);
}, 300_000);

afterAll(async () => {
  await fleet.stopAll();
  await engineB.removeContainer(writer, { force: true }).catch(() => undefined);
  await engineB.removeVolume(volume).catch(() => undefined);
  await cleanup(DEFAULT_SOCKET);
  await removeImage(DEFAULT_SOCKET, appId, true).catch(() => undefined);
  await second?.stop();
  await fsp.rm(secondDir, { recursive: true, force: true });
  await cleanupDirs();
}, 120_000);

describe('replicate, drill, lose the host, recover', () => {
  let da: Daemon;
  let db: Daemon;

  it('B\'s scheduled drill recovers A\'s container from the replica into isolation, passes, and leaves nothing behind', async () => {
    db = start(b);
    da = start(a);
    await until('A\'s volume in B\'s replica', async () => {
      const p = await peer(da, 'b').catch(() => undefined);
      return p && p.last_success !== null && p.pending === 0 && fs.existsSync(path.join(replicaOf(b, a), 'config.json'));
    }, { daemon: da, timeoutMs: 90_000 });
    // the warm standby: A's image is loaded on B as its snapshot arrives, under its tag
    await until("A's image loaded on B", async () => (await engineB.inspectImage(APP))?.id === appId, { daemon: db, timeoutMs: 60_000 });
    const drill = await until('a drill of A that passed', async () => (await status(db)).drills.last.find((d) => d.source === 'a' && d.ok), { daemon: db, timeoutMs: 120_000 });
    expect(drill.result!.containers).toEqual([expect.objectContaining({ name: writer, came_up: true, data_matched: true })]);
    // present already: the drill loads nothing
    expect(drill.result!.images_loaded).toEqual([]);
    expect((await db.get('/metrics')).body).toMatch(/\nlifeboat_drill_passed\{peer="a"\} 1\n/);
    db.child.kill('SIGTERM');
    expect((await db.exited).code).toBe(0);
    expect(await drillLeftovers(engineB)).toEqual([]);
  });

  it('A lost: recover --from a brings the container up on B with the data of the last replicated snapshot', async () => {
    const previous = (await status(da)).volumes[0]!.last_snapshot!.id;
    await fsp.appendFile(path.join(mountA, 'ledger'), 'entry 2\n');
    db = start(b);
    await until('a snapshot with the new entry replicated', async () => {
      const s = (await status(da)).volumes[0]?.last_snapshot;
      if (!s || s.id === previous || (await peer(da, 'b')).pending !== 0) return false;
      return (await lifeboat(['snapshots', '--repo', replicaOf(b, a), '--json'], { password: a.password })).json<{ id: string }[]>().some((x) => x.id === s.id);
    }, { daemon: da, timeoutMs: 60_000 });
    da.child.kill('SIGTERM');
    await da.exited;
    await second!.stop();
    // written on A after the last snapshot: lost with the host
    await fsp.appendFile(path.join(mountA, 'ledger'), 'entry 3\n');
    db.child.kill('SIGTERM');
    await db.exited;

    const r = await lifeboat(['--config', b.config, '--json', 'recover', '--from', 'a'], { password: null, timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const report = r.json<{ complete: boolean; containers: { name: string; outcome: string }[]; images: { outcome: string }[] }>();
    expect(report.complete).toBe(true);
    expect(report.images.map((i) => i.outcome)).toEqual(['present']);
    expect(report.containers).toEqual([expect.objectContaining({ name: writer })]);
    const recovered = await engineB.inspectContainer(writer);
    expect(recovered?.state).toBe('running');
    expect(recovered?.labels['lifeboat.recovered-from']).toBe('a');
    const mount = (await engineB.inspectVolume(volume))!.mountpoint;
    expect(await fsp.readFile(path.join(mount, 'ledger'), 'utf8')).toBe('entry 1\nentry 2\n');
  });
});
