import { describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/status.ts';
import { journalView, offlineStatus } from '../../agent/status.ts';
import { parseConfig } from '../../config/load.ts';
import { formatAge, formatStatus } from './status.ts';

const NOW = Date.parse('2030-01-01T12:00:00Z');

const running: StatusReport = {
  agent: { running: true, pid: 4711, uptime_s: 3 * 3600 + 120, version: '0.1.0', host: 'docker-01', started: '2030-01-01T09:58:00.000Z', listen: '127.0.0.1:9317', jobs: { running: 'backup of volume pgdata', waiting: ['retention'] } },
  engine: { address: 'unix:///var/run/docker.sock', reachable: true, version: '28.2.2', last_error: null, last_reconcile: '2030-01-01T11:59:00.000Z' },
  volumes: [
    {
      name: 'pgdata',
      last_snapshot: { id: '1a2b3c4d'.padEnd(64, 'e'), time: '2030-01-01T11:57:30.000Z', age_s: 150 },
      journal: { state: 'dirty', trusted: true, dirty: 12, reason: null, last_full_scan: '2030-01-01T10:00:00.000Z' },
      schedule: '*/15 * * * *',
      next_run: '2030-01-01T12:15:00.000Z',
      rpo_target_s: 50,
      continuous: true,
      debounce_ms: 5000,
      running: true,
      last_backup: { time: '2030-01-01T11:57:30.000Z', duration_ms: 800, files: 10, examined: 2, bytes_read: 4096, bytes_new: 4096, bytes_stored: 1200, bytes_total: 8192, frozen_ms: 0, lag_ms: 6400 },
      last_error: null,
    },
    {
      name: 'uploads',
      last_snapshot: null,
      journal: journalView(undefined),
      schedule: '0 * * * *',
      next_run: '2030-01-01T13:00:00.000Z',
      rpo_target_s: 3600,
      continuous: false,
      debounce_ms: null,
      running: false,
      last_backup: null,
      last_error: { time: '2030-01-01T11:00:02.000Z', message: 'no Docker volume named "uploads"', code: 'LB_ERR_VOLUME_NOT_FOUND' },
    },
  ],
  missing: ['ghost'],
  peers: [],
  targets: [],
  drills: { schedule: null, next_run: null, last: [], history: {} },
  retention: { schedule: '30 3 * * *', next_run: '2030-01-02T03:30:00.000Z', policy: { keep_last: 7, keep_daily: 14 }, last_run: null, last_error: null },
  notes: [],
};

describe('lifeboat status, as text', () => {
  it('a running agent: agent, engine, one row per volume, peers, retention', () => {
    const text = formatStatus(running, NOW);
    const lines = text.split('\n');
    expect(lines[0]).toBe('agent      running: pid 4711, up 3h 2m, version 0.1.0, host docker-01, endpoint http://127.0.0.1:9317');
    expect(lines[1]).toBe('           now: backup of volume pgdata; waiting: retention');
    expect(lines[2]).toBe('engine     reachable at unix:///var/run/docker.sock, Docker 28.2.2, inventory synced 2030-01-01 11:59:00 UTC');
    expect(lines[3]).toBe('volumes    2 tracked; listed in [[volume]] but not on the engine: ghost');
    expect(lines[4]).toMatch(/^ {2}VOLUME +LAST SNAPSHOT \(UTC\) +AGE +JOURNAL +NEXT RUN \(UTC\) +CONTINUOUS +LAG +LAST ERROR$/);
    expect(lines[5]).toMatch(/^ {2}pgdata +1a2b3c4d 2030-01-01 11:57:30 +2m 30s +dirty \(12\) +running now +yes \(5s\) +6\.4s +-$/);
    expect(lines[6]).toMatch(/^ {2}uploads +none +- +off +2030-01-01 13:00:00 +no +- +2030-01-01 11:00:02: no Docker volume named "uploads"$/);
    expect(lines[7]).toBe('peers      none');
    expect(lines[8]).toBe('retention  next 2030-01-02 03:30:00 UTC (30 3 * * *); keep_last=7 keep_daily=14');
    expect(lines).toHaveLength(9);
  });

  it('no agent: "not running", an unreachable engine, and what the catalog and repository tell', () => {
    const r: StatusReport = {
      ...running,
      agent: { running: false, pid: null, uptime_s: null, version: null, host: 'docker-01', started: null, listen: '127.0.0.1:9317', jobs: null },
      engine: { address: 'unix:///var/run/docker.sock', reachable: false, version: null, last_error: 'connect ENOENT /var/run/docker.sock', last_reconcile: null },
      volumes: [{ ...running.volumes[0]!, running: false, journal: journalView(undefined), last_backup: null }],
      missing: [],
      retention: { ...running.retention, policy: null },
      notes: ['agent: not running (nothing answers at http://127.0.0.1:9317: connection refused)'],
    };
    const lines = formatStatus(r, NOW).split('\n');
    expect(lines[0]).toBe('agent      not running (host docker-01)');
    expect(lines[1]).toBe('engine     UNREACHABLE at unix:///var/run/docker.sock: connect ENOENT /var/run/docker.sock');
    expect(lines[2]).toBe('volumes    1 tracked');
    expect(lines[4]).toMatch(/^ {2}pgdata +1a2b3c4d 2030-01-01 11:57:30 +2m 30s +off +2030-01-01 12:15:00 +yes \(5s\) +- +-$/);
    expect(lines.at(-2)).toBe('retention  next 2030-01-02 03:30:00 UTC (30 3 * * *); no keep_* rule: nothing is forgotten');
    expect(lines.at(-1)).toBe('note       agent: not running (nothing answers at http://127.0.0.1:9317: connection refused)');
  });

  it('formatAge', () => {
    expect(formatAge(0)).toBe('0s');
    expect(formatAge(59)).toBe('59s');
    expect(formatAge(60)).toBe('1m');
    expect(formatAge(150)).toBe('2m 30s');
    expect(formatAge(3600 * 5 + 60 * 7 + 3)).toBe('5h 7m');
    expect(formatAge(86_400 * 3 + 3600 * 4)).toBe('3d 4h');
  });
});

describe('offlineStatus', () => {
  it('without a catalog: no volumes, a note saying why, retention from the config', () => {
    const config = parseConfig('[agent]\nstate_dir = "/nonexistent/lifeboat"\nhost = "h"\n[retention]\nkeep_last = 3\n', 'c.toml');
    const r = offlineStatus({
      config,
      catalog: undefined,
      snapshots: { error: 'no repository password: set LIFEBOAT_PASSWORD or pass --password-file; last snapshots not shown' },
      engine: { address: 'unix:///x', reachable: null, version: null, last_error: null, last_reconcile: null },
      peers: [],
      listen: '127.0.0.1:9317',
      why: 'agent: not running (nothing answers at http://127.0.0.1:9317: connection refused)',
      now: NOW,
    });
    expect(r.agent).toMatchObject({ running: false, pid: null, host: 'h' });
    expect(r.volumes).toEqual([]);
    expect(r.peers).toEqual([]);
    expect(r.retention).toMatchObject({ schedule: '30 3 * * *', policy: { keep_last: 3 } });
    expect(r.retention.next_run).toMatch(/T\d\d:30:00\.000Z$/);
    expect(r.notes).toEqual([
      'agent: not running (nothing answers at http://127.0.0.1:9317: connection refused)',
      'repository: no repository password: set LIFEBOAT_PASSWORD or pass --password-file; last snapshots not shown',
      'no catalog in /nonexistent/lifeboat yet: the agent has never run with this state directory',
    ]);
  });
});
