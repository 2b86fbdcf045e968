import { describe, expect, it } from 'vitest';
import type { Snapshot } from '../repo/snapshot.ts';
import type { JournalTake } from '../watch/journal.ts';
import { type BackupResult, VolumeBackups } from './backups.ts';
import { JobQueue } from './queue.ts';
import { captureLog, ERROR, WARN } from './testing/log.ts';

const later = () => {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const p = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { p, resolve, reject };
};

function snapshot(id: string): Snapshot {
  return {
    id: id.padEnd(64, '0'),
    time: new Date().toISOString(),
    host: 'h',
    source: '/v',
    volume: 'v',
    parent: null,
    tree: Buffer.alloc(32) as Snapshot['tree'],
    meta: null,
    tags: [],
    splitter: { kind: 'fixed', size: 65536 },
    stats: {
      files: 3, dirs: 1, files_new: 1, files_changed: 0, files_unchanged: 2, bytes_read: 100, bytes_new: 90,
      bytes_stored: 80, blobs_new: 1, bytes_total: 300, errors: 0, examined: 1, duration_ms: 5,
    },
  };
}

function fakeTake(log: string[], mode: JournalTake['mode'] = 'paths'): JournalTake {
  return { mode, paths: new Set(['a']), reason: mode === 'full' ? 'agent started' : null, commit: () => void log.push('commit') };
}

