import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentCatalog, HistoryEntry } from '../catalog/agent-catalog.ts';
import { FakeEngine } from '../docker/fake-engine.ts';
import { inventoryCounts, reconcile, reconcileObject } from './sync.ts';
import {
  brief,
  duplicates,
  engineAndCatalog,
  openCatalog,
  recordEvents,
  spec,
  steppingClock,
  tempDir,
  volumeMount,
} from '../docker/testing/inventory-fixture.ts';

let tmp: ReturnType<typeof tempDir>;
let engine: FakeEngine;
let catalog: AgentCatalog;
let now: () => Date;
/** The engine's clock (ms): moved by the tests that need time to pass. */
let clock: number;
const sync = () => reconcile(engine, catalog, { now });

beforeEach(() => {
  tmp = tempDir();
  clock = Date.now();
  engine = new FakeEngine({ root: path.join(tmp.dir, 'engine'), now: () => clock, info: { volumeDrivers: ['local', 'nfs'] } });
  catalog = openCatalog(tmp.dir);
  now = steppingClock();
});

afterEach(() => {
  catalog.close();
  tmp.cleanup();
});

describe('reconcile', () => {
  it('discovers what was there on the first sync, then records nothing when run again', async () => {
    const img = engine.addImage({ repoTags: ['app:1'] });
    const id = await engine.createContainer(spec('web', 'app:1', { mounts: [volumeMount('data', '/data')] }));
    await engine.start(id);

    const first = await sync();
    expect(brief(first.changes)).toEqual([
      'volume discovered data',
      'image discovered app:1',
      'network discovered bridge',
      'network discovered host',
      'network discovered none',
      'container discovered web',
    ]);
    expect(inventoryCounts(catalog)).toEqual({ containers: 1, images: 1, volumes: 1, networks: 3 });
    const c = catalog.container(id)!;
    expect(c).toMatchObject({ name: 'web', image: 'app:1', imageId: img.id, state: 'running', removedAt: null });
    expect(c.spec?.cmd).toEqual(['sleep', '1000']);
    expect(c.mounts).toEqual([expect.objectContaining({ type: 'volume', name: 'data', destination: '/data' })]);

    expect((await sync()).changes).toEqual([]);
    expect((await sync()).changes).toEqual([]);
    const { engine: e, catalog: k } = await engineAndCatalog(engine, catalog);
    expect(k).toEqual(e);
  });

  it('records a container created and removed, with the volumes it mounted', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    await sync();
    const id = await engine.createContainer(spec('db', 'app:1', { mounts: [volumeMount('pgdata', '/var/lib/pg')] }));
    const created = await sync();
    expect(brief(created.changes)).toEqual(['volume created pgdata', 'container created db', 'volume mounted-by pgdata']);
    expect(created.changes[2]!.detail).toEqual({ container: 'db', container_id: id, destination: '/var/lib/pg', read_only: false });

    await engine.removeContainer(id);
    await engine.removeVolume('pgdata');
    const removed = await sync();
    expect(brief(removed.changes)).toEqual(['container removed db', 'volume unmounted-by pgdata', 'volume removed pgdata']);
    expect(catalog.containers()).toEqual([]);
    expect(catalog.container(id)?.removedAt).toBe(removed.at);
    expect(catalog.containers({ includeRemoved: true })).toHaveLength(1);
    expect((await sync()).changes).toEqual([]);
  });

  it('records a container recreated under its name with a new image, with both image ids', async () => {
    const v1 = engine.addImage({ repoTags: ['app:1'] });
    const v2 = engine.addImage({ repoTags: ['app:2'] });
    const old = await engine.createContainer(spec('web', 'app:1'));
    await sync();

    await engine.removeContainer(old);
    const neu = await engine.createContainer(spec('web', 'app:2'));
    const r = await sync();
    expect(brief(r.changes)).toEqual(['container removed web', 'container recreated web']);
    expect(r.changes[1]).toMatchObject({
      object: neu,
      detail: {
        image: 'app:2',
        image_id: v2.id,
        previous_id: old,
        previous_image: 'app:1',
        previous_image_id: v1.id,
        image_changed: true,
      },
    });
    expect(catalog.history({ kind: 'container', object: neu }).map((h) => h.action)).toEqual(['recreated']);
    expect((await sync()).changes).toEqual([]);
  });

  it('calls a recreation with the same image a recreation too, with image_changed false', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    await engine.createContainer(spec('web', 'app:1'));
    await sync();
    await engine.removeContainer('web');
    await engine.createContainer(spec('web', 'app:1'));
    const r = await sync();
    expect(r.changes.at(-1)).toMatchObject({ action: 'recreated', detail: { image_changed: false } });
  });

  it('records state changes: running, paused, exited', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    const id = await engine.createContainer(spec('web', 'app:1'));
    await sync();
    const states: unknown[] = [];
    for (const step of [() => engine.start(id), () => engine.pause(id), () => engine.unpause(id), () => engine.stop(id, 1)]) {
      await step();
      const r = await sync();
      states.push(...r.changes.map((c) => [c.action, c.detail]));
    }
    expect(states).toEqual([
      ['state-changed', { from: 'created', to: 'running' }],
      ['state-changed', { from: 'running', to: 'paused' }],
      ['state-changed', { from: 'paused', to: 'running' }],
      ['state-changed', { from: 'running', to: 'exited' }],
    ]);
    expect(catalog.container(id)?.state).toBe('exited');
  });

  it('records images added, retagged and deleted, and networks created and removed', async () => {
    await sync();
    const img = engine.addImage({ repoTags: ['app:1'] });
    engine.addNetwork({ name: 'backend' });
    const added = await sync();
    expect(brief(added.changes)).toEqual(['image added app:1', 'network created backend']);
    expect(added.changes[0]!.detail).toEqual({ tags: ['app:1'] });

    engine.addImage({ repoTags: ['app:1', 'app:latest'] }); // same seed: same id, one more tag
    const tagged = await sync();
    expect(tagged.changes.map((c) => [c.action, c.detail])).toEqual([['retagged', { from: ['app:1'], to: ['app:1', 'app:latest'] }]]);

    engine.removeImage(img.id);
    const deleted = await sync();
    expect(brief(deleted.changes)).toEqual(['image deleted app:1']);
    expect(catalog.images()).toEqual([]);
    expect((await sync()).changes).toEqual([]);
  });

  it('knows a volume by its name and driver: a new CreatedAt is no new volume, another driver is', async () => {
    await engine.createVolume('cache');
    await sync();
    // the local driver's CreatedAt is its _data directory's mtime: any write at the top moves it
    await engine.removeVolume('cache');
    clock += 5000;
    await engine.createVolume('cache');
    expect((await sync()).changes).toEqual([]);
    await engine.removeVolume('cache');
    await engine.createVolume('cache', { driver: 'nfs' });
    expect(brief((await sync()).changes)).toEqual(['volume removed cache', 'volume created cache']);
    expect((await sync()).changes).toEqual([]);
  });

  it('drops an observation older than the one that last wrote a row', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    const id = await engine.createContainer(spec('web', 'app:1'));
    await engine.start(id);
    await sync();
    // a slow reconcile (another process's, say) reads the container running, then stalls
    let release = () => {};
    const stalled = new Promise<void>((r) => (release = r));
    const slow = new Proxy(engine, {
      get(target, prop) {
        if (prop === 'inspectContainer') {
          return async (idOrName: string) => {
            const seen = await target.inspectContainer(idOrName);
            await stalled;
            return seen;
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const late = reconcile(slow, catalog, { now });
    await new Promise((r) => setTimeout(r, 10));
    // meanwhile the container stops and a quicker reconcile records it
    await engine.stop(id, 1);
    expect((await sync()).changes.map((c) => c.detail)).toEqual([{ from: 'running', to: 'exited' }]);
    release();
    // the stale view must not undo that, nor record running again
    expect((await late).changes).toEqual([]);
    expect(catalog.container(id)?.state).toBe('exited');
  });

  it('keeps observation times increasing when the wall clock steps back', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    const id = await engine.createContainer(spec('web', 'app:1'));
    const first = await reconcile(engine, catalog, { now: () => new Date('2025-06-01T12:00:00Z') });
    await engine.start(id);
    const second = await reconcile(engine, catalog, { now: () => new Date('2025-06-01T11:00:00Z') });
    expect(second.at > first.at).toBe(true);
    expect(second.changes.map((c) => c.action)).toEqual(['state-changed']);
    expect(catalog.container(id)?.state).toBe('running');
  });
});

describe('reconcileObject', () => {
  /** Feeds every recorded event to reconcileObject, as the watcher does. */
  async function replay(events: readonly { type: string; id: string }[]) {
    const changes: HistoryEntry[] = [];
    for (const e of events) {
      if (e.type === 'container' || e.type === 'image' || e.type === 'volume' || e.type === 'network') {
        changes.push(...(await reconcileObject(engine, catalog, e.type, e.id, { now })).changes);
      }
    }
    return changes;
  }

  it('follows events to the same catalog and history as a full reconcile, and a replay adds nothing', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    engine.addImage({ repoTags: ['app:2'] });
    await sync();
    // the watcher handles each event soon after it happens: replay each step's events right after it
    const all: { type: string; id: string }[] = [];
    const viaEvents: HistoryEntry[] = [];
    const step = async (fn: () => Promise<unknown>) => {
      const rec = recordEvents(engine);
      await fn();
      await rec.stop();
      all.push(...rec.events);
      viaEvents.push(...(await replay(rec.events)));
    };
    let web = '';
    await step(async () => (web = await engine.createContainer(spec('web', 'app:1', { mounts: [volumeMount('data', '/data')] }))));
    await step(() => engine.start(web));
    await step(async () => engine.addNetwork({ name: 'backend' }));
    await step(() => engine.stop(web, 1));
    await step(() => engine.removeContainer(web));
    let web2 = '';
    await step(async () => (web2 = await engine.createContainer(spec('web', 'app:2', { mounts: [volumeMount('data', '/data')] }))));
    await step(() => engine.start(web2));

    expect(brief(viaEvents)).toEqual([
      'volume created data',
      'container created web',
      'volume mounted-by data',
      'container state-changed web',
      'network created backend',
      'container state-changed web',
      'container removed web',
      'volume unmounted-by data',
      'container recreated web',
      'volume mounted-by data',
      'container state-changed web',
    ]);
    const { engine: e, catalog: k } = await engineAndCatalog(engine, catalog);
    expect(k).toEqual(e);
    // the full reconcile finds nothing left to record, and neither does a replay of the same events
    expect((await sync()).changes).toEqual([]);
    expect(await replay(all)).toEqual([]);
    expect(duplicates(catalog.history())).toEqual([]);
  });

  it('marks a missed predecessor under the same name removed before recording the recreation', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    const old = await engine.createContainer(spec('web', 'app:1'));
    await sync();
    engine.dropEvents();
    await engine.removeContainer(old);
    const neu = await engine.createContainer(spec('web', 'app:1'));
    const r = await reconcileObject(engine, catalog, 'container', neu, { now });
    expect(brief(r.changes)).toEqual(['container removed web', 'container recreated web']);
    expect(r.changes[1]!.detail).toMatchObject({ previous_id: old });
  });

  it('resolves an image event by reference and notices the image a moved tag left', async () => {
    const a = engine.addImage({ repoTags: ['app:latest'], created: '2024-01-01T00:00:00Z' });
    await sync();
    const b = engine.addImage({ repoTags: ['app:latest'], created: '2024-02-01T00:00:00Z' }); // the tag moves to b
    const r = await reconcileObject(engine, catalog, 'image', 'app:latest', { now });
    expect(r.changes.map((c) => [c.action, c.object, c.detail])).toEqual([
      ['retagged', a.id, { from: ['app:latest'], to: [] }],
      ['added', b.id, { tags: ['app:latest'] }],
    ]);
    engine.removeImage(b.id);
    const gone = await reconcileObject(engine, catalog, 'image', 'app:latest', { now });
    expect(gone.changes.map((c) => [c.action, c.object])).toEqual([['deleted', b.id]]);
  });

  it('handles an object that is already gone and was never seen', async () => {
    await sync();
    for (const kind of ['container', 'image', 'volume', 'network'] as const) {
      expect((await reconcileObject(engine, catalog, kind, 'nope', { now })).changes).toEqual([]);
    }
  });
});

