/**
 * The agent wired together on the fake engine, a fake journal (the real one
 * is tested in src/watch/) and a real repository: continuous mode, tracking,
 * health, shutdown. The real-engine runs are in test/agent/.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config/load.ts';
import { FakeEngine } from '../docker/fake-engine.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { Repository } from '../repo/repository.ts';
import { listSnapshots } from '../repo/snapshots.ts';
import type { JournalStatus, JournalTake } from '../watch/journal.ts';
import { Agent, type Journal } from './agent.ts';
import { captureLog, ERROR, type LogLine } from './testing/log.ts';

const PASSWORD = 'agent test password';

class FakeJournal extends EventEmitter implements Journal {
  readonly watched = new Map<string, string>();
  readonly commits: string[] = [];
  closed = false;
  async watch(volume: string, mountpoint: string): Promise<void> {
    this.watched.set(volume, mountpoint);
  }
  async unwatch(volume: string): Promise<void> {
    this.watched.delete(volume);
  }
  take(volume: string): JournalTake {
    return { mode: 'full', paths: new Set(), reason: 'fake journal', commit: () => void this.commits.push(volume) };
  }
  status(volume: string): JournalStatus {
    return { watching: this.watched.has(volume), trusted: true, reason: null, dirty: 0, lastFullScan: null };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  changed(volume: string): void {
    this.emit('changed', volume, 1);
  }
}

async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('Agent (fake engine, fake journal)', () => {
  let dir: string;
  let engine: FakeEngine;
  let journal: FakeJournal;
  let agent: Agent | undefined;
  let lines: LogLine[];

  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-agent-'));
    engine = new FakeEngine(path.join(dir, 'engine'));
    engine.addImage({ repoTags: ['app:1'] });
    journal = new FakeJournal();
    (await Repository.init(path.join(dir, 'repo'), PASSWORD)).close();
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await fsp.rm(dir, { recursive: true, force: true });
  });

  async function start(toml: string, opts: { graceMs?: number; retryMs?: number } = {}): Promise<Agent> {
    const config = parseConfig(
      `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'state'))}\nlisten = ""\nhost = "test-host"\n[repository]\npath = ${JSON.stringify(path.join(dir, 'repo'))}\n[backup]\nworkers = 1\n${toml}`,
      'test.toml',
    );
    const captured = captureLog();
    lines = captured.lines;
    agent = await Agent.start({ config, password: PASSWORD, log: captured.log, version: 'test', engine, journal, processMetrics: false, poolIdleMs: 0, ...opts });
    return agent;
  }

  const snapshotsOf = async (volume: string) => {
    const repo = await Repository.open(path.join(dir, 'repo'), PASSWORD);
    try {
      return listSnapshots(repo).filter((s) => s.volume === volume);
    } finally {
      repo.close();
    }
  };

  it('continuous mode: a change is backed up after the debounce, with its write-to-snapshot lag', async () => {
    const v = await engine.createVolume('data');
    await fsp.writeFile(path.join(v.mountpoint, 'a.txt'), 'one');
    const a = await start('[volumes]\ntrack = "listed"\n[[volume]]\nname = "data"\ncontinuous = true\ndebounce = "200ms"\n');
    await until('tracking', () => a.tracked.has('data') && journal.watched.get('data') === v.mountpoint);
    // continuous mode starts with a backup: what changed while nobody watched is unknown
    await until('the first snapshot', async () => (await snapshotsOf('data')).length === 1);
    await until('its commit', () => journal.commits.length === 1);

    await fsp.writeFile(path.join(v.mountpoint, 'b.txt'), 'two');
    const wrote = Date.now();
    journal.changed('data');
    await sleep(50);
    journal.changed('data');
    await until('the second snapshot', async () => (await snapshotsOf('data')).length === 2);
    const took = Date.now() - wrote;
    expect(took).toBeGreaterThanOrEqual(200);
    const status = await until('the status to show it', () => {
      const s = a.status().volumes.find((x) => x.name === 'data');
      return s?.last_backup?.lag_ms != null && s;
    });
    expect(status.last_backup!.lag_ms).toBeGreaterThanOrEqual(200);
    expect(status.last_backup!.lag_ms).toBeLessThanOrEqual(took + 50);
    expect(status.continuous).toBe(true);
    expect(status.journal.state).toBe('clean');
    expect(status.last_snapshot!.id).toBe((await snapshotsOf('data')).at(-1)!.id);
    expect(journal.commits).toEqual(['data', 'data']);
    // changes to a volume that is not continuous are only noted
    expect(lines.filter((l) => l.level >= ERROR)).toEqual([]);
  });

  /**
   * Starts an agent on a continuous volume, waits for its first snapshot, then
   * writes and reports a change every `everyMs` until `count` snapshots exist:
   * their capture times, in order, and the agent.
   */
  async function writtenWithoutPause(config: string, everyMs: number, count: number): Promise<{ times: number[]; agent: Agent }> {
    const v = await engine.createVolume('data');
    await fsp.writeFile(path.join(v.mountpoint, 'a.txt'), 'one');
    const a = await start(config);
    await until('tracking', () => a.tracked.has('data') && journal.watched.get('data') === v.mountpoint);
    await until('the first snapshot', async () => (await snapshotsOf('data')).length === 1);
    const writing = setInterval(() => {
      void fsp.appendFile(path.join(v.mountpoint, 'a.txt'), 'x');
      journal.changed('data');
    }, everyMs);
    try {
      await until(`${count} snapshots while it never goes quiet`, async () => (await snapshotsOf('data')).length >= count, 15_000);
    } finally {
      clearInterval(writing);
    }
    return { times: (await snapshotsOf('data')).map((s) => Date.parse(s.time)).sort((x, y) => x - y), agent: a };
  }

  it('a target rpo: a volume written without pause is backed up every rpo, not only once it goes quiet', async () => {
    // a debounce the writes never let pass: only the rpo brings backups
    const { times, agent } = await writtenWithoutPause('[volumes]\ntrack = "listed"\n[[volume]]\nname = "data"\ndebounce = "10s"\nrpo = "1s"\n', 100, 4);
    expect(agent.tracked.get('data')).toMatchObject({ continuous: true, debounceMs: 1000, rpoMs: 1000 });
    // captured about every second (the rpo), each after the one before had ended
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeLessThan(2500);
  });

  it('a volume whose journal reports a batch every aggregate period is not quiet: backed up every rpo, not every batch', async () => {
    // the debounce equals the aggregation: each batch lands just as the last one's quiet would end
    const { times } = await writtenWithoutPause('[journal]\naggregate = "300ms"\n[volumes]\ntrack = "listed"\n[[volume]]\nname = "data"\ndebounce = "300ms"\nrpo = "2s"\n', 300, 4);
    for (let i = 2; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThan(1000);
  });

  it('continuous mode retries a failed backup by itself', async () => {
    await engine.createVolume('data');
    // another process holds the repository: the first (startup) backup fails
    const other = await Repository.open(path.join(dir, 'repo'), PASSWORD);
    const lock = other.lock('exclusive');
    const a = await start('[volumes]\ntrack = "listed"\n[[volume]]\nname = "data"\ncontinuous = true\ndebounce = "100ms"\n', { retryMs: 200 });
    const failed = await until('the first failure', () => a.status().volumes[0]?.last_error ?? undefined);
    expect(failed.code).toBe('LB_ERR_REPOSITORY_LOCKED');
    lock.release();
    other.close();
    await until('a snapshot after the retry', async () => (await snapshotsOf('data')).length === 1);
    await until('the error cleared', () => a.status().volumes[0]?.last_error === null);
    expect(lines.map((l) => l.msg)).toContain('retrying the backup of volume data in 0.2 s');
  });

  it('[[notify]]: a failing backup is told once to the webhook and then resolved; the heartbeat hears start, fail, start, success; no password in any body', async () => {
    const received: { path: string; body: string }[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    try {
      await engine.createVolume('data');
      const other = await Repository.open(path.join(dir, 'repo'), PASSWORD);
      const lock = other.lock('exclusive');
      const a = await start(
        [
          '[volumes]\ntrack = "listed"\n[[volume]]\nname = "data"\ncontinuous = true\ndebounce = "100ms"',
          `[[notify]]\nname = "ops"\ntype = "webhook"\nurl = "${base}/hook"`,
          `[[notify]]\nname = "hc"\ntype = "heartbeat"\nurl = "${base}/ping/data"`,
        ].join('\n'),
        { retryMs: 300 },
      );
      await until('the first failure', () => a.status().volumes[0]?.last_error ?? undefined);
      const hooks = () => received.filter((r) => r.path === '/hook').map((r) => JSON.parse(r.body) as { event: string; state: string; subject: string; host: string; summary: string });
      const firing = await until('the alert', () => hooks().find((h) => h.event === 'backup_failed'));
      expect(firing).toMatchObject({ event: 'backup_failed', state: 'firing', subject: 'data', host: 'test-host' });
      expect(firing.summary).toContain('LB_ERR_REPOSITORY_LOCKED');
      lock.release();
      other.close();
      await until('the resolution', () => hooks().some((h) => h.event === 'backup_failed' && h.state === 'resolved'));
      // retries failed meanwhile (one alert while it failed, not one per failure)
      expect(hooks().filter((h) => h.event === 'backup_failed').map((h) => h.state)).toEqual(['firing', 'resolved']);
      const pings = () => received.filter((r) => r.path.startsWith('/ping/')).map((r) => r.path);
      await until('the success ping', () => pings().includes('/ping/data'));
      expect(pings().slice(0, 2)).toEqual(['/ping/data/start', '/ping/data/fail']);
      expect(pings().slice(-2)).toEqual(['/ping/data/start', '/ping/data']);
      for (const r of received) expect(r.body).not.toContain(PASSWORD);
    } finally {
      receiver.close();
    }
  });

  it('a [[volume]] the engine does not have: one error naming it, the other volumes are tracked', async () => {
    await engine.createVolume('real');
    const a = await start('[volumes]\ntrack = "listed"\n[[volume]]\nname = "real"\n[[volume]]\nname = "ghost"\n');
    await until('the first reconcile', () => a.status().engine.last_reconcile !== null && a.tracked.has('real'));
    await a.settled();
    const errors = lines.filter((l) => l.level === ERROR);
    expect(errors.map((l) => l.msg)).toEqual([
      'volume ghost is listed in [[volume]] but the Docker engine has no volume of that name; the other volumes are backed up as usual',
    ]);
    expect(errors[0]!.volume).toBe('ghost');
    expect(a.status().missing).toEqual(['ghost']);
    expect([...a.tracked.keys()]).toEqual(['real']);
    // it appears later: tracked from the next reconcile on
    await engine.createVolume('ghost');
    await until('ghost tracked', () => a.tracked.has('ghost'));
    expect(a.status().missing).toEqual([]);
  });

  it('track = "all": volumes come and go with the inventory; excluded ones are left out', async () => {
    await engine.createVolume('one');
    await engine.createVolume('skip', { labels: { 'lifeboat.exclude': 'true' } });
    const a = await start('');
    await until('one tracked', () => a.tracked.has('one'));
    expect(a.tracked.has('skip')).toBe(false);
    await engine.createVolume('two');
    await until('two tracked and watched', () => a.tracked.has('two') && journal.watched.has('two'));
    expect(a.status().volumes.find((v) => v.name === 'two')!.next_run).toMatch(/T\d\d:00:00\.000Z$/);
    await engine.removeVolume('one');
    await until('one dropped and unwatched', () => !a.tracked.has('one') && !journal.watched.has('one'));
  });

  it('healthz is degraded while the engine is unreachable, ok again when it is back', async () => {
    const a = await start('');
    await until('connected', () => a.health().ok);
    engine.goDown();
    const down = await until('degraded', () => {
      const h = a.health();
      return !h.ok && h;
    });
    expect(down.reasons).toHaveLength(1);
    expect(down.reasons[0]).toMatch(/^docker engine at .* unreachable/);
    expect(a.status().engine.reachable).toBe(false);
    engine.comeUp();
    await until('ok again', () => a.health().ok, 15_000);
  });

  /** Calls `then` right after the engine paused a container (the backup is under way then). */
  function onPause(then: () => void): void {
    const pause = engine.pause.bind(engine);
    engine.pause = async (id: string) => {
      await pause(id);
      then();
    };
  }

  /** A 4 MiB volume "data" mounted by a running container labelled pause-during-backup; returns the container id. */
  async function pausedWriter(): Promise<string> {
    const v = await engine.createVolume('data');
    await fsp.writeFile(path.join(v.mountpoint, 'big'), Buffer.alloc(4 * 1024 * 1024, 7));
    const id = await engine.createContainer(spec('app', 'app:1', { mounts: [volumeMount('data', '/data')], labels: { 'lifeboat.pause-during-backup': 'true' } }));
    await engine.start(id);
    return id;
  }

  it('stop waits for the backup under way, which returns its paused container to running', async () => {
    const id = await pausedWriter();
    const a = await start('');
    await until('tracked', () => a.tracked.has('data'));
    let stopped: Promise<void> | undefined;
    onPause(() => (stopped = a.stop()));
    const result = await a.backupNow('data');
    await stopped;
    agent = undefined;
    expect(stopped).toBeDefined();
    expect(result.outcome).toBe('success');
    expect((await engine.inspectContainer(id))!.state).toBe('running');
    expect(journal.closed).toBe(true);
    expect(await snapshotsOf('data')).toHaveLength(1);
    expect(lines.map((l) => l.msg)).toContain('stopping: waiting for backup of volume data to finish');
  });

  it('abandon (a second signal) fails the backup under way, and its container is still unpaused', async () => {
    const id = await pausedWriter();
    const a = await start('', { graceMs: 60_000 });
    await until('tracked', () => a.tracked.has('data'));
    let stopped: Promise<void> | undefined;
    onPause(() => {
      stopped = a.stop();
      a.abandon();
    });
    const result = await a.backupNow('data');
    await stopped;
    agent = undefined;
    expect(result.outcome).toBe('failure');
    expect(result.error?.code).toBe('LB_ERR_CANCELLED');
    expect((await engine.inspectContainer(id))!.state).toBe('running');
    expect(await snapshotsOf('data')).toHaveLength(0);
  });

  it('the grace period over, the backup under way is abandoned', async () => {
    const id = await pausedWriter();
    const a = await start('', { graceMs: 1 });
    await until('tracked', () => a.tracked.has('data'));
    let stopped: Promise<void> | undefined;
    onPause(() => (stopped = a.stop()));
    const result = await a.backupNow('data');
    await stopped;
    agent = undefined;
    expect(result.outcome).toBe('failure');
    expect((await engine.inspectContainer(id))!.state).toBe('running');
    expect(lines.map((l) => l.msg)).toContain('backup of volume data did not finish within the grace period');
  });
});
