import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ContainerSpec, DockerEngine } from '../docker/engine.ts';
import { EngineUnavailableError } from '../errors/errors.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { drill, type DrillOptions, type DrillResult } from './drill.ts';
import { HOST, log, type SourceHost, sourceHost } from './testing/source-host.ts';

/** Everything on an engine a drill could leave behind. */
async function inventory(e: DockerEngine): Promise<string[]> {
  return [
    ...(await e.listContainers()).map((c) => `container ${c.name} ${c.id}`),
    ...(await e.listVolumes()).map((v) => `volume ${v.name}`),
    ...(await e.listNetworks()).map((n) => `network ${n.name} ${n.id}`),
    ...(await e.listImages()).map((i) => `image ${i.id}`),
  ].sort();
}

describe('drill (fake engines)', () => {
  let t: TestRepo;
  let src: SourceHost;
  let created: ContainerSpec[];
  /** Runs after the engine starts a container whose drill name ends with the key. */
  let onStart: Record<string, (id: string) => void>;

  beforeEach(async () => {
    t = await openTestRepo({ workers: 2 });
    src = await sourceHost(t);
    await src.backup('data');
    await src.backup('cache');
    created = [];
    onStart = {};
    const b = src.b;
    const create = b.createContainer.bind(b);
    b.createContainer = async (spec) => {
      created.push(spec);
      return create(spec);
    };
    const start = b.start.bind(b);
    b.start = async (id) => {
      await start(id);
      const name = (await b.inspectContainer(id))!.name;
      for (const [suffix, fn] of Object.entries(onStart)) if (name.endsWith(`-${suffix}`)) fn(id);
    };
  });
  afterEach(async () => {
    src.close();
    await t.close();
  });

  const run = (over: Partial<DrillOptions> = {}): Promise<DrillResult> =>
    drill(src.b, t.repo, HOST, { onlyHostSnapshots: true, pool: t.pool, workDir: src.workDir, log, settleMs: 200, upTimeoutMs: 10_000, ...over });
  const row = (r: DrillResult, name: string) => r.containers.find((c) => c.name === name)!;

  it('recovers into isolation, checks data and health, and leaves the engine as it was', async () => {
    const before = await inventory(src.b);
    const restoring = new Set<string>();
    const r = await run({ onProgress: (volume) => void restoring.add(volume) });
    expect(await inventory(src.b)).toEqual(before);
    // its volumes' restores were reported as they went, under the drill's own names
    expect([...restoring].every((v) => v.startsWith(r.run_id))).toBe(true);
    expect(restoring.size).toBeGreaterThan(0);
    expect(r.cleanup).toEqual({ ok: true, left: [] });
    expect(r.error).toBeNull();

    expect(r.containers.map((c) => [c.name, c.drill_name, c.started, c.came_up, c.healthy, c.data_matched])).toEqual([
      ['armapp', `${r.run_id}-armapp`, false, null, null, true],
      ['cacher', `${r.run_id}-cacher`, true, true, null, true],
      ['db', `${r.run_id}-db`, true, true, null, true],
      ['idle', `${r.run_id}-idle`, false, null, null, true],
      ['side', `${r.run_id}-side`, true, true, null, true],
      ['web', `${r.run_id}-web`, true, true, true, true],
    ]);
    expect(row(r, 'armapp').reason).toBe('image arm:1: the image is for linux/arm64, and this engine is linux/amd64');
    expect(r.ok).toBe(false); // armapp cannot run here: the drill says so
    expect(r.volumes.map((v) => [v.name, v.drill_name, v.data_matched, v.difference_count])).toEqual([
      ['cache', `${r.run_id}-cache`, true, 0],
      ['data', `${r.run_id}-data`, true, 0],
    ]);
    expect(r.volumes.find((v) => v.name === 'data')!.bytes).toBe(200_000 + 4);
    expect(r.images_loaded).toEqual([(await src.a.inspectImage('app:1'))!.id]);

    expect(created.map((s) => s.name).sort()).toEqual(['cacher', 'db', 'idle', 'side', 'web'].map((n) => `${r.run_id}-${n}`));
    for (const s of created) {
      expect(s.portBindings).toEqual([]);
      expect(s.labels).toMatchObject({ 'lifeboat.drill': r.run_id, 'lifeboat.drill-from': HOST, 'lifeboat.exclude': 'true' });
      expect(s.mounts.every((m) => m.type !== 'volume' || m.name!.startsWith(`${r.run_id}-`))).toBe(true);
    }
    const web = created.find((s) => s.name.endsWith('-web'))!;
    expect(web).toMatchObject({ networkMode: r.run_id, networks: [{ name: r.run_id, aliases: ['web', 'www'] }], image: expect.stringMatching(/^sha256:/) });
    expect(created.find((s) => s.name.endsWith('-side'))!.networkMode).toBe(`container:${r.run_id}-db`);
    expect(src.b.calls.filter((c) => c.method.endsWith('Network')).map((c) => `${c.method} ${c.target}`)).toEqual([
      `createNetwork ${r.run_id}`,
      `removeNetwork ${r.run_id}`,
    ]);
  });

  it('reports a container that turns unhealthy or stops, and still cleans up', async () => {
    onStart.web = (id) => src.b.setHealth(id, 'unhealthy');
    onStart.cacher = (id) => void setTimeout(() => src.b.simulateExit(id, 1), 20);
    const before = await inventory(src.b);
    const r = await run({ settleMs: 2000 });
    expect(await inventory(src.b)).toEqual(before);
    expect(row(r, 'web')).toMatchObject({ started: true, came_up: false, healthy: false, reason: 'its healthcheck reports unhealthy' });
    expect(row(r, 'cacher')).toMatchObject({ started: true, came_up: false, reason: 'it stopped (exited) after starting' });
    expect(row(r, 'db').came_up).toBe(true);
    expect(r.ok).toBe(false);
  });

  it('stops when aborted, and cleans up', async () => {
    const abort = new AbortController();
    onStart.web = () => abort.abort();
    const before = await inventory(src.b);
    const r = await run({ settleMs: 60_000, signal: abort.signal });
    expect(await inventory(src.b)).toEqual(before);
    expect(row(r, 'db')).toMatchObject({ came_up: false, reason: 'aborted' });
    expect(r.ok).toBe(false);

    // Aborted before it begins: nothing is restored or created.
    src.b.calls.length = 0;
    const early = await run({ signal: AbortSignal.abort() });
    expect(src.b.calls).toEqual([]);
    expect(early.volumes.map((v) => v.reason)).toEqual(['aborted', 'aborted']);
    expect(early.containers.map((c) => c.reason)).toEqual([expect.stringContaining('linux/arm64'), 'aborted', 'aborted', 'aborted', 'aborted', 'aborted']);
    expect(await inventory(src.b)).toEqual(before);
  });

  it('reports an engine failure in the middle, and removes what it had made', async () => {
    // The first inspect after web starts is recovery's own check (web fails); the next is a wait's, which throws.
    onStart.web = () => {
      src.b.failNext('inspectContainer', new EngineUnavailableError('engine went away'));
      src.b.failNext('inspectContainer', new EngineUnavailableError('engine went away'));
    };
    const before = await inventory(src.b);
    const r = await run();
    expect(r.error).toBe('engine went away');
    expect(row(r, 'web')).toMatchObject({ started: false, reason: 'engine went away' });
    expect(r.cleanup.ok).toBe(true);
    expect(await inventory(src.b)).toEqual(before);
    expect(r.ok).toBe(false);
  });

  it('passes when every container comes up on matching data', async () => {
    await src.a.removeContainer(src.ids.armapp!, { force: true });
    await src.backup('data');
    const r = await run();
    expect(r.ok).toBe(true);
    expect(r.blockers).toEqual([]);
  });
});

