import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { EngineEvent } from '../../src/docker/engine.ts';
import { EngineUnavailableError } from '../../src/errors/errors.ts';
import { busyboxImage, ensureEngine, startSecondEngine, testSpec, uniqueName, type SecondEngine } from './harness.ts';

describe('a second dockerd of its own', () => {
  let dir: string | undefined;
  let second: SecondEngine | undefined;

  afterAll(async () => {
    await second?.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it('starts, keeps its state across a restart, and its loss ends event streams with EngineUnavailableError', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-2nd-'));
    second = await startSecondEngine(dir);
    const engine = await ensureEngine(second.socket);
    expect((await engine.info()).os).toBe('linux');
    expect((await engine.listNetworks()).map((n) => n.name)).not.toContain('docker0');

    const image = await busyboxImage(second.socket);
    const vol = await engine.createVolume(uniqueName('v2'));
    expect(vol.mountpoint.startsWith(path.join(dir, 'data'))).toBe(true);
    const id = await engine.createContainer(
      testSpec({ name: uniqueName('c2'), image, cmd: ['sh', '-c', 'trap "exit 0" TERM; echo hi > /data/hi; sleep 600 & wait'], mounts: [{ type: 'volume', name: vol.name, source: '', destination: '/data', readOnly: false }] }),
    );
    await engine.start(id);

    const ac = new AbortController();
    const seen: EngineEvent[] = [];
    let ended: unknown;
    const watching = (async () => {
      try {
        for await (const e of engine.events({ signal: ac.signal })) seen.push(e);
      } catch (err) {
        ended = err;
      }
    })();
    await engine.pause(id);
    await engine.unpause(id);
    await second.stop();
    await watching;
    expect(ended).toBeInstanceOf(EngineUnavailableError);
    expect(seen.filter((e) => e.id === id).map((e) => e.action)).toEqual(expect.arrayContaining(['pause', 'unpause']));
    await expect(engine.ping()).rejects.toBeInstanceOf(EngineUnavailableError);
    await expect(engine.inspectContainer(id)).rejects.toBeInstanceOf(EngineUnavailableError);

    second = await startSecondEngine(dir);
    const detail = await engine.inspectContainer(id);
    expect(detail?.state).toBe('exited'); // the daemon took its containers down with it
    expect(await fsp.readFile(path.join(vol.mountpoint, 'hi'), 'utf8')).toBe('hi\n');
    await engine.removeContainer(id, { force: true });
    await engine.removeVolume(vol.name);
  });
});
