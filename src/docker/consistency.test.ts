import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLog } from '../agent/testing/log.ts';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { HookFailedError } from '../errors/errors.ts';
import { flag, type QuiesceOptions, returnAbandoned, startOrder, withQuiesced } from './consistency.ts';
import type { ContainerDetail, ContainerState } from './engine.ts';
import { FakeEngine } from './fake-engine.ts';
import { ENGINE_DEFAULTS } from './runtime.ts';
import { openCatalog, spec, tempDir } from './testing/inventory-fixture.ts';

function container(name: string, over: { labels?: Record<string, string>; networkMode?: string; links?: string[]; ipcMode?: string } = {}): ContainerDetail {
  return {
    id: `id-${name}`,
    name,
    image: 'img',
    imageId: 'sha256:img',
    state: 'running',
    labels: over.labels ?? {},
    mounts: [],
    created: '2026-01-01T00:00:00Z',
    spec: spec(name, 'img', { networkMode: over.networkMode ?? 'none', links: over.links ?? [], runtime: { ...ENGINE_DEFAULTS, ipcMode: over.ipcMode ?? '' } }),
  };
}

const names = (cs: ContainerDetail[]) => cs.map((c) => c.name);

describe('startOrder', () => {
  it('starts what a container shares a namespace with, links to, or depends on first', () => {
    const db = container('db');
    const app = container('app', { links: ['db:database'] });
    const sidecar = container('a-sidecar', { networkMode: 'container:id-app' });
    const worker = container('worker', { labels: { 'lifeboat.depends-on': 'app, db' } });
    const shm = container('a-shm', { ipcMode: 'container:worker' });
    expect(names(startOrder([shm, worker, sidecar, app, db]))).toEqual(['db', 'app', 'a-sidecar', 'worker', 'a-shm']);
  });

  it('follows compose depends_on within one project only', () => {
    const compose = (name: string, service: string, project: string, dependsOn?: string) =>
      container(name, {
        labels: {
          'com.docker.compose.project': project,
          'com.docker.compose.service': service,
          ...(dependsOn ? { 'com.docker.compose.depends_on': dependsOn } : {}),
        },
      });
    const web = compose('a-web', 'web', 'shop', 'db:service_healthy:false,cache:service_started:false');
    const db = compose('z-db', 'db', 'shop');
    const cache = compose('m-cache', 'cache', 'shop');
    const otherDb = compose('b-db', 'db', 'blog');
    const order = names(startOrder([web, db, cache, otherDb]));
    expect(order.indexOf('z-db')).toBeLessThan(order.indexOf('a-web'));
    expect(order.indexOf('m-cache')).toBeLessThan(order.indexOf('a-web'));
    expect(order.indexOf('b-db')).toBeLessThan(order.indexOf('a-web')); // name order only: no edge across projects
    expect(order[0]).toBe('b-db');
  });

  it('is total even with a cycle, falling back to name order', () => {
    const a = container('a', { labels: { 'lifeboat.depends-on': 'b' } });
    const b = container('b', { labels: { 'lifeboat.depends-on': 'a' } });
    expect(names(startOrder([b, a]))).toEqual(['a', 'b']);
  });
});

describe('flag', () => {
  it('reads the usual spellings of true and nothing else', () => {
    for (const v of ['true', 'TRUE', '1', 'yes', 'on']) expect(flag({ x: v }, 'x')).toBe(true);
    for (const v of ['false', '0', '', 'no', 'maybe']) expect(flag({ x: v }, 'x')).toBe(false);
    expect(flag({}, 'x')).toBe(false);
  });
});