describe('drill: the application answers (lifeboat.drill-check)', () => {
  let t: TestRepo;
  let src: SourceHost;
  afterEach(async () => {
    src.close();
    await t.close();
  });

  /** A host whose db container carries `check` as its drill check, backed up. */
  async function withCheck(check: string): Promise<DrillResult> {
    t = await openTestRepo({ workers: 2 });
    src = await sourceHost(t, { labels: { db: { 'lifeboat.drill-check': check } } });
    await src.backup('data');
    await src.backup('cache');
    return drill(src.b, t.repo, HOST, { onlyHostSnapshots: true, pool: t.pool, workDir: src.workDir, log, settleMs: 200, upTimeoutMs: 3000 });
  }
  const db = (r: DrillResult) => r.containers.find((c) => c.name === 'db')!;

  it('waits until the check answers: a database still starting is not up yet', async () => {
    // answers at its third run (each run counts in its own working directory)
    const r = await withCheck('n=$(cat tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > tries; [ "$n" -ge 3 ]');
    expect(db(r)).toMatchObject({ came_up: true, answered: true, reason: null });
    expect(r.containers.find((c) => c.name === 'cacher')!.answered).toBeNull();
  });

  it('fails the drill when the check never answers, saying what it said', async () => {
    const r = await withCheck('echo "the database is starting up" >&2; exit 2');
    expect(db(r)).toMatchObject({ came_up: false, answered: false });
    expect(db(r).reason).toMatch(/exited with 2: the database is starting up/);
    expect(r.ok).toBe(false);
    expect(r.cleanup.ok).toBe(true);
  });
});
