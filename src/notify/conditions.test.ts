import { describe, expect, it } from 'vitest';
import { type Condition, type ConditionsInput, cronIntervalMs, evaluateConditions, type VolumeInput } from './conditions.ts';

const NOW = Date.parse('2025-06-02T12:00:00Z');
const iso = (msBeforeNow: number) => new Date(NOW - msBeforeNow).toISOString();
const HOUR = 3_600_000;

const volume = (v: Partial<VolumeInput> = {}): VolumeInput => ({
  name: 'pgdata',
  lastSuccess: iso(10 * 60_000),
  lastSnapshotTime: iso(11 * 60_000),
  lastError: null,
  rpoTargetMs: null,
  scheduleIntervalMs: HOUR,
  ...v,
});

function evaluate(i: Partial<ConditionsInput>): Condition[] {
  return evaluateConditions({ volumes: [], peers: [], targets: [], drills: [], now: NOW, agentStarted: iso(24 * HOUR), overdueFactor: 2, ...i });
}

/** The one condition of that event and subject. */
function one(list: readonly Condition[], event: Condition['event'], subject = 'pgdata'): Condition {
  const found = list.filter((c) => c.event === event && c.subject === subject);
  expect(found).toHaveLength(1);
  return found[0]!;
}

const firing = (i: Partial<ConditionsInput>, event: Condition['event'], subject?: string) => one(evaluate(i), event, subject).firing;