/** Waits for a condition the code under test makes true by itself, a macrotask at a time. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !ok(); i++) await new Promise((r) => setImmediate(r));
  expect(ok()).toBe(true);
}

function setup(opts: { clock?: { t: number } } = {}) {
  const { log, lines } = captureLog();
  const queue = new JobQueue();
  const gates = new Map<string, ReturnType<typeof later>>();
  const events: string[] = [];
  const results: BackupResult[] = [];
  const clock = opts.clock ?? { t: 1_000_000 };
  const backups = new VolumeBackups({
    queue,
    log,
    now: () => clock.t,
    take: (v) => {
      events.push(`take ${v}`);
      return fakeTake(events);
    },
    run: async (v) => {
      events.push(`start ${v}`);
      const gate = later();
      gates.set(v, gate);
      await gate.p;
      events.push(`end ${v}`);
      return { snapshot: snapshot(v) };
    },
    onResult: (r) => results.push(r),
  });
  const finish = async (v: string, err?: Error) => {
    for (let i = 0; i < 50 && !gates.has(v); i++) await new Promise((r) => setTimeout(r, 1));
    const g = gates.get(v)!;
    gates.delete(v);
    if (err) g.reject(err);
    else g.resolve();
  };
  return { backups, queue, events, results, lines, finish, clock };
}

describe('VolumeBackups', () => {
  it('backs up one volume at a time across volumes (the job queue)', async () => {
    const t = setup();
    const a = t.backups.trigger('a', 'schedule');
    const b = t.backups.trigger('b', 'schedule');
    await new Promise((r) => setTimeout(r, 5));
    expect(t.events).toEqual(['take a', 'start a']);
    await t.finish('a');
    await t.finish('b');
    expect((await a).outcome).toBe('success');
    expect((await b).outcome).toBe('success');
    expect(t.events).toEqual(['take a', 'start a', 'end a', 'commit', 'take b', 'start b', 'end b', 'commit']);
  });

  it('a manual trigger while the volume is busy waits for the backup under way, then runs its own', async () => {
    const t = setup();
    const scheduled = t.backups.trigger('a', 'schedule');
    const manual = t.backups.trigger('a', 'manual');
    await t.finish('a');
    expect((await scheduled).outcome).toBe('success');
    await t.finish('a');
    const r = await manual;
    expect(r).toMatchObject({ outcome: 'success', reason: 'manual' });
    expect(t.events).toEqual(['take a', 'start a', 'end a', 'commit', 'take a', 'start a', 'end a', 'commit']);
    expect(t.results.map((x) => x.outcome)).toEqual(['success', 'success']);
  });

  it('exclusive work on a volume (a restore) waits for its backup, keeps backups off while it runs, and a change meanwhile backs it up after', async () => {
    const t = setup();
    const backup = t.backups.trigger('a', 'schedule');
    const restored = later();
    const restore = t.backups.exclusive('a', 'restore into volume a', async () => {
      t.events.push('restore a');
      await restored.p;
      return 'restored';
    });
    await t.finish('a');
    await backup;
    await until(() => t.events.includes('restore a'));
    // while it restores, a scheduled backup is skipped and a continuous one waits for it
    expect((await t.backups.trigger('a', 'schedule')).outcome).toBe('skipped');
    expect((await t.backups.trigger('a', 'continuous')).outcome).toBe('skipped');
    restored.resolve();
    expect(await restore).toBe('restored');
    await t.finish('a');
    await t.backups.settled();
    expect(t.events).toEqual(['take a', 'start a', 'end a', 'commit', 'restore a', 'take a', 'start a', 'end a', 'commit']);
  });

  it('a scheduled trigger while the volume is busy is skipped and logged as missed', async () => {
    const t = setup();
    const first = t.backups.trigger('a', 'schedule');
    const second = await t.backups.trigger('a', 'schedule');
    expect(second.outcome).toBe('skipped');
    expect(t.lines.filter((l) => l.level === WARN).map((l) => l.msg)).toEqual(['missed a scheduled backup of volume a: the previous one has not ended']);
    await t.finish('a');
    expect((await first).outcome).toBe('success');
    expect(t.results.map((r) => r.outcome)).toEqual(['skipped', 'success']);
  });

  it('a queued volume counts as busy too (its run has not ended)', async () => {
    const t = setup();
    void t.backups.trigger('a', 'schedule');
    const bQueued = t.backups.trigger('b', 'schedule');
    expect((await t.backups.trigger('b', 'schedule')).outcome).toBe('skipped');
    await t.finish('a');
    await t.finish('b');
    expect((await bQueued).outcome).toBe('success');
  });

  it('a continuous trigger while busy makes the volume run again afterwards', async () => {
    const t = setup();
    void t.backups.trigger('a', 'schedule');
    expect((await t.backups.trigger('a', 'continuous')).outcome).toBe('skipped');
    expect((await t.backups.trigger('a', 'continuous')).outcome).toBe('skipped');
    await t.finish('a');
    await t.finish('a');
    await t.backups.settled();
    expect(t.events.filter((e) => e === 'start a')).toHaveLength(2);
    expect(t.lines.filter((l) => l.level >= WARN)).toEqual([]);
  });

  it('lag: from the first change the backup covers to its commit; changes after the take count for the next', async () => {
    const t = setup();
    t.backups.noteChange('a', 1_000_000);
    t.backups.noteChange('a', 1_002_000);
    t.clock.t = 1_005_000;
    const first = t.backups.trigger('a', 'continuous');
    await new Promise((r) => setTimeout(r, 5));
    // a change during the backup belongs to the next one
    t.backups.noteChange('a', 1_006_000);
    t.clock.t = 1_007_500;
    await t.finish('a');
    const r1 = await first;
    expect(r1.lagMs).toBe(7_500);
    expect(r1.durationMs).toBe(2_500);
    expect(t.backups.record('a').lastLagMs).toBe(7_500);
    expect(t.backups.record('a').pendingSince).toBe(1_006_000);

    t.clock.t = 1_010_000;
    const second = t.backups.trigger('a', 'continuous');
    await t.finish('a');
    expect((await second).lagMs).toBe(4_000);
    // nothing changed since: no lag to report
    const third = t.backups.trigger('a', 'schedule');
    await t.finish('a');
    expect((await third).lagMs).toBeUndefined();
  });

  it('a failed backup commits nothing, keeps its changes pending and records the error', async () => {
    const t = setup();
    t.backups.noteChange('a', 1_000_000);
    const p = t.backups.trigger('a', 'schedule');
    await t.finish('a', Object.assign(new Error('engine gone'), { code: 'ECONNRESET' }));
    const r = await p;
    expect(r.outcome).toBe('failure');
    expect(r.error).toEqual({ message: 'engine gone', code: 'LB_ERR_SYSTEM_ECONNRESET' });
    expect(t.events).not.toContain('commit');
    const rec = t.backups.record('a');
    expect(rec.pendingSince).toBe(1_000_000);
    expect(rec.lastError).toMatchObject({ message: 'engine gone' });
    expect(rec.busy).toBe(false);
    expect(t.lines.filter((l) => l.level === ERROR).map((l) => l.msg)).toEqual(['backup of volume a failed']);
    // the next success clears the error
    const next = t.backups.trigger('a', 'schedule');
    await t.finish('a');
    expect((await next).outcome).toBe('success');
    expect(t.backups.record('a').lastError).toBeNull();
  });

  it('backups still waiting when the queue closes are cancelled, not run', async () => {
    const t = setup();
    const a = t.backups.trigger('a', 'schedule');
    const b = t.backups.trigger('b', 'schedule');
    await new Promise((r) => setTimeout(r, 5));
    const closed = t.queue.close();
    expect((await b).outcome).toBe('cancelled');
    await t.finish('a');
    await closed;
    expect((await a).outcome).toBe('success');
    expect(t.events).not.toContain('start b');
  });
});
