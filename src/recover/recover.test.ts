import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeEngine } from '../docker/fake-engine.ts';
import { ENGINE_DEFAULTS } from '../docker/runtime.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { deleteSnapshots, listSnapshots } from '../repo/snapshots.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { describeTree, diffTrees } from '../repo/testing/tree-compare.ts';
import { recover, type RecoverOptions, type RecoveryReport } from './recover.ts';
import { HOST, log, type SourceHost, sourceHost } from './testing/source-host.ts';

describe('recover (fake engines)', () => {
  let t: TestRepo;
  let src: SourceHost;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = await sourceHost(t);
    await src.backup('data');
    await src.backup('cache');
  });
  afterEach(async () => {
    src.close();
    await t.close();
  });

  const options = (over: Partial<RecoverOptions> = {}): RecoverOptions => ({ onlyHostSnapshots: true, pool: t.pool, workDir: src.workDir, log, ...over });
  const run = (over: Partial<RecoverOptions> = {}) => recover(src.b, t.repo, HOST, options(over));
  const container = (r: RecoveryReport, name: string) => r.containers.find((c) => c.name === name)!;
  const mutations = () => src.b.calls.map((c) => `${c.method} ${c.target}`);

  it('a dry run names every blocker and changes nothing', async () => {
    src.b.addImage({ repoTags: ['other:1'] });
    const foreign = await src.b.createContainer(spec('cacher', 'other:1', { networkMode: 'none', mounts: [volumeMount('cache', '/cache')] }));
    await fsp.writeFile(path.join((await src.b.inspectVolume('cache'))!.mountpoint, 'mine'), 'not from host-a');
    const listener = net.createServer().listen(src.port, '127.0.0.1');
    await new Promise((r) => listener.once('listening', r));
    const before = mutations();
    try {
      const r = await run({ dryRun: true });
      expect(mutations()).toEqual(before);
      expect(r.dry_run).toBe(true);
      expect(r.complete).toBe(false);
      expect([...r.blockers].sort()).toEqual([
        'container armapp: image arm:1: the image is for linux/arm64, and this engine is linux/amd64',
        `container cacher: a container named cacher exists here and was not made by a recovery of ${HOST}; remove or rename it, or pass --force to replace it`,
        'container cacher: volume cache: volume cache exists here and is not empty; pass --force to replace its contents',
        `container web: host port 127.0.0.1:${src.port}/tcp is in use on this host`,
        'volume cache: volume cache exists here and is not empty; pass --force to replace its contents',
      ]);
      expect(r.containers.map((c) => [c.name, c.action, c.start])).toEqual([
        ['armapp', 'create', true],
        ['cacher', 'create', true],
        ['db', 'create', true],
        ['idle', 'create', false],
        ['side', 'create', true],
        ['web', 'create', true],
      ]);
      expect(container(r, 'cacher').id).toBe(foreign);
      expect(r.images.map((i) => [i.tags[0], i.source, i.platform])).toEqual(
        expect.arrayContaining([
          ['app:1', 'repository', 'linux/amd64'],
          ['arm:1', 'repository', 'linux/arm64'],
        ]),
      );
      expect(r.volumes.map((v) => [v.name, v.action])).toEqual([
        ['cache', 'create'],
        ['data', 'create'],
      ]);
      expect(r.networks).toEqual([{ name: 'appnet', action: 'create', outcome: null }]);
      expect(r.engine).toMatchObject({ os: 'linux', architecture: 'amd64', volume_drivers: ['local'] });
      expect(r.rto_ms).toBeNull();
    } finally {
      listener.close();
    }
  });

  it('loads images, restores volumes, creates the network and the containers, starts in dependency order what ran, and skips what cannot run', async () => {
    const progress = new Map<string, { files: number; total: number }>();
    const r = await run({ onProgress: (volume, done, total) => progress.set(volume, { files: done.files, total: total.files }) });
    // each restored volume reported its progress against its snapshot's totals
    expect(progress.size).toBeGreaterThan(0);
    for (const [volume, p] of progress) expect(p.files, volume).toBeLessThanOrEqual(p.total);
    expect(r.dry_run).toBe(false);
    expect(r.complete).toBe(false);
    expect(r.containers.map((c) => [c.name, c.outcome])).toEqual([
      ['armapp', 'skipped'],
      ['cacher', 'started'],
      ['db', 'started'],
      ['idle', 'created'],
      ['side', 'started'],
      ['web', 'started'],
    ]);
    expect(container(r, 'armapp').reason).toBe('image arm:1: the image is for linux/arm64, and this engine is linux/amd64');
    const starts = src.b.calls.filter((c) => c.method === 'start').map((c) => c.target);
    const ids = Object.fromEntries(r.containers.map((c) => [c.name, c.id]));
    expect(starts).toEqual([ids.cacher, ids.db, ids.side, ids.web]);

    const b = src.b;
    expect(await b.inspectImage('app:1')).toMatchObject({ id: (await src.a.inspectImage('app:1'))!.id });
    expect(await b.inspectImage('arm:1')).toBeUndefined();
    expect(r.images.find((i) => i.tags[0] === 'app:1')!.outcome).toBe('loaded');
    for (const v of ['data', 'cache']) {
      const [from, to] = [(await src.a.inspectVolume(v))!, (await b.inspectVolume(v))!];
      expect(diffTrees(await describeTree(from.mountpoint), await describeTree(to.mountpoint), { root: false })).toEqual([]);
      expect(to.labels).toMatchObject({ ...from.labels, 'lifeboat.recovered-from': HOST });
    }
    expect((await b.listNetworks()).find((n) => n.name === 'appnet')).toMatchObject({ internal: false, labels: { 'lifeboat.recovered-from': HOST } });

    const web = (await b.inspectContainer('web'))!;
    expect(web.state).toBe('running');
    expect(web.spec).toMatchObject({
      image: 'app:1',
      networkMode: 'appnet',
      networks: [{ name: 'appnet', aliases: ['www'] }],
      portBindings: [{ containerPort: '80/tcp', hostIp: '127.0.0.1', hostPort: String(src.port) }],
      labels: { 'lifeboat.depends-on': 'db', 'lifeboat.recovered-from': HOST },
    });
    const side = (await b.inspectContainer('side'))!.spec;
    expect([side.networkMode, side.runtime.ipcMode, side.runtime.pidMode]).toEqual(Array(3).fill(`container:${ids.db}`));
    const db = (await b.inspectContainer('db'))!.spec;
    expect(db.env).toEqual(['ROLE=db']);
    expect(db.runtime).toEqual((await src.a.inspectContainer('db'))!.spec.runtime);
    expect(db.runtime).toMatchObject({ capAdd: ['CAP_IPC_LOCK'], resources: { memoryBytes: 512 * 1024 * 1024, pidsLimit: 200 } });
    expect((await b.inspectContainer('idle'))!.state).toBe('created');

    for (const c of r.containers.filter((x) => x.outcome === 'started')) {
      expect(c.rto_ms).toBeGreaterThanOrEqual(0);
      expect(c.rto_ms).toBeLessThanOrEqual(r.duration_ms);
    }
    expect(r.rto_ms).toBe(Math.max(...r.containers.map((c) => c.rto_ms ?? 0)));
  });

  it('runs again without replacing anything, and starts what an interrupted run left stopped', async () => {
    src.b.failNext('start');
    const first = await run();
    expect(container(first, 'cacher')).toMatchObject({ outcome: 'failed', reason: 'injected failure of start' });
    const data = (await src.b.inspectVolume('data'))!.mountpoint;
    await fsp.writeFile(path.join(data, 'written-after-recovery'), 'keep me');
    const made = mutations().length;

    const second = await run();
    const again = mutations().slice(made);
    expect(again).toEqual([`start ${container(first, 'cacher').id}`]);
    expect(second.containers.map((c) => [c.name, c.action, c.outcome])).toEqual([
      ['armapp', 'create', 'skipped'],
      ['cacher', 'keep', 'kept'],
      ['db', 'keep', 'kept'],
      ['idle', 'keep', 'kept'],
      ['side', 'keep', 'kept'],
      ['web', 'keep', 'kept'],
    ]);
    expect(container(second, 'cacher').rto_ms).toBeGreaterThanOrEqual(0);
    expect(container(second, 'db').rto_ms).toBeNull();
    expect(second.volumes.map((v) => v.outcome)).toEqual(['kept', 'kept']);
    expect(await fsp.readFile(path.join(data, 'written-after-recovery'), 'utf8')).toBe('keep me');
    expect((await src.b.inspectContainer('idle'))!.state).toBe('created');
  });

  it('restores again a volume whose recovery stopped before its containers were made', async () => {
    src.b.failNext('createContainer');
    const first = await run({ containers: ['cacher'] });
    expect(container(first, 'cacher').outcome).toBe('failed');
    const cache = (await src.b.inspectVolume('cache'))!.mountpoint;
    await fsp.writeFile(path.join(cache, 'half-restored'), 'junk');

    const second = await run({ containers: ['cacher'] });
    expect(second.volumes.map((v) => [v.name, v.action, v.outcome])).toEqual([['cache', 'restore', 'restored']]);
    expect(container(second, 'cacher').outcome).toBe('started');
    expect(await fsp.readdir(cache)).toEqual(['entries']);
    expect(second.complete).toBe(true);
  });

  it('--force replaces a container and a volume that a recovery did not make; a dependent of a blocked container is skipped', async () => {
    src.b.addImage({ repoTags: ['other:1'] });
    const foreign = await src.b.createContainer(spec('db', 'other:1', { networkMode: 'none' }));
    await src.b.start(foreign);
    const vol = (await src.b.createVolume('cache')).mountpoint;
    await fsp.writeFile(path.join(vol, 'stale'), 'x');

    const blocked = await run({ containers: ['cacher', 'db', 'side'] });
    expect(blocked.containers.map((c) => [c.name, c.outcome])).toEqual([
      ['cacher', 'skipped'],
      ['db', 'skipped'],
      ['side', 'skipped'],
    ]);
    expect(container(blocked, 'side').reason).toBe('needs container db, which cannot be recovered');
    expect((await src.b.inspectContainer('db'))!.id).toBe(foreign);
    expect(await fsp.readdir(vol)).toEqual(['stale']);

    const forced = await run({ containers: ['cacher', 'db', 'side'], force: true });
    expect(forced.containers.map((c) => [c.name, c.action, c.outcome])).toEqual([
      ['cacher', 'create', 'started'],
      ['db', 'replace', 'started'],
      ['side', 'create', 'started'],
    ]);
    expect(forced.volumes.find((v) => v.name === 'cache')).toMatchObject({ action: 'replace', outcome: 'restored' });
    expect(await src.b.inspectContainer(foreign)).toBeUndefined();
    expect((await src.b.inspectContainer('db'))!.labels['lifeboat.recovered-from']).toBe(HOST);
    expect(await fsp.readdir(vol)).toEqual(['entries']);
    expect(forced.complete).toBe(true);
  });

  it('blocks on what this engine lacks: a bind mount source, a volume driver, a device, CPUs, an image in no snapshot', async () => {
    const binder = await src.a.createContainer(
      spec('binder', 'app:1', { networkMode: 'none', mounts: [volumeMount('data', '/data'), { type: 'bind', source: src.workDir, destination: '/w', readOnly: false }] }),
    );
    await src.backup('data');
    await src.a.removeContainer(binder);
    await fsp.rm(src.workDir, { recursive: true, force: true });
    const binds = await run({ dryRun: true, containers: ['binder'] });
    expect(binds.blockers).toEqual([`container binder: bind mount source ${src.workDir} does not exist on this host`]);

    const plugin = new FakeEngine({ root: await t.temp.make(), info: { volumeDrivers: ['other'] } });
    const noDriver = await recover(plugin, t.repo, HOST, options({ dryRun: true, containers: ['cacher'] }));
    expect(noDriver.blockers).toEqual([
      'volume cache: volume driver local is not available on this engine (it has other)',
      'container cacher: volume cache: volume driver local is not available on this engine (it has other)',
    ]);

    const missing = path.join(src.workDir, 'no-such-device');
    const resources = { ...ENGINE_DEFAULTS.resources, nanoCpus: 2e9, cpusetCpus: '0-1', memoryBytes: 2 ** 31 };
    await src.a.createContainer(
      spec('tuned', 'app:1', { networkMode: 'none', mounts: [volumeMount('data', '/data')], runtime: { ...ENGINE_DEFAULTS, devices: [{ pathOnHost: missing, pathInContainer: '/dev/x', cgroupPermissions: 'rwm' }], resources } }),
    );
    await src.backup('data');
    const small = new FakeEngine({ root: await t.temp.make(), info: { cpus: 1, memoryBytes: 2 ** 30 } });
    const tuned = await recover(small, t.repo, HOST, options({ dryRun: true, containers: ['tuned'] }));
    expect(tuned.blockers).toEqual([
      `container tuned: device ${missing} does not exist on this host`,
      'container tuned: it was given 2 CPUs (--cpus), and this engine has 1',
      'container tuned: it is pinned to CPUs 0-1, and this engine has CPUs 0-0',
    ]);
    expect(tuned.warnings).toContain("container tuned: its memory limit (2.00 GiB) is above this host's memory (1.00 GiB)");

    deleteSnapshots(t.repo, listSnapshots(t.repo).filter((s) => s.tags.includes('image')).map((s) => s.id));
    const noImage = await run({ dryRun: true, containers: ['cacher'] });
    expect(noImage.blockers).toEqual(['container cacher: image app:1: not on this engine, and its image snapshot is not in the repository']);
    expect(noImage.images).toMatchObject([{ tags: ['app:1'], source: 'missing', snapshot: null }]);
  });
});
