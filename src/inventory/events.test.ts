import { once } from 'node:events';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { FakeEngine } from '../docker/fake-engine.ts';
import { reconcile } from './sync.ts';
import { backoffDelay, InventoryWatcher, META_LAST_EVENT, type ReconciledEvent, type WatcherOptions, type WatcherState } from './events.ts';
import { brief, duplicates, engineAndCatalog, openCatalog, spec, tempDir, volumeMount } from '../docker/testing/inventory-fixture.ts';

const log = pino({ level: 'silent' });
let tmp: ReturnType<typeof tempDir>;
let engine: FakeEngine;
let catalog: AgentCatalog;
const watchers: InventoryWatcher[] = [];

function watcher(opts: Partial<WatcherOptions> = {}): InventoryWatcher {
  const w = new InventoryWatcher({ engine, catalog, log, reconcileIntervalMs: 60_000, backoff: { initialMs: 20, maxMs: 100 }, ...opts });
  watchers.push(w);
  return w;
}

/** Resolves at the watcher's next state whose fields match. */
function nextState(w: InventoryWatcher, match: Partial<WatcherState>): Promise<WatcherState> {
  return new Promise((resolve) => {
    const on = (s: WatcherState) => {
      if (Object.entries(match).every(([k, v]) => s[k as keyof WatcherState] === v)) {
        w.off('state', on);
        resolve(s);
      }
    };
    w.on('state', on);
  });
}