describe('the quiesce journal', () => {
  let dir: { dir: string; cleanup: () => void };
  let engine: FakeEngine;
  let catalog: AgentCatalog;
  let ids: { db: string; cache: string };
  const { log, messages } = captureLog('warn');

  beforeEach(async () => {
    dir = tempDir('lifeboat-quiesce-');
    engine = new FakeEngine(`${dir.dir}/engine`);
    engine.addImage({ repoTags: ['app:1'] });
    catalog = openCatalog(dir.dir);
    const run = async (name: string, label: string) => {
      const id = await engine.createContainer(spec(name, 'app:1', { labels: { [label]: 'true' } }));
      await engine.start(id);
      return id;
    };
    ids = { db: await run('db', 'lifeboat.stop-during-backup'), cache: await run('cache', 'lifeboat.pause-during-backup') };
  });
  afterEach(() => {
    catalog.close();
    dir.cleanup();
  });

  const opts = (): QuiesceOptions => ({ hookTimeoutMs: 1000, stopTimeoutSeconds: 1, log, journal: catalog });
  const details = async () => Promise.all([ids.db, ids.cache].map(async (id) => (await engine.inspectContainer(id))!));
  const states = async (): Promise<ContainerState[]> => (await details()).map((c) => c.state);
  const journal = () => catalog.quiesced().map((r) => `${r.name} ${r.action} ${r.owner === null ? 'released' : 'owned'}`).sort();

  it('notes each pause and stop before it happens and clears it once undone', async () => {
    let during: string[] = [];
    await withQuiesced(engine, await details(), opts(), async () => {
      during = journal();
      expect(await states()).toEqual(['exited', 'paused']);
    });
    expect(during).toEqual(['cache paused owned', 'db stopped owned']);
    expect(journal()).toEqual([]);
    expect(await states()).toEqual(['running', 'running']);
  });

  it('leaves the rows of a backup still running to it', async () => {
    await withQuiesced(engine, await details(), opts(), async () => {
      expect(await returnAbandoned(engine, catalog, log)).toEqual([]);
      expect(await states()).toEqual(['exited', 'paused']);
    });
  });

  it('releases what it cannot return when the engine is gone; once the engine is back (restarted: all exited), returnAbandoned starts them', async () => {
    const err = await withQuiesced(engine, await details(), opts(), async () => engine.goDown()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookFailedError);
    expect((err as Error).message).toMatch(/db \(stopped\).*cache \(paused\)|cache \(paused\).*db \(stopped\)/);
    expect(journal()).toEqual(['cache paused released', 'db stopped released']);

    // Still down: nothing can be done, and the rows stay for the next call.
    expect(await returnAbandoned(engine, catalog, log)).toEqual([]);
    expect(journal()).toEqual(['cache paused released', 'db stopped released']);

    engine.comeUp({ restarted: true });
    expect(await states()).toEqual(['exited', 'exited']);
    const done = await returnAbandoned(engine, catalog, log);
    expect(done.map((d) => `${d.name} ${d.action} ${d.outcome}`).sort()).toEqual(['cache paused started', 'db stopped started']);
    expect(await states()).toEqual(['running', 'running']);
    expect(journal()).toEqual([]);
    expect(messages()).toContain('returned container cache to running: an interrupted backup had left it paused');
  });

  it('takes over the rows of a process that died, or whose pid now names another process, and unpauses what is still paused', async () => {
    await engine.pause(ids.cache);
    await engine.stop(ids.db, 1);
    catalog.noteQuiesced({ container: ids.cache, name: 'cache', action: 'paused', owner: '2147483646/1' }); // no such process
    catalog.noteQuiesced({ container: ids.db, name: 'db', action: 'stopped', owner: `${process.pid}/1` }); // a live pid, started at another time
    const done = await returnAbandoned(engine, catalog, log);
    expect(done.map((d) => `${d.name} ${d.outcome}`).sort()).toEqual(['cache unpaused', 'db started']);
    expect(await states()).toEqual(['running', 'running']);
    expect(journal()).toEqual([]);
  });

  it('forgets a container that no longer exists', async () => {
    catalog.noteQuiesced({ container: 'gone-id', name: 'gone', action: 'paused', owner: '2147483646/1' });
    expect((await returnAbandoned(engine, catalog, log)).map((d) => d.outcome)).toEqual(['gone']);
    expect(journal()).toEqual([]);
  });
});
