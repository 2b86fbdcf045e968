/**
 * Load on the agent's schedule: 50 volumes on one cron schedule all come due
 * at once, and while that wave of backups runs, the engine's events are still
 * followed: a container created in the middle of it is in the agent's catalog
 * within seconds, not after the wave.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { StatusReport } from '../../src/agent/status.ts';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs, sql } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec, uniqueName } from '../docker/harness.ts';
import { Fleet, makeAgent, status, type TestAgent } from '../replicate/agents.ts';

const VOLUMES = 50;
const fleet = new Fleet();
let engine: DockerodeEngine;
let agent: TestAgent & { setup: object };
const names = Array.from({ length: VOLUMES }, () => uniqueName('wave'));

beforeAll(async () => {
  engine = await ensureEngine();
  await busyboxImage();
  for (const name of names) {
    const v = await engine.createVolume(name, { labels: { ...TEST_LABELS } });
    for (let f = 0; f < 40; f++) await fsp.writeFile(path.join(v.mountpoint, `f${f}`), crypto.randomBytes(32 * 1024));
  }
  // every 20 s, all 50 at once (cron with seconds)
  agent = await makeAgent('wave', { extra: ['[schedule]', 'backup = "*/20 * * * * *"', ...names.flatMap((n) => ['[[volume]]', `name = ${JSON.stringify(n)}`])].join('\n') });
}, 300_000);

afterAll(async () => {
  await fleet.stopAll();
  await cleanup();
  await cleanupDirs();
});

describe('a wave of 50 scheduled backups', () => {
  test('does not starve the event watch: a container created during the wave is in the catalog within seconds', async () => {
    const d: Daemon = fleet.start(agent);
    await until('all 50 volumes tracked', async () => (await status(d)).volumes.length === VOLUMES, { daemon: d, timeoutMs: 60_000 });
    await until('the wave under way, with backups waiting', async () => {
      const jobs = (await status(d)).agent.jobs;
      return jobs !== null && jobs.running !== null && jobs.waiting.length >= 10;
    }, { daemon: d, intervalMs: 50, timeoutMs: 60_000 });

    const name = uniqueName('during-wave');
    const created = Date.now();
    await engine.createContainer(testSpec({ name }));
    const catalog = path.join(agent.state, 'catalog.db');
    await until('the container in the catalog', async () => ((await sql(catalog, 'SELECT name FROM containers WHERE name = ?', [name])) as unknown[]).length === 1, { daemon: d, intervalMs: 100, timeoutMs: 20_000 });
    const seenAfter = Date.now() - created;
    const after = await status(d);
    // still in the wave when it was seen: the watch did not wait for the backups
    expect(after.agent.jobs?.waiting.length ?? 0, `seen after ${seenAfter} ms, when the wave had ended`).toBeGreaterThan(0);
    expect(seenAfter).toBeLessThan(5_000);

    const done = await until('every volume backed up', async () => {
      const s: StatusReport = await status(d);
      return s.volumes.every((v) => v.last_snapshot !== null) && s;
    }, { daemon: d, timeoutMs: 180_000 });
    expect(done.volumes.filter((v) => v.last_error !== null)).toEqual([]);
  });
});
