import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EngineRequestError, EngineUnavailableError } from '../errors/errors.ts';
import type { ContainerSpec, EngineEvent } from './engine.ts';
import { FakeEngine } from './fake-engine.ts';
import { spec as baseSpec } from './testing/inventory-fixture.ts';

/** The fake's test controls; its engine behaviour is held to dockerd's by test/docker/conformance.ts. */
describe('FakeEngine test controls', () => {
  let root: string;
  let fake: FakeEngine;

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'lb-fake-'));
    fake = new FakeEngine({ root, replayLimit: 8 });
    fake.addImage({ repoTags: ['app:1'], config: { env: ['PATH=/bin', 'MODE=image'], cmd: ['serve'], labels: { from: 'image' } } });
  });

  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  // The shared spec, as these tests want it: the seeded image, no command of its own, no network.
  const spec = (name: string, over: Partial<ContainerSpec> = {}): ContainerSpec => baseSpec(name, 'app:1', { cmd: null, networkMode: 'none', ...over });

  const drain = async (iterable: AsyncIterable<EngineEvent>, into: EngineEvent[]) => {
    for await (const e of iterable) into.push(e);
  };

  it('fills a spec from the image as the engine does', async () => {
    const id = await fake.createContainer(spec('web', { env: ['MODE=container', 'X=1'], labels: { own: 'yes' } }));
    const { spec: got } = (await fake.inspectContainer('web'))!;
    expect(got.env).toEqual(['PATH=/bin', 'MODE=container', 'X=1']);
    expect(got.cmd).toEqual(['serve']);
    expect(got.labels).toEqual({ from: 'image', own: 'yes' });
    expect(got.hostname).toBe(id.slice(0, 12));
    expect(await fake.inspectContainer(id.slice(0, 10))).toBeDefined();
  });

  it('goDown makes every call and every open event stream fail; comeUp restores them', async () => {
    const ac = new AbortController();
    const seen: EngineEvent[] = [];
    const open = drain(fake.events({ signal: ac.signal }), seen);
    await fake.createVolume('before');
    fake.goDown();
    expect(fake.isDown).toBe(true);
    await expect(open).rejects.toBeInstanceOf(EngineUnavailableError);
    expect(seen.map((e) => `${e.type} ${e.action} ${e.id}`)).toEqual(['volume create before']);
    await expect(fake.ping()).rejects.toBeInstanceOf(EngineUnavailableError);
    await expect(fake.listContainers()).rejects.toBeInstanceOf(EngineUnavailableError);
    await expect(fake.createVolume('during')).rejects.toBeInstanceOf(EngineUnavailableError);
    await expect(drain(fake.events({ signal: ac.signal }), [])).rejects.toBeInstanceOf(EngineUnavailableError);

    fake.comeUp();
    await fake.ping();
    // Not restarted: the replay buffer survived.
    const replayed: EngineEvent[] = [];
    const again = drain(fake.events({ since: 0, signal: ac.signal }), replayed);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await again;
    expect(replayed.map((e) => e.id)).toEqual(['before']);
  });

  it('comeUp({ restarted }) forgets past events, stops containers, restarts those with restart policy always', async () => {
    const keep = await fake.createContainer(spec('keep', { restartPolicy: { name: 'always', maximumRetryCount: 0 } }));
    const lost = await fake.createContainer(spec('lost'));
    await fake.start(keep);
    await fake.start(lost);
    const since = Date.now() / 1000 - 5;
    fake.goDown();
    fake.comeUp({ restarted: true });
    expect((await fake.inspectContainer(keep))!.state).toBe('running');
    expect((await fake.inspectContainer(lost))!.state).toBe('exited');
    const ac = new AbortController();
    const seen: EngineEvent[] = [];
    const it = drain(fake.events({ since, signal: ac.signal }), seen);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await it;
    expect(seen.filter((e) => e.type === 'container').map((e) => `${e.action} ${e.attributes.name}`)).toEqual(['start keep']);
  });

  it('dropEvents loses events, live and replayed', async () => {
    const since = Date.now() / 1000 - 1;
    const ac = new AbortController();
    const live: EngineEvent[] = [];
    const open = drain(fake.events({ signal: ac.signal }), live);
    fake.dropEvents();
    await fake.createVolume('silent');
    fake.dropEvents(false);
    await fake.createVolume('loud');
    const replay: EngineEvent[] = [];
    const replayed = drain(fake.events({ since, signal: ac.signal }), replay);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await open;
    await replayed;
    expect(live.map((e) => e.id)).toEqual(['loud']);
    expect(replay.map((e) => e.id)).toEqual(['loud']);
    expect((await fake.listVolumes()).map((v) => v.name).sort()).toEqual(['loud', 'silent']);
  });

  it('replays only the last replayLimit events', async () => {
    for (let i = 0; i < 12; i++) await fake.createVolume(`v${i}`);
    const ac = new AbortController();
    const seen: EngineEvent[] = [];
    const it = drain(fake.events({ since: 0, signal: ac.signal }), seen);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await it;
    expect(seen.map((e) => e.id)).toEqual(['v4', 'v5', 'v6', 'v7', 'v8', 'v9', 'v10', 'v11']);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.timeNano > seen[i - 1]!.timeNano).toBe(true);
  });

  it('simulateExit ends a container with its code (die, no stop); failNext fails one call', async () => {
    const id = await fake.createContainer(spec('crash'));
    await fake.start(id);
    const since = Date.now() / 1000 - 1;
    fake.simulateExit('crash', 2);
    expect((await fake.inspectContainer(id))!.state).toBe('exited');
    const ac = new AbortController();
    const seen: EngineEvent[] = [];
    const it = drain(fake.events({ since, signal: ac.signal }), seen);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    await it;
    const container = seen.filter((e) => e.type === 'container');
    const after = container.slice(container.findIndex((e) => e.action === 'start') + 1);
    expect(after.map((e) => e.action)).toEqual(['die']);
    expect(after[0]!.attributes.exitCode).toBe('2');

    const boom = new Error('boom');
    fake.failNext('start', boom);
    await expect(fake.start(id)).rejects.toBe(boom);
    await fake.start(id);
    fake.failNext('unpause');
    await fake.pause(id);
    await expect(fake.unpause(id)).rejects.toBeInstanceOf(EngineRequestError);
    await fake.unpause(id);
    expect(fake.calls.filter((c) => c.target === id).map((c) => c.method)).toEqual(['start', 'start', 'pause', 'unpause']);
  });

  it('runs exec on the host in a directory of its own, with the container named, and kills it at the timeout', async () => {
    const id = await fake.createContainer(spec('hooks', { env: ['PGUSER=app'] }));
    await fake.start(id);
    const r = await fake.exec(id, ['sh', '-c', 'echo "$LIFEBOAT_FAKE_CONTAINER $PGUSER $(pwd)"; touch made-here'], { timeoutMs: 5000 });
    const cwd = path.join(root, 'exec', 'hooks');
    expect(r).toEqual({ exitCode: 0, output: `hooks app ${cwd}\n`, timedOut: false });
    expect(fs.existsSync(path.join(cwd, 'made-here'))).toBe(true);

    const pidFile = path.join(cwd, 'pid');
    const slow = await fake.exec(id, ['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`], { timeoutMs: 300 });
    expect(slow.timedOut).toBe(true);
    const pid = Number(await fsp.readFile(pidFile, 'utf8'));
    await new Promise((r) => setTimeout(r, 50));
    expect(() => process.kill(pid, 0)).toThrow();

    const missing = await fake.exec(id, ['lifeboat-no-such-command'], { timeoutMs: 5000 });
    expect(missing.exitCode).toBe(126);
    expect(missing.output).toContain('executable file not found');
  });

  it('saves images in the docker save format; images with equal layers share diff ids', async () => {
    const base = { 'bin/tool': 'binary' };
    const a = fake.addImage({ repoTags: ['a:1'], layers: [base, { 'a.txt': 'a' }] });
    const b = fake.addImage({ repoTags: ['b:1'], layers: [base, { 'b.txt': 'b' }] });
    expect(a.layers[0]).toBe(b.layers[0]);
    expect(a.layers[1]).not.toBe(b.layers[1]);
    const chunks: Buffer[] = [];
    for await (const c of await fake.saveImage('a:1')) chunks.push(c as Buffer);
    const tar = Buffer.concat(chunks);
    expect(tar.includes(Buffer.from('manifest.json'))).toBe(true);

    const other = new FakeEngine(path.join(root, 'other'));
    await other.loadImage(Readable.from([tar]));
    expect(await other.inspectImage('a:1')).toEqual(a);
    expect(fake.calls.at(-1)).toEqual({ method: 'saveImage', target: 'a:1' });
  });
});
