import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Scheduler } from './scheduler.ts';
import { captureLog, WARN } from './testing/log.ts';

/** node-cron runs on setTimeout and new Date(), both of which vitest's fake timers replace. */
describe('Scheduler', () => {
  let scheduler: Scheduler | undefined;
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2030-01-01T00:00:00.000Z') });
  });
  afterEach(() => {
    scheduler?.stop();
    vi.useRealTimers();
  });

  it('runs each volume on its own cron expression', async () => {
    const runs: string[] = [];
    const { log } = captureLog();
    scheduler = new Scheduler({
      log,
      backup: async (v) => void runs.push(`${v}@${new Date().toISOString().slice(11, 19)}`),
      retention: async () => void runs.push('retention'),
    });
    scheduler.setVolumes(new Map([['a', '*/10 * * * * *'], ['b', '*/30 * * * * *']]));
    scheduler.setRetention('0 * * * * *');
    expect(scheduler.nextRun('a')?.toISOString()).toBe('2030-01-01T00:00:10.000Z');
    expect(scheduler.nextRun('b')?.toISOString()).toBe('2030-01-01T00:00:30.000Z');
    expect(scheduler.nextRetention()?.toISOString()).toBe('2030-01-01T00:01:00.000Z');
    await vi.advanceTimersByTimeAsync(60_500);
    expect(runs.filter((r) => r.startsWith('a@'))).toEqual(['a@00:00:10', 'a@00:00:20', 'a@00:00:30', 'a@00:00:40', 'a@00:00:50', 'a@00:01:00']);
    expect(runs.filter((r) => r.startsWith('b@'))).toEqual(['b@00:00:30', 'b@00:01:00']);
    expect(runs.filter((r) => r === 'retention')).toHaveLength(1);
  });

  it('never overlaps a volume with itself: a run due while the last one goes on is skipped and logged as missed', async () => {
    const { log, lines } = captureLog();
    const missed: { volume?: string; why: string }[] = [];
    let active = 0;
    let maxActive = 0;
    let started = 0;
    scheduler = new Scheduler({
      log,
      // every backup takes 25 s; the schedule asks every 10 s
      backup: async () => {
        started++;
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 25_000));
        active--;
      },
      retention: async () => {},
      onMissed: (m) => missed.push({ ...(m.volume ? { volume: m.volume } : {}), why: m.why }),
    });
    scheduler.setVolumes(new Map([['pg', '*/10 * * * * *']]));
    await vi.advanceTimersByTimeAsync(60_500);
    expect(maxActive).toBe(1);
    // due at 10 (runs to 35), 20 and 30 missed, 40 runs (to 65), 50 and 60 missed
    expect(started).toBe(2);
    expect(missed).toEqual([
      { volume: 'pg', why: 'overlap' },
      { volume: 'pg', why: 'overlap' },
      { volume: 'pg', why: 'overlap' },
      { volume: 'pg', why: 'overlap' },
    ]);
    const warnings = lines.filter((l) => l.level === WARN);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatchObject({ volume: 'pg', scheduled: '2030-01-01T00:00:20.000Z', msg: 'missed a scheduled backup of volume pg: the previous one has not ended' });
  });

  it('a failing run is logged and the schedule goes on', async () => {
    const { log, lines } = captureLog();
    let calls = 0;
    scheduler = new Scheduler({
      log,
      backup: async () => {
        calls++;
        throw new Error('disk on fire');
      },
      retention: async () => {},
    });
    scheduler.setVolumes(new Map([['a', '*/10 * * * * *']]));
    await vi.advanceTimersByTimeAsync(30_500);
    expect(calls).toBe(3);
    expect(lines.filter((l) => l.msg === 'scheduled backup of volume a failed')).toHaveLength(3);
  });

  it('setVolumes adds, removes and reschedules; stop ends everything', async () => {
    const runs: string[] = [];
    const { log } = captureLog();
    scheduler = new Scheduler({ log, backup: async (v) => void runs.push(v), retention: async () => {} });
    scheduler.setVolumes(new Map([['a', '*/10 * * * * *'], ['b', '*/10 * * * * *']]));
    expect(scheduler.volumes.sort()).toEqual(['a', 'b']);
    scheduler.setVolumes(new Map([['b', '*/20 * * * * *'], ['c', '*/10 * * * * *']]));
    expect(scheduler.volumes.sort()).toEqual(['b', 'c']);
    expect(scheduler.expressionOf('b')).toBe('*/20 * * * * *');
    expect(scheduler.nextRun('a')).toBeNull();
    await vi.advanceTimersByTimeAsync(20_500);
    expect(runs.sort()).toEqual(['b', 'c', 'c']);
    scheduler.stop();
    runs.length = 0;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toEqual([]);
    expect(scheduler.nextRun('b')).toBeNull();
  });
});
