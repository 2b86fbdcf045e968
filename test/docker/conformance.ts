/**
 * One behavioural suite for every DockerEngine: the in-memory fake
 * (fake.conformance.test.ts) and dockerd through dockerode
 * (real.conformance.test.ts). When the fake and the engine disagree, this is
 * where it shows.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerSpec, DockerEngine, EngineEvent } from '../../src/docker/engine.ts';
import { EngineRequestError } from '../../src/errors/errors.ts';
import { ENGINE_DEFAULTS, type RuntimeSettings } from '../../src/docker/runtime.ts';
import { TEST_LABELS, testSpec, uniqueName } from './harness.ts';

/** Runtime settings a container created with --network none may have, each away from its default. */
const RICH_RUNTIME: RuntimeSettings = {
  privileged: false,
  capAdd: ['NET_ADMIN', 'CAP_SYS_PTRACE'],
  capDrop: ['mknod'],
  securityOpt: ['no-new-privileges'],
  devices: [{ pathOnHost: '/dev/null', pathInContainer: '/dev/lbt-null', cgroupPermissions: 'rwm' }],
  readonlyRootfs: true,
  init: false,
  tty: true,
  openStdin: true,
  stopTimeoutS: 7,
  shmSizeBytes: 32 * 1024 * 1024,
  tmpfs: { '/run': 'size=1m' },
  sysctls: { 'net.ipv4.ip_forward': '1' },
  ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }],
  extraHosts: ['db.example:10.0.0.5'],
  dns: ['10.0.0.53'],
  dnsSearch: ['example'],
  dnsOptions: ['ndots:2'],
  groupAdd: ['1234'],
  ipcMode: 'shareable',
  pidMode: '',
  resources: {
    memoryBytes: 64 * 1024 * 1024,
    memoryReservationBytes: 32 * 1024 * 1024,
    memorySwapBytes: 0,
    nanoCpus: 500_000_000,
    cpuShares: 512,
    cpuQuota: 0,
    cpuPeriod: 0,
    cpusetCpus: '0',
    cpusetMems: '',
    pidsLimit: 50,
  },
};

export interface ConformanceTarget {
  readonly engine: DockerEngine;
  /** An image (tag) whose containers can run `sh -c` and `sleep`. */
  readonly image: string;
  /** Makes a fresh small image under this tag, labelled for cleanup; returns its id. */
  makeImage(tag: string): Promise<string>;
  /** `docker rmi` of a reference. */
  removeImage(ref: string): Promise<void>;
  /** Removes everything the suite created. */
  cleanup(): Promise<void>;
}

/** Collects an engine's events in the background; waitFor() resolves on the first match. */
export class EventCollector {
  readonly events: EngineEvent[] = [];
  error: unknown;
  readonly done: Promise<void>;
  readonly #abort = new AbortController();
  #notify: (() => void) | undefined;

