/**
 * withQuiesced under an abort (Ctrl-C on the CLI, issue 12 item 8): a signal
 * that comes while a container is being stopped stops the rest, returns what
 * was done, and never starts the work; quiescedByThisProcess names what
 * exiting at that moment would leave.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLog } from '../agent/testing/log.ts';
import type { AgentCatalog } from '../catalog/agent-catalog.ts';
import { InterruptedError } from '../errors/errors.ts';
import { quiescedByThisProcess, withQuiesced } from './consistency.ts';
import type { ContainerState } from './engine.ts';
import { FakeEngine } from './fake-engine.ts';
import { openCatalog, spec, tempDir } from './testing/inventory-fixture.ts';

describe('withQuiesced, aborted', () => {
  let dir: { dir: string; cleanup: () => void };
  let engine: FakeEngine;
  let catalog: AgentCatalog;
  let ids: { db: string; cache: string };
  const { log } = captureLog('warn');

  beforeEach(async () => {
    dir = tempDir('lifeboat-quiesce-abort-');
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

  const details = async () => Promise.all([ids.db, ids.cache].map(async (id) => (await engine.inspectContainer(id))!));
  const states = async (): Promise<ContainerState[]> => (await details()).map((c) => c.state);

  it('a signal during a stop: nothing more is paused, the work never runs, the stopped one is started again, and the reason is thrown', async () => {
    const controller = new AbortController();
    const reason = new InterruptedError('backup of volume v interrupted by SIGINT');
    const stop = engine.stop.bind(engine);
    let held: string[] = [];
    engine.stop = async (id, timeout) => {
      await stop(id, timeout);
      held = quiescedByThisProcess(catalog).map((r) => `${r.name} ${r.action}`);
      controller.abort(reason);
    };
    let worked = false;
    const err = await withQuiesced(engine, await details(), { hookTimeoutMs: 1000, stopTimeoutSeconds: 1, log, journal: catalog, signal: controller.signal }, async () => {
      worked = true;
    }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(worked).toBe(false);
    expect(held).toEqual(['db stopped']);
    expect(await states()).toEqual(['running', 'running']);
    expect(catalog.quiesced()).toEqual([]);
    expect(quiescedByThisProcess(catalog)).toEqual([]);
    // the cache was never paused: the fake engine records what it was asked
    expect((await engine.inspectContainer(ids.cache))!.state).toBe('running');
  });

  it('a signal before anything: no container is touched', async () => {
    const controller = new AbortController();
    controller.abort(new InterruptedError('interrupted by SIGTERM'));
    const err = await withQuiesced(engine, await details(), { hookTimeoutMs: 1000, stopTimeoutSeconds: 1, log, journal: catalog, signal: controller.signal }, async () => 1).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InterruptedError);
    expect(await states()).toEqual(['running', 'running']);
    expect(catalog.quiesced()).toEqual([]);
  });
});
