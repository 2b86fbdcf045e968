/**
 * Recovery between two real engines. Host A is a second dockerd of its own;
 * host B is this machine's dockerd. A runs a writer on a volume, a checker
 * that shares the writer's network namespace and has a healthcheck, and a
 * container whose image claims arm64. A's volume is backed up twice through
 * the CLI, then A's engine is stopped and B recovers from the repository.
 * The images are A's own (imported there from a busybox root filesystem),
 * so B has to load them from the repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarFs from 'tar-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { ENGINE_DEFAULTS, type RuntimeSettings } from '../../src/docker/runtime.ts';
import { cleanup as cleanupDirs, expectFailure, lifeboat, ok, tempDir } from '../cli/run.ts';
import { importBusyboxImage } from './rootfs.ts';
import { cleanup, DEFAULT_SOCKET, ensureEngine, removeImage, type SecondEngine, startSecondEngine, TEST_LABEL_KEY, TEST_LABELS, TEST_RUN_ID, testSpec, uniqueName } from '../docker/harness.ts';

const suffix = randomBytes(4).toString('hex');
const HOST_A = `lbt-host-a-${suffix}`;
const APP = `lifeboat-test/recover-app-${suffix}:1`;
const ARM = `lifeboat-test/recover-arm-${suffix}:1`;
const WAIT = 'trap "exit 0" TERM; sleep 600 & wait';

let dir: string;
let a: SecondEngine | undefined;
let engineA: DockerodeEngine;
let b: DockerodeEngine;
let repo: string;
let configA: string;
let configB: string;
let volume: string;
let mountpointA: string;
const names = { writer: uniqueName('writer'), checker: uniqueName('checker'), armapp: uniqueName('armapp') };
let appId: string;
let armId: string;
const snapshots: { id: string; time: string }[] = [];
/** The writer's runtime settings as engine A reported them: recovery must give it the same on B. */
let writerRuntime: RuntimeSettings;

const cliB = (args: string[]) => lifeboat(['--config', configB, ...args, '--json'], { timeoutMs: 180_000 });

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The same image with its config saying arm64: dockerd 20.10 ignores the
 * platform of an import, so the `docker save` archive is edited and loaded.
 * Its busybox is still this host's, so it runs on A: only its claim differs.
 */