  constructor(engine: DockerEngine, opts: { since?: number } = {}) {
    this.done = (async () => {
      try {
        for await (const event of engine.events({ ...opts, signal: this.#abort.signal })) {
          this.events.push(event);
          this.#notify?.();
        }
      } catch (err) {
        this.error = err;
      }
      this.#notify?.();
    })();
  }

  async waitFor(match: (e: EngineEvent) => boolean, what: string, timeoutMs = 10_000): Promise<EngineEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (this.error) throw this.error;
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.events.map((e) => `${e.type} ${e.action} ${e.id.slice(0, 12)}`).join('\n  ');
        throw new Error(`no ${what} event within ${timeoutMs} ms; saw:\n  ${seen}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#notify = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Actions on one object, in order. */
  actions(type: EngineEvent['type'], id: string): string[] {
    return this.events.filter((e) => e.type === type && e.id === id).map((e) => e.action);
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }
}

/** Whether `sub` appears in `list` in order (other items may come between). */
function isSubsequence(sub: readonly string[], list: readonly string[]): boolean {
  let i = 0;
  for (const item of list) if (item === sub[i]) i++;
  return i === sub.length;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

const nowSeconds = () => Math.floor(Date.now() / 1000) - 1;

export function describeEngineConformance(name: string, makeTarget: () => Promise<ConformanceTarget>): void {
  describe(`DockerEngine conformance: ${name}`, () => {
    let t: ConformanceTarget;
    let engine: DockerEngine;
    let tmp: string;

    beforeAll(async () => {
      t = await makeTarget();
      engine = t.engine;
      tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-conf-'));
    });

    afterAll(async () => {
      await t?.cleanup();
      if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    });

    const spec = (over: Partial<ContainerSpec> & { name: string }): ContainerSpec => testSpec({ image: t.image, ...over });

    it('reports the engine platform and answers ping', async () => {
      await engine.ping();
      const info = await engine.info();
      expect(info.os).toBe('linux');
      expect(info.architecture).toMatch(/^(amd64|arm64|arm|386|ppc64le|s390x|riscv64)$/);
      expect(info.apiVersion).toMatch(/^\d+\.\d+$/);
      expect(info.serverVersion).not.toBe('');
      expect(info.osVersion).not.toBe('');
      const networks = await engine.listNetworks();
      expect(networks.find((n) => n.name === 'none')?.driver).toBe('null');
      expect(networks.find((n) => n.name === 'host')?.driver).toBe('host');
    });

    it('creates, inspects, lists and removes a volume whose mountpoint holds its data', async () => {
      const vol = uniqueName('vol');
      expect(await engine.inspectVolume(vol)).toBeUndefined();
      const created = await engine.createVolume(vol, { labels: { ...TEST_LABELS, purpose: 'conformance' } });
      expect(created).toMatchObject({ name: vol, driver: 'local', labels: { ...TEST_LABELS, purpose: 'conformance' } });
      expect(created.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      expect(path.isAbsolute(created.mountpoint)).toBe(true);
      expect(await engine.inspectVolume(vol)).toEqual(created);
      expect((await engine.listVolumes()).find((v) => v.name === vol)).toEqual(created);

      await fsp.writeFile(path.join(created.mountpoint, 'hello.txt'), 'written through the host path\n');
      expect(await fsp.readFile(path.join(created.mountpoint, 'hello.txt'), 'utf8')).toBe('written through the host path\n');

      // Creating it again answers the existing volume, data intact.
      const again = await engine.createVolume(vol, { labels: { ...TEST_LABELS, purpose: 'conformance' } });
      expect(again.mountpoint).toBe(created.mountpoint);
      expect(await fsp.readdir(created.mountpoint)).toEqual(['hello.txt']);

      await engine.removeVolume(vol);
      expect(await engine.inspectVolume(vol)).toBeUndefined();
      await expect(engine.removeVolume(vol)).rejects.toBeInstanceOf(EngineRequestError);
    });

    it('creates a container from a spec and inspects the same spec back', async () => {
      const vol = uniqueName('data');
      const volume = await engine.createVolume(vol, { labels: { ...TEST_LABELS } });
      const hostDir = await fsp.mkdtemp(path.join(tmp, 'bind-'));
      const name = uniqueName('spec');
      const wanted = spec({
        name,
        env: ['A=1', 'B=two words'],
        cmd: ['sh', '-c', 'sleep 600'],
        workingDir: '/data',
        user: '0:0',
        hostname: 'conformance',
        labels: { app: 'conformance', 'lifeboat.pause-during-backup': 'true' },
        exposedPorts: ['9000/tcp'],
        portBindings: [{ containerPort: '80/tcp', hostIp: '127.0.0.1', hostPort: '18080' }],
        mounts: [
          { type: 'volume', name: vol, source: '', destination: '/data', readOnly: false },
          { type: 'tmpfs', source: '', destination: '/scratch', readOnly: false },
          { type: 'bind', source: hostDir, destination: '/host', readOnly: true },
        ],
        restartPolicy: { name: 'on-failure', maximumRetryCount: 3 },
        stopSignal: 'SIGINT',
        healthcheck: { test: ['CMD-SHELL', 'true'], intervalNs: 5_000_000_000, timeoutNs: 2_000_000_000, retries: 2, startPeriodNs: 3_000_000_000 },
        runtime: RICH_RUNTIME,
      });
      const id = await engine.createContainer(wanted);
      expect(id).toMatch(/^[0-9a-f]{64}$/);

      const detail = await engine.inspectContainer(id);
      expect(detail).toBeDefined();
      expect(detail!.spec).toEqual({
        ...wanted,
        exposedPorts: ['80/tcp', '9000/tcp'],
        mounts: [
          { type: 'volume', name: vol, source: volume.mountpoint, destination: '/data', readOnly: false },
          { type: 'bind', source: hostDir, destination: '/host', readOnly: true },
          { type: 'tmpfs', source: '', destination: '/scratch', readOnly: false },
        ],
        networks: [{ name: 'none', aliases: [] }],
        runtime: {
          ...RICH_RUNTIME,
          capAdd: ['CAP_NET_ADMIN', 'CAP_SYS_PTRACE'],
          capDrop: ['CAP_MKNOD'],
          resources: { ...RICH_RUNTIME.resources, memorySwapBytes: 2 * RICH_RUNTIME.resources.memoryBytes },
        },
      });
      expect(detail).toMatchObject({ id, name, image: t.image, state: 'created', labels: wanted.labels, mounts: detail!.spec.mounts });
      expect(detail!.imageId).toBe((await engine.inspectImage(t.image))!.id);
      expect(await engine.inspectContainer(name)).toEqual(detail);

      const summary = (await engine.listContainers()).find((c) => c.id === id);
      const { spec: _spec, ...detailSummary } = detail!;
      expect(summary).toEqual(detailSummary);

      // The name is taken; an unknown image is refused.
      await expect(engine.createContainer(wanted)).rejects.toBeInstanceOf(EngineRequestError);
      await expect(engine.createContainer(spec({ name: uniqueName('noimg'), image: 'lifeboat-test/absent:0' }))).rejects.toBeInstanceOf(
        EngineRequestError,
      );
      // A volume in use is not removed.
      await expect(engine.removeVolume(vol)).rejects.toBeInstanceOf(EngineRequestError);

      await engine.removeContainer(id);
      expect(await engine.inspectContainer(id)).toBeUndefined();
      await engine.removeVolume(vol);
    });

    it('answers undefined for what does not exist', async () => {
      expect(await engine.inspectContainer(uniqueName('missing'))).toBeUndefined();
      expect(await engine.inspectContainer('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef')).toBeUndefined();
      expect(await engine.inspectVolume(uniqueName('missing'))).toBeUndefined();
      expect(await engine.inspectImage('lifeboat-test/absent:0')).toBeUndefined();
      await expect(engine.start(uniqueName('missing'))).rejects.toBeInstanceOf(EngineRequestError);
    });

    it('moves a container through start, pause, unpause and stop, with the events the engine emits', async () => {
      const vol = uniqueName('life');
      await engine.createVolume(vol, { labels: { ...TEST_LABELS } });
      const events = new EventCollector(engine, { since: nowSeconds() });
      try {
        const cname = uniqueName('life');
        const id = await engine.createContainer(
          spec({
            name: cname,
            // Exits at once on SIGTERM (a bare sleep as pid 1 ignores it).
            cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'],
            mounts: [{ type: 'volume', name: vol, source: '', destination: '/data', readOnly: false }],
          }),
        );
        const state = async () => (await engine.inspectContainer(id))!.state;
        expect(await state()).toBe('created');
        await expect(engine.pause(id)).rejects.toBeInstanceOf(EngineRequestError);
        await expect(engine.unpause(id)).rejects.toBeInstanceOf(EngineRequestError);

        await engine.start(id);
        expect(await state()).toBe('running');
        await engine.start(id); // already running: no error
        expect(await state()).toBe('running');

        await engine.pause(id);
        expect(await state()).toBe('paused');
        await expect(engine.pause(id)).rejects.toBeInstanceOf(EngineRequestError);
        await expect(engine.start(id)).rejects.toBeInstanceOf(EngineRequestError);
        await expect(engine.exec(id, ['true'], { timeoutMs: 5000 })).rejects.toBeInstanceOf(EngineRequestError);

        await engine.unpause(id);
        expect(await state()).toBe('running');
        await expect(engine.unpause(id)).rejects.toBeInstanceOf(EngineRequestError);

        await engine.stop(id, 5);
        expect(await state()).toBe('exited');
        await engine.stop(id, 5); // already stopped: no error
        await expect(engine.pause(id)).rejects.toBeInstanceOf(EngineRequestError);
        await expect(engine.exec(id, ['true'], { timeoutMs: 5000 })).rejects.toBeInstanceOf(EngineRequestError);

        await engine.start(id);
        expect(await state()).toBe('running');
        await expect(engine.removeContainer(id)).rejects.toBeInstanceOf(EngineRequestError);
        await engine.removeContainer(id, { force: true });
        expect(await engine.inspectContainer(id)).toBeUndefined();

        await events.waitFor((e) => e.type === 'container' && e.id === id && e.action === 'destroy', 'container destroy');
        const actions = events.actions('container', id);
        expect(isSubsequence(['create', 'start', 'pause', 'unpause', 'die', 'stop', 'start', 'die', 'destroy'], actions)).toBe(true);
        const start = events.events.find((e) => e.type === 'container' && e.id === id && e.action === 'start')!;
        expect(start.attributes).toMatchObject({ name: cname, image: t.image, ...TEST_LABELS });
        const die = events.events.find((e) => e.type === 'container' && e.id === id && e.action === 'die')!;
        expect(die.attributes.exitCode).toBe('0');
        await events.waitFor((e) => e.type === 'volume' && e.id === vol && e.action === 'mount', 'volume mount');
        expect(events.events.find((e) => e.type === 'volume' && e.id === vol && e.action === 'mount')!.attributes).toMatchObject({
          container: id,
          destination: '/data',
        });
        const times = events.events.map((e) => e.timeNano);
        for (let i = 1; i < times.length; i++) expect(times[i]! > times[i - 1]!).toBe(true);

        await engine.removeVolume(vol);
        await events.waitFor((e) => e.type === 'volume' && e.id === vol && e.action === 'destroy', 'volume destroy');
        expect(isSubsequence(['create', 'mount', 'unmount', 'destroy'], events.actions('volume', vol))).toBe(true);
      } finally {
        await events.stop();
      }
      expect(events.error).toBeUndefined();
    });

    it('runs commands in a running container: exit codes, output, timeouts', async () => {
      const id = await engine.createContainer(spec({ name: uniqueName('exec') }));
      await engine.start(id);
      try {
        expect(await engine.exec(id, ['sh', '-c', 'echo hello'], { timeoutMs: 10_000 })).toEqual({ exitCode: 0, output: 'hello\n', timedOut: false });
        const failed = await engine.exec(id, ['sh', '-c', 'echo to-stderr >&2; exit 3'], { timeoutMs: 10_000 });
        expect(failed).toEqual({ exitCode: 3, output: 'to-stderr\n', timedOut: false });

        const big = await engine.exec(
          id,
          ['sh', '-c', 'i=0; while [ $i -lt 3000 ]; do echo "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done'],
          { timeoutMs: 20_000 },
        );
        expect(big.exitCode).toBe(0);
        expect(big.output.length).toBeLessThanOrEqual(64 * 1024);
        expect(big.output.length).toBeGreaterThan(60 * 1024);
        expect(big.output.endsWith('line-2999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n')).toBe(true);

        const missing = await engine.exec(id, ['lifeboat-no-such-command'], { timeoutMs: 10_000 });
        expect(missing).toMatchObject({ exitCode: 126, timedOut: false });
        expect(missing.output).toContain('executable file not found');

        const started = Date.now();
        const slow = await engine.exec(id, ['sh', '-c', 'echo before; sleep 5'], { timeoutMs: 500 });
        expect(Date.now() - started).toBeLessThan(3000);
        expect(slow.timedOut).toBe(true);
        expect(slow.output).toBe('before\n');
      } finally {
        await engine.removeContainer(id, { force: true });
      }
    });

    it('holds a session open: lines answered as they come, stdin closed ends it, an early end fails the reader', async () => {
      const id = await engine.createContainer(spec({ name: uniqueName('session') }));
      await engine.start(id);
      try {
        // a tiny line-oriented server: echoes each line it reads, prefixed, until its input ends
        const s = await engine.session(id, ['sh', '-c', 'while read -r line; do echo "got:$line"; echo "err:$line" >&2; done; echo bye']);
        await s.write('one\n');
        // stdout and stderr are separate pipes: both lines arrive, in either order
        const seen = new Set<string>();
        await s.readUntil((l) => seen.add(l).has('got:one') && seen.has('err:one'), 10_000);
        expect([...seen].sort()).toEqual(['err:one', 'got:one']);
        await s.write('two\nthree\n');
        expect(await s.readUntil((l) => l === 'got:three', 10_000)).toContain('got:two');
        await expect(s.readUntil((l) => l === 'never', 300)).rejects.toBeInstanceOf(EngineRequestError);
        await s.close(10_000);
        await expect(s.readUntil((l) => l === 'never', 5000)).rejects.toThrow(/ended/);

        const quits = await engine.session(id, ['sh', '-c', 'echo ready; exit 4']);
        await expect(quits.readUntil((l) => l === 'answer', 10_000)).rejects.toThrow(/ready/);
        await quits.close(1000);
      } finally {
        await engine.removeContainer(id, { force: true });
      }
    });

    it('saves an image and loads it back with the same id, layers and tag', async () => {
      const tag = `lifeboat-test/roundtrip-${uniqueName('img').slice(4)}:1`;
      const id = await t.makeImage(tag);
      const before = await engine.inspectImage(tag);
      expect(before).toMatchObject({ id, repoTags: [tag], os: 'linux' });
      expect(before!.layers.length).toBeGreaterThan(0);
      expect((await engine.listImages()).find((i) => i.id === id)).toEqual(before);

      const tar = await collect(await engine.saveImage(tag));
      expect(tar.length).toBeGreaterThan(1024);
      await t.removeImage(tag);
      expect(await engine.inspectImage(tag)).toBeUndefined();
      expect(await engine.inspectImage(id)).toBeUndefined();

      await engine.loadImage(Readable.from([tar]));
      const after = await engine.inspectImage(tag);
      expect(after).toEqual(before);

      await expect(engine.loadImage(Readable.from([Buffer.from('this is not a tar archive')]))).rejects.toBeInstanceOf(EngineRequestError);
      await t.removeImage(tag);
    });

    it('lists its volume drivers and, on Linux, no default isolation', async () => {
      const info = await engine.info();
      expect(info.volumeDrivers).toContain('local');
      expect(info.isolation).toBeNull();
    });

    it('removes an image, refusing one a container uses and one that does not exist', async () => {
      const tag = `lifeboat-test/rmi-${uniqueName('img').slice(4)}:1`;
      const id = await t.makeImage(tag);
      const user = await engine.createContainer(spec({ name: uniqueName('rmi'), image: tag, cmd: ['/bin/sh'] }));
      await expect(engine.removeImage(id)).rejects.toBeInstanceOf(EngineRequestError);
      await engine.removeContainer(user);
      await engine.removeImage(id);
      expect(await engine.inspectImage(id)).toBeUndefined();
      expect(await engine.inspectImage(tag)).toBeUndefined();
      await expect(engine.removeImage(id)).rejects.toBeInstanceOf(EngineRequestError);
    });

    it('creates an internal network with labels, refuses a taken name, and removes it unless a running container uses it', async () => {
      const name = uniqueName('net');
      const created = await engine.createNetwork({ name, internal: true, labels: { ...TEST_LABELS } });
      let user: string | undefined;
      try {
        expect(created).toMatchObject({ name, driver: 'bridge', internal: true, labels: { ...TEST_LABELS } });
        expect((await engine.listNetworks()).find((n) => n.name === name)).toEqual(created);
        await expect(engine.createNetwork({ name })).rejects.toBeInstanceOf(EngineRequestError);

        user = await engine.createContainer(
          spec({ name: uniqueName('netuser'), cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'], networkMode: name, networks: [{ name, aliases: ['web'] }] }),
        );
        expect((await engine.inspectContainer(user))!.spec.networks).toEqual([{ name, aliases: ['web'] }]);
        await engine.start(user);
        await expect(engine.removeNetwork(name)).rejects.toBeInstanceOf(EngineRequestError);
        await engine.removeContainer(user, { force: true });
        user = undefined;
        await engine.removeNetwork(name);
        expect((await engine.listNetworks()).some((n) => n.name === name)).toBe(false);
        await expect(engine.removeNetwork(name)).rejects.toBeInstanceOf(EngineRequestError);
        await expect(engine.removeNetwork('none')).rejects.toBeInstanceOf(EngineRequestError);
      } finally {
        if (user) await engine.removeContainer(user, { force: true });
        await engine.removeNetwork(name).catch(() => undefined);
      }
    });

    it('keeps network, IPC and PID mode container:<name> as container:<id>, and its defaults for a spec that leaves them', async () => {
      const first = await engine.createContainer(spec({ name: uniqueName('netns'), runtime: { ...ENGINE_DEFAULTS, ipcMode: 'shareable' } }));
      const owner = `container:${(await engine.inspectContainer(first))!.name}`;
      const second = await engine.createContainer(
        spec({ name: uniqueName('joiner'), networkMode: owner, networks: [], runtime: { ...ENGINE_DEFAULTS, ipcMode: owner, pidMode: owner } }),
      );
      try {
        const joiner = (await engine.inspectContainer(second))!.spec;
        expect(joiner.networkMode).toBe(`container:${first}`);
        expect(joiner.runtime).toEqual({ ...ENGINE_DEFAULTS, shmSizeBytes: 64 * 1024 * 1024, ipcMode: `container:${first}`, pidMode: `container:${first}` });
      } finally {
        await engine.removeContainer(second, { force: true });
        await engine.removeContainer(first, { force: true });
      }
    });

    it('refuses more CPUs than it has at create, and a device this host lacks at start', async () => {
      const { cpus } = await engine.info();
      expect(cpus).toBeGreaterThan(0);
      const limits = { ...ENGINE_DEFAULTS.resources };
      for (const resources of [{ ...limits, nanoCpus: (cpus + 1) * 1e9 }, { ...limits, cpusetCpus: String(cpus) }]) {
        await expect(engine.createContainer(spec({ name: uniqueName('cpus'), runtime: { ...ENGINE_DEFAULTS, resources } }))).rejects.toBeInstanceOf(EngineRequestError);
      }
      const devices = [{ pathOnHost: path.join(tmp, 'no-such-device'), pathInContainer: '/dev/lbt', cgroupPermissions: 'rwm' }];
      const id = await engine.createContainer(spec({ name: uniqueName('device'), runtime: { ...ENGINE_DEFAULTS, devices } }));
      try {
        await expect(engine.start(id)).rejects.toBeInstanceOf(EngineRequestError);
      } finally {
        await engine.removeContainer(id, { force: true });
      }
    });

    it('reports the health of a running container that has a healthcheck, and only then', async () => {
      const checked = await engine.createContainer(
        spec({
          name: uniqueName('health'),
          cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'],
          healthcheck: { test: ['CMD-SHELL', 'true'], intervalNs: 1_000_000_000, timeoutNs: 5_000_000_000, retries: 3, startPeriodNs: 0 },
        }),
      );
      const plain = await engine.createContainer(spec({ name: uniqueName('nohealth'), cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 600 & wait'] }));
      try {
        expect((await engine.inspectContainer(checked))!.health).toBeUndefined();
        await engine.start(checked);
        await engine.start(plain);
        const deadline = Date.now() + 60_000;
        let health = (await engine.inspectContainer(checked))!.health;
        while (health !== 'healthy' && Date.now() < deadline) {
          expect(health).toBe('starting');
          await new Promise((r) => setTimeout(r, 200));
          health = (await engine.inspectContainer(checked))!.health;
        }
        expect(health).toBe('healthy');
        expect((await engine.inspectContainer(plain))!.health).toBeUndefined();
        await engine.stop(checked, 5);
        expect((await engine.inspectContainer(checked))!.health).toBeUndefined();
      } finally {
        await engine.removeContainer(checked, { force: true });
        await engine.removeContainer(plain, { force: true });
      }
    });

    it('replays past events from `since`, and only new ones without it', async () => {
      const since = nowSeconds();
      const vol = uniqueName('replay');
      await engine.createVolume(vol, { labels: { ...TEST_LABELS } });
      await engine.removeVolume(vol);

      const replay = new EventCollector(engine, { since });
      const live = new EventCollector(engine);
      try {
        await replay.waitFor((e) => e.type === 'volume' && e.id === vol && e.action === 'destroy', 'replayed volume destroy');
        expect(replay.actions('volume', vol)).toEqual(['create', 'destroy']);

        // The live stream starts now: a marker made after it opened arrives, the earlier volume does not.
        const marker = uniqueName('marker');
        await new Promise((r) => setTimeout(r, 300));
        await engine.createVolume(marker, { labels: { ...TEST_LABELS } });
        await live.waitFor((e) => e.type === 'volume' && e.id === marker && e.action === 'create', 'marker volume create');
        expect(live.actions('volume', vol)).toEqual([]);
        await engine.removeVolume(marker);
      } finally {
        await replay.stop();
        await live.stop();
      }
      // Aborting ends the iteration without an error.
      expect(replay.error).toBeUndefined();
      expect(live.error).toBeUndefined();
    });
  });
}