describe('evaluateConditions', () => {
  it('lists every condition of every subject, firing or not, so a resolution is seen', () => {
    const list = evaluate({
      volumes: [volume(), volume({ name: 'cache' })],
      peers: [{ name: 'dr', failures: 0, last_error: null, last_success: iso(60_000) }],
      targets: [{ name: 's3', failures: 0, last_error: null, last_success: iso(60_000) }],
      drills: [{ source: 'a', ok: true, error: null, at: iso(HOUR) }],
    });
    expect(list.map((c) => `${c.event}:${c.subject}:${c.firing}`).sort()).toEqual([
      'backup_failed:cache:false', 'backup_failed:pgdata:false', 'drill_failed:a:false', 'overdue:cache:false', 'overdue:pgdata:false',
      'peer_unreachable:dr:false', 'rpo_over_target:cache:false', 'rpo_over_target:pgdata:false', 'target_unreachable:s3:false',
    ]);
  });

  it('backup_failed: fires while the last error is newer than the last success', () => {
    const err = (msBeforeNow: number) => ({ time: iso(msBeforeNow), message: 'engine gone', code: 'LB_ERR_ENGINE_UNAVAILABLE' });
    const c = one(evaluate({ volumes: [volume({ lastSuccess: iso(HOUR), lastError: err(60_000) })] }), 'backup_failed');
    expect(c.firing).toBe(true);
    expect(c.summary).toBe('volume pgdata: backup failed: engine gone [LB_ERR_ENGINE_UNAVAILABLE]');
    expect(c.detail).toMatchObject({ volume: 'pgdata', code: 'LB_ERR_ENGINE_UNAVAILABLE', error: 'engine gone' });
    expect(firing({ volumes: [volume({ lastSuccess: iso(60_000), lastError: err(HOUR) })] }, 'backup_failed')).toBe(false);
    expect(firing({ volumes: [volume({ lastSuccess: iso(60_000), lastError: err(60_000) })] }, 'backup_failed')).toBe(false);
    expect(firing({ volumes: [volume({ lastSuccess: null, lastError: err(60_000) })] }, 'backup_failed')).toBe(true);
    expect(firing({ volumes: [volume({ lastError: null })] }, 'backup_failed')).toBe(false);
  });

  it('overdue: fires once the last success is older than overdue_factor x the schedule interval, not at it', () => {
    expect(firing({ volumes: [volume({ lastSuccess: iso(2 * HOUR) })] }, 'overdue')).toBe(false);
    const c = one(evaluate({ volumes: [volume({ lastSuccess: iso(2 * HOUR + 1000) })] }), 'overdue');
    expect(c.firing).toBe(true);
    expect(c.summary).toBe('volume pgdata: no successful backup for 2h, over 2 x its schedule interval of 1h (2h)');
    expect(c.detail).toMatchObject({ age_s: 7201, threshold_s: 7200 });
    expect(firing({ volumes: [volume({ lastSuccess: iso(2 * HOUR + 1000) })], overdueFactor: 3 }, 'overdue')).toBe(false);
    expect(firing({ volumes: [volume({ lastSuccess: iso(2 * HOUR + 1000), scheduleIntervalMs: 2 * HOUR })] }, 'overdue')).toBe(false);
  });

  it('overdue: a volume never backed up is measured from the agent\'s start', () => {
    const never = [volume({ lastSuccess: null, lastSnapshotTime: null })];
    expect(firing({ volumes: never, agentStarted: iso(60_000) }, 'overdue')).toBe(false);
    expect(firing({ volumes: never, agentStarted: iso(2 * HOUR) }, 'overdue')).toBe(false);
    const c = one(evaluate({ volumes: never, agentStarted: iso(2 * HOUR + 1) }), 'overdue');
    expect(c.firing).toBe(true);
    expect(c.summary).toMatch(/^volume pgdata: never backed up in the 2h since the agent started, over 2 x/);
  });

  it('rpo_over_target: fires when the newest snapshot is older than twice the rpo, and only with an rpo', () => {
    expect(firing({ volumes: [volume({ rpoTargetMs: 5000, lastSnapshotTime: iso(10_000) })] }, 'rpo_over_target')).toBe(false);
    const c = one(evaluate({ volumes: [volume({ rpoTargetMs: 5000, lastSnapshotTime: iso(12_000) })] }), 'rpo_over_target');
    expect(c.firing).toBe(true);
    expect(c.summary).toBe('volume pgdata: newest snapshot is 12s old, over twice its RPO target of 5s (10s)');
    expect(c.detail).toMatchObject({ rpo_s: 5, threshold_s: 10, age_s: 12 });
    expect(firing({ volumes: [volume({ rpoTargetMs: null, lastSnapshotTime: iso(HOUR) })] }, 'rpo_over_target')).toBe(false);
    // no snapshot yet: measured from the agent's start
    expect(firing({ volumes: [volume({ rpoTargetMs: 5000, lastSnapshotTime: null })], agentStarted: iso(5000) }, 'rpo_over_target')).toBe(false);
    expect(firing({ volumes: [volume({ rpoTargetMs: 5000, lastSnapshotTime: null })], agentStarted: iso(10_001) }, 'rpo_over_target')).toBe(true);
  });

  it('peer_unreachable and target_unreachable: fire from three failures in a row', () => {
    const link = (failures: number) => [{ name: 'dr', failures, last_error: 'connect ECONNREFUSED 10.0.0.2:9318', last_success: null }];
    expect(firing({ peers: link(2) }, 'peer_unreachable', 'dr')).toBe(false);
    const p = one(evaluate({ peers: link(3) }), 'peer_unreachable', 'dr');
    expect(p.firing).toBe(true);
    expect(p.summary).toBe('peer dr unreachable: 3 pushes failed in a row (last success never): connect ECONNREFUSED 10.0.0.2:9318');
    expect(firing({ targets: link(2) }, 'target_unreachable', 'dr')).toBe(false);
    expect(firing({ targets: link(7) }, 'target_unreachable', 'dr')).toBe(true);
  });

  it('drill_failed: follows the latest drill of each source', () => {
    const drills = [
      { source: 'a', ok: true, error: null, at: iso(HOUR) },
      { source: 'a', ok: false, error: 'container web not healthy', at: iso(60_000) },
      { source: 'b', ok: false, error: 'no password', at: iso(2 * HOUR) },
      { source: 'b', ok: true, error: null, at: iso(HOUR) },
    ];
    const list = evaluate({ drills });
    expect(one(list, 'drill_failed', 'a')).toMatchObject({ firing: true, summary: `drill of a failed at ${iso(60_000)}: container web not healthy` });
    expect(one(list, 'drill_failed', 'b').firing).toBe(false);
  });
});

describe('cronIntervalMs', () => {
  it('is the gap between runs of a regular schedule', () => {
    expect(cronIntervalMs('0 * * * *')).toBe(HOUR);
    expect(cronIntervalMs('*/15 * * * *')).toBe(15 * 60_000);
  });

  it('is the widest gap of an irregular one, so a weekend is not overdue', () => {
    expect(cronIntervalMs('0 9 * * 1-5')).toBeGreaterThanOrEqual(3 * 24 * HOUR - HOUR); // Friday to Monday (an hour less over a DST change)
  });
});