function nextReconcile(w: InventoryWatcher, reason: string): Promise<ReconciledEvent> {
  return new Promise((resolve) => {
    const on = (r: ReconciledEvent) => {
      if (r.full && r.reason === reason) {
        w.off('reconciled', on);
        resolve(r);
      }
    };
    w.on('reconciled', on);
  });
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const containerHistory = () => brief(catalog.history({ kind: 'container' }));

beforeEach(() => {
  tmp = tempDir();
  engine = new FakeEngine(path.join(tmp.dir, 'engine'));
  engine.addImage({ repoTags: ['app:1'] });
  engine.addImage({ repoTags: ['app:2'] });
  catalog = openCatalog(tmp.dir);
});

afterEach(async () => {
  for (const w of watchers.splice(0)) await w.stop();
  catalog.close();
  tmp.cleanup();
});

describe('InventoryWatcher', () => {
  it('syncs on start, then follows events into the catalog', async () => {
    const before = await engine.createContainer(spec('old', 'app:1'));
    const w = watcher();
    const started = nextReconcile(w, 'start');
    w.start();
    expect(brief((await started).changes)).toContain('container discovered old');
    expect(w.state).toMatchObject({ connected: true, lastError: null });

    const id = await engine.createContainer(spec('web', 'app:1', { mounts: [volumeMount('data', '/data')] }));
    await vi.waitFor(() => expect(catalog.container(id)).toBeDefined());
    await engine.start(id);
    await engine.removeContainer(before);
    await vi.waitFor(() => expect(catalog.container(id)?.state).toBe('running'));
    await vi.waitFor(() => expect(catalog.container(before)?.removedAt).not.toBeNull());
    expect(containerHistory()).toEqual([
      'container discovered old',
      'container created web',
      'container state-changed web',
      'container removed old',
    ]);
    expect(brief(catalog.history({ kind: 'volume' }))).toEqual(['volume created data', 'volume mounted-by data']);
    expect(w.state.lastEvent).not.toBeNull();
  });

  it('after the engine goes down: backs off, reconnects, and a full reconcile finds what the events missed, once', async () => {
    const w = watcher({ backoff: { initialMs: 1000, maxMs: 1000 }, random: () => 0 }); // every retry after 500 ms
    const started = nextReconcile(w, 'start');
    w.start();
    await started;
    const web = await engine.createContainer(spec('web', 'app:1', { mounts: [volumeMount('data', '/data')] }));
    await engine.start(web);
    const db = await engine.createContainer(spec('db', 'app:1', { restartPolicy: { name: 'always', maximumRetryCount: 0 } }));
    await engine.start(db);
    await vi.waitFor(() => expect(catalog.container(db)?.state).toBe('running'));

    const down = nextState(w, { connected: false });
    engine.goDown();
    expect((await down).lastError).toMatch(/down/);

    // the engine restarts (running containers die with it; db comes back by its restart policy), and
    // before the watcher's next attempt, web is recreated with a new image, all without events
    const reconnected = nextReconcile(w, 'reconnect');
    engine.dropEvents();
    engine.comeUp({ restarted: true });
    await engine.removeContainer(web);
    const web2 = await engine.createContainer(spec('web', 'app:2', { mounts: [volumeMount('data', '/data')] }));
    await engine.createVolume('extra');
    engine.dropEvents(false);

    const r = await reconnected;
    expect(brief(r.changes)).toEqual([
      'volume created extra',
      'container removed web',
      'volume unmounted-by data',
      'container recreated web',
      'volume mounted-by data',
    ]);
    expect(r.changes.find((c) => c.action === 'recreated')!.detail).toMatchObject({ previous_id: web, image_changed: true });
    expect(w.state).toMatchObject({ connected: true, reconnects: 1, lastError: null });

    // events flow again
    await engine.start(web2);
    await vi.waitFor(() => expect(catalog.container(web2)?.state).toBe('running'));

    const { engine: e, catalog: k } = await engineAndCatalog(engine, catalog);
    expect(k).toEqual(e);
    expect((await reconcile(engine, catalog)).changes).toEqual([]);
    expect(duplicates(catalog.history())).toEqual([]);
  });

  it('notices state lost in a restart with no events at all', async () => {
    const w = watcher({ backoff: { initialMs: 1000, maxMs: 1000 }, random: () => 0 });
    const started = nextReconcile(w, 'start');
    w.start();
    await started;
    const web = await engine.createContainer(spec('web', 'app:1'));
    await engine.start(web);
    await vi.waitFor(() => expect(catalog.container(web)?.state).toBe('running'));
    const down = nextState(w, { connected: false });
    engine.goDown();
    await down;
    const reconnected = nextReconcile(w, 'reconnect');
    engine.comeUp({ restarted: true }); // web dies with the daemon and has no restart policy
    const r = await reconnected;
    expect(r.changes.map((c) => [c.action, c.detail])).toEqual([['state-changed', { from: 'running', to: 'exited' }]]);
  });

  it('waits for an engine that is down at start', async () => {
    engine.goDown();
    const w = watcher();
    const failures: string[] = [];
    w.on('state', (s) => s.lastError && failures.push(s.lastError));
    w.start();
    await vi.waitFor(() => expect(failures.length).toBeGreaterThanOrEqual(2));
    expect(w.state.connected).toBe(false);
    const started = nextReconcile(w, 'start');
    engine.comeUp();
    await started;
    expect(w.state).toMatchObject({ connected: true, reconnects: 0 });
    expect(catalog.images()).toHaveLength(2);
  });

  it('reconciles on its period, which catches changes whose events were lost', async () => {
    const w = watcher({ reconcileIntervalMs: 50 });
    const started = nextReconcile(w, 'start');
    w.start();
    await started;
    engine.dropEvents();
    const id = await engine.createContainer(spec('quiet', 'app:1'));
    const r = await nextReconcile(w, 'periodic');
    expect(brief(r.changes)).toEqual(['container created quiet']);
    expect(catalog.container(id)).toBeDefined();
    // and keeps doing so
    await nextReconcile(w, 'periodic');
  });

  it('resumes events from the last one seen, and their replay records nothing', async () => {
    const w1 = watcher();
    const started = nextReconcile(w1, 'start');
    w1.start();
    await started;
    const id = await engine.createContainer(spec('web', 'app:1'));
    await engine.start(id);
    await engine.stop(id, 1);
    await vi.waitFor(() => expect(catalog.container(id)?.state).toBe('exited'));
    await w1.stop();
    const last = catalog.getMeta(META_LAST_EVENT);
    expect(last).toMatch(/^\d+$/);
    const rows = catalog.history().length;

    const w2 = watcher();
    const seen: ReconciledEvent[] = [];
    w2.on('reconciled', (r) => seen.push(r));
    const again = nextReconcile(w2, 'start');
    w2.start();
    expect((await again).changes).toEqual([]);
    await new Promise((r) => setTimeout(r, 100)); // let the replayed events through
    expect(seen.flatMap((r) => r.changes)).toEqual([]);
    expect(catalog.history()).toHaveLength(rows);
  });

  it('stop() ends the stream and leaves no timer, connected or backing off', async () => {
    const baseline = timers();
    const w = watcher({ reconcileIntervalMs: 30_000 });
    const started = nextReconcile(w, 'start');
    w.start();
    await started;
    await w.stop();
    expect(w.running).toBe(false);
    expect(w.state.connected).toBe(false);
    expect(timers()).toBe(baseline);

    const w2 = watcher({ backoff: { initialMs: 60_000, maxMs: 60_000 } });
    const down = nextState(w2, { connected: false });
    engine.goDown();
    w2.start();
    await down;
    const t0 = performance.now();
    await w2.stop();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(timers()).toBe(baseline);
    // nothing runs after stop
    engine.comeUp();
    await engine.createContainer(spec('late', 'app:1'));
    await new Promise((r) => setTimeout(r, 50));
    expect(catalog.containers().map((c) => c.name)).not.toContain('late');
  });

  it('reports a failure of one object without dropping the connection', async () => {
    const w = watcher();
    const started = nextReconcile(w, 'start');
    w.start();
    await started;
    const failed = once(w, 'failure');
    engine.failNext('inspectContainer');
    const id = await engine.createContainer(spec('web', 'app:1'));
    expect(String((await failed)[0])).toMatch(/injected failure/);
    await engine.start(id); // the next event for it succeeds
    await vi.waitFor(() => expect(catalog.container(id)?.state).toBe('running'));
    expect(w.state.connected).toBe(true);
    expect(containerHistory()).toEqual(['container created web']);
  });
});

describe('backoffDelay', () => {
  it('doubles from the first delay up to the cap, with up to half of it random', () => {
    const top = (n: number) => backoffDelay(n, 500, 30_000, () => 1);
    const bottom = (n: number) => backoffDelay(n, 500, 30_000, () => 0);
    expect([0, 1, 2, 3, 4, 5, 6, 7, 50].map(top)).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    expect([0, 1, 6, 50].map(bottom)).toEqual([250, 500, 15000, 15000]);
  });
});
