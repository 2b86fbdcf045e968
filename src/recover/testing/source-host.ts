/**
 * A source host for recovery tests: a fake engine "host-a" with containers
 * on two volumes, backed up into a test repository, and a second fake engine
 * (the peer) to recover onto. Not part of the product.
 */
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pino from 'pino';
import { backupVolume } from '../../backup/volume.ts';
import { AgentCatalog } from '../../catalog/agent-catalog.ts';
import type { ContainerSpec } from '../../docker/engine.ts';
import { FakeEngine } from '../../docker/fake-engine.ts';
import { ENGINE_DEFAULTS } from '../../docker/runtime.ts';
import { spec, volumeMount } from '../../docker/testing/inventory-fixture.ts';
import type { Snapshot } from '../../repo/snapshot.ts';
import type { TestRepo } from '../../repo/testing/fixture.ts';

export const HOST = 'host-a';
export const log = pino({ level: 'silent' });

export interface SourceHost {
  readonly a: FakeEngine;
  /** The peer to recover onto, empty but for its default networks. */
  readonly b: FakeEngine;
  /** A host port nothing listens on, published by container web. */
  readonly port: number;
  readonly ids: Readonly<Record<string, string>>;
  /** Backs a volume of host A up (host HOST). */
  backup(volume: string): Promise<Snapshot>;
  readonly workDir: string;
  /** Closes what the backups needed (the agent catalog that journals quiesced containers). */
  close(): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Host A: volume data (files, a subdirectory) used by db (with runtime
 * settings: a capability, limits, shareable IPC), side (network, IPC and PID
 * mode container:db), web (on network appnet, publishing a port, with a
 * healthcheck, depending on db by label), idle (never started) and armapp
 * (an arm64 image); volume cache used by cacher. Both volumes backed up once.
 */
export async function sourceHost(t: TestRepo, opts: { labels?: Record<string, Record<string, string>> } = {}): Promise<SourceHost> {
  const a = new FakeEngine(await t.temp.make('lifeboat-host-a-'));
  const b = new FakeEngine(await t.temp.make('lifeboat-host-b-'));
  a.addImage({ repoTags: ['app:1'], layers: [{ 'bin/app': 'app binary' }, { 'etc/app.conf': 'conf' }], config: { cmd: ['app'] } });
  a.addImage({ repoTags: ['arm:1'], architecture: 'arm64', layers: [{ 'bin/arm': 'arm binary' }] });
  a.addNetwork({ name: 'appnet' });
  const data = await a.createVolume('data', { labels: { tier: 'db' } });
  await fsp.mkdir(path.join(data.mountpoint, 'pg'));
  await fsp.writeFile(path.join(data.mountpoint, 'pg', 'table'), Buffer.alloc(200_000, 7));
  await fsp.writeFile(path.join(data.mountpoint, 'marker'), 'one\n');
  const cache = await a.createVolume('cache');
  await fsp.writeFile(path.join(cache.mountpoint, 'entries'), 'cached\n');

  const port = await freePort();
  const ids: Record<string, string> = {};
  const run = async (name: string, over: Partial<ContainerSpec>, start = true) => {
    const labels = { ...over.labels, ...opts.labels?.[name] };
    ids[name] = await a.createContainer(spec(name, over.image ?? 'app:1', { networkMode: 'none', mounts: [volumeMount('data', '/data')], ...over, labels }));
    if (start) await a.start(ids[name]);
  };
  await run('db', {
    env: ['ROLE=db'],
    runtime: {
      ...ENGINE_DEFAULTS,
      capAdd: ['CAP_IPC_LOCK'],
      ulimits: [{ name: 'memlock', soft: -1, hard: -1 }],
      shmSizeBytes: 256 * 1024 * 1024,
      ipcMode: 'shareable',
      resources: { ...ENGINE_DEFAULTS.resources, memoryBytes: 512 * 1024 * 1024, pidsLimit: 200 },
    },
  });
  await run('side', { networkMode: `container:${ids.db}`, runtime: { ...ENGINE_DEFAULTS, ipcMode: `container:${ids.db}`, pidMode: `container:${ids.db}` } });
  await run('web', {
    networkMode: 'appnet',
    networks: [{ name: 'appnet', aliases: ['www'] }],
    labels: { 'lifeboat.depends-on': 'db' },
    exposedPorts: ['80/tcp'],
    portBindings: [{ containerPort: '80/tcp', hostIp: '127.0.0.1', hostPort: String(port) }],
    healthcheck: { test: ['CMD-SHELL', 'true'], intervalNs: 1e9, timeoutNs: 1e9, retries: 3, startPeriodNs: 0 },
  });
  await run('idle', {}, false);
  await run('armapp', { image: 'arm:1' });
  await run('cacher', { mounts: [volumeMount('cache', '/cache')] });

  const workDir = await t.temp.make('lifeboat-work-');
  const catalog = AgentCatalog.open(await t.temp.make('lifeboat-state-'));
  return {
    a,
    b,
    port,
    ids,
    workDir,
    close: () => catalog.close(),
    backup: async (volume) =>
      (
        await backupVolume(a, t.repo, {
          volume,
          host: HOST,
          splitter: { kind: 'fixed', size: 64 * 1024 },
          packSize: t.packSize,
          compressionLevel: 3,
          pool: t.pool,
          hookTimeoutMs: 5000,
          stopTimeoutSeconds: 1,
          workDir,
          captureDir: workDir,
          log,
          quiesceJournal: catalog,
        })
      ).snapshot,
  };
}