describe('AgentCatalog', () => {
  it('filters history by kind and limits to the newest rows, oldest first', async () => {
    engine.addImage({ repoTags: ['app:1'] });
    await engine.createContainer(spec('a', 'app:1'));
    await engine.createContainer(spec('b', 'app:1'));
    await engine.createVolume('vol');
    await sync();
    expect(catalog.history({ kind: 'container' }).map((h) => h.name)).toEqual(['a', 'b']);
    expect(catalog.history({ kind: 'container', limit: 1 }).map((h) => h.name)).toEqual(['b']);
    expect(catalog.history({ kind: 'volume' }).map((h) => h.name)).toEqual(['vol']);
    expect(catalog.history().map((h) => h.seq)).toEqual([...catalog.history().map((h) => h.seq)].sort((x, y) => x - y));
    expect(catalog.containersMounting('vol')).toEqual([]);
  });

  it('creates the catalog file with mode 0600 and keeps it across opens', async () => {
    if (process.platform === 'win32') return;
    const fs = await import('node:fs');
    expect(fs.statSync(catalog.file).mode & 0o777).toBe(0o600);
    catalog.setMeta('k', 'v');
    catalog.close();
    catalog = openCatalog(tmp.dir);
    expect(catalog.getMeta('k')).toBe('v');
  });
});