async function armVariant(engine: DockerodeEngine, id: string, tag: string): Promise<string> {
  const work = path.join(dir, 'arm-image');
  await pipeline(await engine.saveImage(id), tarFs.extract(work));
  const manifest = JSON.parse(await fsp.readFile(path.join(work, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[] | null }[];
  const config = JSON.parse(await fsp.readFile(path.join(work, manifest[0]!.Config), 'utf8')) as Record<string, unknown>;
  const edited = Buffer.from(JSON.stringify({ ...config, architecture: 'arm64', variant: 'v8' }));
  const hex = createHash('sha256').update(edited).digest('hex');
  await fsp.writeFile(path.join(work, `${hex}.json`), edited);
  manifest[0] = { ...manifest[0]!, Config: `${hex}.json`, RepoTags: [tag] };
  await fsp.writeFile(path.join(work, 'manifest.json'), JSON.stringify(manifest));
  await engine.loadImage(Readable.from(tarFs.pack(work), { objectMode: false }));
  return `sha256:${hex}`;
}

beforeAll(async () => {
  b = await ensureEngine(DEFAULT_SOCKET);
  dir = await tempDir('lifeboat-recover-');
  a = await startSecondEngine(path.join(dir, 'engine-a'));
  engineA = await ensureEngine(a.socket);
  appId = await importBusyboxImage(a.socket, APP, [`LABEL ${TEST_LABEL_KEY}=${TEST_RUN_ID}`, 'CMD ["/bin/sh"]']);
  armId = await armVariant(engineA, appId, ARM);
  expect(await engineA.inspectImage(ARM)).toMatchObject({ id: armId, architecture: 'arm64' });
  expect(await b.inspectImage(appId)).toBeUndefined();

  volume = uniqueName('data');
  mountpointA = (await engineA.createVolume(volume, { labels: { ...TEST_LABELS } })).mountpoint;
  const data = (readOnly: boolean) => [{ type: 'volume' as const, name: volume, source: '', destination: '/data', readOnly }];
  const writer = await engineA.createContainer(
    testSpec({
      name: names.writer,
      image: APP,
      cmd: ['sh', '-c', 'trap "exit 0" TERM; echo started >> /data/starts; while true; do date > /data/tick; sleep 1 & wait $!; done'],
      mounts: data(false),
      runtime: {
        ...ENGINE_DEFAULTS,
        capAdd: ['NET_ADMIN'],
        capDrop: ['MKNOD'],
        securityOpt: ['no-new-privileges'],
        ulimits: [{ name: 'nofile', soft: 512, hard: 1024 }],
        shmSizeBytes: 16 * 1024 * 1024,
        ipcMode: 'shareable',
        resources: { ...ENGINE_DEFAULTS.resources, memoryBytes: 64 * 1024 * 1024, pidsLimit: 64 },
      },
    }),
  );
  writerRuntime = (await engineA.inspectContainer(writer))!.spec.runtime;
  const checker = await engineA.createContainer(
    testSpec({
      name: names.checker,
      image: APP,
      cmd: ['sh', '-c', WAIT],
      networkMode: `container:${names.writer}`,
      runtime: { ...ENGINE_DEFAULTS, ipcMode: `container:${names.writer}` },
      mounts: data(true),
      healthcheck: { test: ['CMD-SHELL', 'test -s /data/starts'], intervalNs: 1_000_000_000, timeoutNs: 5_000_000_000, retries: 3, startPeriodNs: 0 },
    }),
  );
  const armapp = await engineA.createContainer(testSpec({ name: names.armapp, image: ARM, cmd: ['sh', '-c', WAIT], mounts: data(true) }));
  for (const id of [writer, checker, armapp]) await engineA.start(id);
  await waitFor('the writer to start on A', async () => fs.existsSync(path.join(mountpointA, 'tick')));

  repo = path.join(dir, 'repo');
  configA = path.join(dir, 'a.toml');
  configB = path.join(dir, 'b.toml');
  await fsp.writeFile(configA, `[agent]\nhost = "${HOST_A}"\nstate_dir = "${path.join(dir, 'state-a')}"\n[docker]\nhost = "unix://${a.socket}"\n`);
  await fsp.writeFile(configB, `[agent]\nhost = "lbt-host-b"\nstate_dir = "${path.join(dir, 'state-b')}"\n[docker]\nhost = "unix://${DEFAULT_SOCKET}"\n`);
  await ok(['init', '--repo', repo]);
  for (const marker of ['one', 'two']) {
    await fsp.writeFile(path.join(mountpointA, 'marker'), `${marker}\n`);
    const r = (await ok(['--config', configA, 'backup', volume, '--repo', repo, '--json'], { timeoutMs: 120_000 })).json<{ snapshot: string }>();
    const listed = (await ok(['snapshots', '--repo', repo, '--json'])).json<{ id: string; time: string }[]>();
    snapshots.push(listed.find((s) => s.id === r.snapshot)!);
  }
  // Written after the last backup: a recovery must not have it.
  await fsp.writeFile(path.join(mountpointA, 'marker'), 'three\n');
  await fsp.writeFile(path.join(mountpointA, 'late'), 'after the last snapshot\n');
  await a.stop();
  await expect(engineA.ping()).rejects.toThrow();
}, 300_000);

afterAll(async () => {
  for (const name of Object.values(names)) await b.removeContainer(name, { force: true }).catch(() => undefined);
  await b.removeVolume(volume).catch(() => undefined);
  for (const n of await b.listNetworks()) if (n.labels['lifeboat.drill-from'] === HOST_A) await b.removeNetwork(n.id).catch(() => undefined);
  await cleanup(DEFAULT_SOCKET);
  for (const ref of [APP, appId, ARM, armId]) await removeImage(DEFAULT_SOCKET, ref, true).catch(() => undefined);
  await a?.stop();
  await cleanupDirs();
}, 120_000);

describe('recover and drill between two real engines', () => {
  it('a dry run names the arm64 blocker and changes nothing', async () => {
    const r = await cliB(['recover', '--from', HOST_A, '--repo', repo, '--dry-run']);
    expectFailure(r, 1, 'LB_ERR_RECOVERY_BLOCKED');
    const plan = r.json();
    expect(plan.dry_run).toBe(true);
    expect(plan.blockers).toEqual([`container ${names.armapp}: image ${ARM}: the image is for linux/arm64, and this engine is linux/amd64`]);
    expect(plan.containers.map((c: { name: string; action: string; start: boolean }) => [c.name, c.action, c.start])).toEqual([
      [names.armapp, 'create', true],
      [names.writer, 'create', true],
      [names.checker, 'create', true],
    ]);
    expect(plan.volumes).toMatchObject([{ name: volume, snapshot: snapshots[1]!.id, action: 'create' }]);
    expect(plan.images.map((i: { id: string; source: string }) => [i.id, i.source]).sort()).toEqual([[appId, 'repository'], [armId, 'repository']].sort());
    for (const name of Object.values(names)) expect(await b.inspectContainer(name)).toBeUndefined();
    expect(await b.inspectVolume(volume)).toBeUndefined();
    expect(await b.inspectImage(appId)).toBeUndefined();
  });

  it('a drill brings the copies up, healthy, on data equal to the snapshot, and leaves no trace', async () => {
    const before = { networks: (await b.listNetworks()).map((n) => n.id).sort() };
    const r = await cliB(['drill', '--from', HOST_A, '--repo', repo]);
    expectFailure(r, 1, 'LB_ERR_DRILL_FAILED'); // the arm64 container cannot run here
    const result = r.json();
    const row = (name: string) => result.containers.find((c: { name: string }) => c.name === name);
    expect(row(names.writer)).toMatchObject({ started: true, came_up: true, healthy: null, data_matched: true, reason: null });
    expect(row(names.checker)).toMatchObject({ started: true, came_up: true, healthy: true, data_matched: true, reason: null });
    expect(row(names.armapp)).toMatchObject({ started: false, came_up: null, reason: expect.stringContaining('linux/arm64') });
    expect(result.volumes).toMatchObject([{ name: volume, snapshot: snapshots[1]!.id, data_matched: true, difference_count: 0 }]);
    expect(result.images_loaded).toEqual([appId]);
    expect(result.cleanup).toEqual({ ok: true, left: [] });

    const run: string = result.run_id;
    const mine = (name: string, labels: Readonly<Record<string, string>> | null) => name.includes(run) || labels?.['lifeboat.drill'] === run;
    expect((await b.listContainers()).filter((c) => mine(c.name, c.labels))).toEqual([]);
    expect((await b.listVolumes()).filter((v) => mine(v.name, v.labels))).toEqual([]);
    expect((await b.listNetworks()).filter((n) => mine(n.name, n.labels))).toEqual([]);
    expect((await b.listNetworks()).map((n) => n.id).filter((id) => !before.networks.includes(id))).toEqual([]);
    expect(await b.inspectImage(appId)).toBeUndefined();
    for (const name of Object.values(names)) expect(await b.inspectContainer(name)).toBeUndefined();
  });

  it('recover brings the writer and the checker up with the last snapshot\'s data, and skips the arm64 container with its reason', async () => {
    const r = await cliB(['recover', '--from', HOST_A, '--repo', repo]);
    expectFailure(r, 1, 'LB_ERR_RECOVERY_INCOMPLETE');
    const report = r.json();
    const row = (name: string) => report.containers.find((c: { name: string }) => c.name === name);
    expect(row(names.writer)).toMatchObject({ outcome: 'started', reason: null });
    expect(row(names.checker)).toMatchObject({ outcome: 'started', reason: null });
    expect(row(names.armapp)).toMatchObject({ outcome: 'skipped', reason: `image ${ARM}: the image is for linux/arm64, and this engine is linux/amd64` });
    for (const c of [row(names.writer), row(names.checker)]) expect(c.rto_ms).toBeGreaterThan(0);
    expect(report.rto_ms).toBe(Math.max(row(names.writer).rto_ms, row(names.checker).rto_ms));
    expect(report.images.find((i: { id: string }) => i.id === appId)).toMatchObject({ outcome: 'loaded' });

    expect(await b.inspectImage(APP)).toMatchObject({ id: appId });
    expect(await b.inspectImage(armId)).toBeUndefined();
    const writer = (await b.inspectContainer(names.writer))!;
    expect(writer).toMatchObject({ state: 'running', imageId: appId, labels: { 'lifeboat.recovered-from': HOST_A } });
    expect(writer.spec.runtime).toEqual(writerRuntime);
    expect(writer.spec.runtime).toMatchObject({ capAdd: ['CAP_NET_ADMIN'], resources: { memoryBytes: 64 * 1024 * 1024, pidsLimit: 64 } });
    const checker = (await b.inspectContainer(names.checker))!;
    expect([checker.spec.networkMode, checker.spec.runtime.ipcMode]).toEqual([`container:${writer.id}`, `container:${writer.id}`]);
    await waitFor('the recovered checker to be healthy', async () => (await b.inspectContainer(names.checker))?.health === 'healthy');

    const mountpoint = (await b.inspectVolume(volume))!.mountpoint;
    expect(await fsp.readFile(path.join(mountpoint, 'marker'), 'utf8')).toBe('two\n');
    expect(fs.existsSync(path.join(mountpoint, 'late'))).toBe(false);
    // Started once on A (before the snapshot) and once here.
    await waitFor('the writer to start on B', async () => (await fsp.readFile(path.join(mountpoint, 'starts'), 'utf8')).split('\n').filter(Boolean).length === 2);
  });

  it('a second recover replaces nothing', async () => {
    const ids = { writer: (await b.inspectContainer(names.writer))!.id, checker: (await b.inspectContainer(names.checker))!.id };
    const r = await cliB(['recover', '--from', HOST_A, '--repo', repo]);
    expectFailure(r, 1, 'LB_ERR_RECOVERY_INCOMPLETE');
    const report = r.json();
    expect(report.containers.map((c: { name: string; action: string; outcome: string }) => [c.name, c.action, c.outcome])).toEqual([
      [names.armapp, 'create', 'skipped'],
      [names.writer, 'keep', 'kept'],
      [names.checker, 'keep', 'kept'],
    ]);
    expect(report.volumes).toMatchObject([{ action: 'keep', outcome: 'kept' }]);
    expect((await b.inspectContainer(names.writer))!.id).toBe(ids.writer);
    expect((await b.inspectContainer(names.checker))!.id).toBe(ids.checker);
    const mountpoint = (await b.inspectVolume(volume))!.mountpoint;
    expect((await fsp.readFile(path.join(mountpoint, 'starts'), 'utf8')).split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('--snapshot-time recovers from the first snapshot', async () => {
    for (const name of [names.checker, names.writer]) await b.removeContainer(name, { force: true });
    await b.removeVolume(volume);
    const r = await ok(['--config', configB, 'recover', '--from', HOST_A, '--repo', repo, '--snapshot-time', snapshots[0]!.time, '--container', names.writer, '--container', names.checker, '--json'], {
      timeoutMs: 180_000,
    });
    const report = r.json();
    expect(report.complete).toBe(true);
    expect(report.at).toBe(new Date(snapshots[0]!.time).toISOString());
    expect(report.volumes).toMatchObject([{ snapshot: snapshots[0]!.id, outcome: 'restored' }]);
    expect(report.images).toMatchObject([{ id: appId, source: 'engine' }]);
    const mountpoint = (await b.inspectVolume(volume))!.mountpoint;
    expect(await fsp.readFile(path.join(mountpoint, 'marker'), 'utf8')).toBe('one\n');
    expect((await b.inspectContainer(names.writer))!.state).toBe('running');
  });
});
