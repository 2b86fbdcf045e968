/** Shared pieces of the inventory and watcher tests (fake and real engine). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentCatalog, type HistoryRow } from '../../catalog/agent-catalog.ts';
import type { ContainerSpec, DockerEngine, EngineEvent, Mount } from '../engine.ts';
import { ENGINE_DEFAULTS } from '../runtime.ts';

export function tempDir(prefix = 'lifeboat-inv-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function openCatalog(dir: string): AgentCatalog {
  return AgentCatalog.open(path.join(dir, 'state'));
}

export function spec(name: string, image: string, over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name,
    image,
    env: [],
    cmd: ['sleep', '1000'],
    entrypoint: null,
    workingDir: '',
    user: '',
    hostname: '',
    labels: {},
    exposedPorts: [],
    portBindings: [],
    mounts: [],
    restartPolicy: { name: 'no', maximumRetryCount: 0 },
    networkMode: '',
    networks: [],
    links: [],
    stopSignal: null,
    healthcheck: null,
    runtime: ENGINE_DEFAULTS,
    ...over,
  };
}

export const volumeMount = (name: string, destination: string): Mount => ({ type: 'volume', name, source: '', destination, readOnly: false });

/** A clock that moves one second per call, from a fixed start: observation times are distinct and ordered. */
export function steppingClock(start = Date.parse('2025-01-01T00:00:00Z')): () => Date {
  let t = start;
  return () => new Date((t += 1000));
}

/** Compact history for assertions: "kind action name". */
export const brief = (rows: readonly Pick<HistoryRow, 'kind' | 'action' | 'name'>[]): string[] => rows.map((r) => `${r.kind} ${r.action} ${r.name}`);

/** Every (kind, object, action) that appears more than once: a change recorded twice. */
export function duplicates(rows: readonly HistoryRow[]): string[] {
  const seen = new Map<string, number>();
  for (const r of rows) {
    const k = `${r.kind} ${r.object} ${r.action} ${JSON.stringify(r.detail)}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  return [...seen].filter(([, n]) => n > 1).map(([k]) => k);
}

/** Records the engine's live events until stop(). */
export function recordEvents(engine: DockerEngine): { events: EngineEvent[]; stop: () => Promise<void> } {
  const ac = new AbortController();
  const events: EngineEvent[] = [];
  const done = (async () => {
    try {
      for await (const e of engine.events({ signal: ac.signal })) events.push(e);
    } catch {
      // aborted or engine gone: the recording ends
    }
  })();
  return {
    events,
    stop: async () => {
      await new Promise((r) => setImmediate(r));
      ac.abort();
      await done;
    },
  };
}

/** The engine's objects and the catalog's current ones, in comparable form. */
export async function engineAndCatalog(engine: DockerEngine, catalog: AgentCatalog) {
  const [containers, images, volumes, networks] = await Promise.all([
    engine.listContainers(),
    engine.listImages(),
    engine.listVolumes(),
    engine.listNetworks(),
  ]);
  const sort = (a: string[]) => [...a].sort();
  return {
    engine: {
      containers: sort(containers.map((c) => `${c.id} ${c.name} ${c.imageId} ${c.state}`)),
      images: sort(images.map((i) => `${i.id} ${[...i.repoTags].sort().join(',')}`)),
      volumes: sort(volumes.map((v) => v.name)),
      networks: sort(networks.map((n) => `${n.id} ${n.name}`)),
    },
    catalog: {
      containers: sort(catalog.containers().map((c) => `${c.id} ${c.name} ${c.imageId} ${c.state}`)),
      images: sort(catalog.images().map((i) => `${i.id} ${[...i.tags].sort().join(',')}`)),
      volumes: sort(catalog.volumes().map((v) => v.name)),
      networks: sort(catalog.networks().map((n) => `${n.id} ${n.name}`)),
    },
  };
}
