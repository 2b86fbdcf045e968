/**
 * lifeboat.consistency=postgres against a real PostgreSQL 15 (the image of
 * test/lib/postgres-image.ts) under pgbench, through the CLI: the database is
 * never paused, after a base backup each snapshot reads only the WAL written
 * since (until the chain breaks), and each snapshot, restored into a new volume, starts
 * (replaying its WAL from the backup_label), passes pg_amcheck, and keeps
 * pgbench's invariants: every transaction whole or absent.
 */
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup as cleanupDirs, lifeboat, tempDir } from '../cli/run.ts';
import { docker, until } from '../lib/docker-cli.ts';
import { ensurePostgresImage, POSTGRES_DATA_DIR } from '../lib/postgres-image.ts';
import { cleanup, DEFAULT_SOCKET, ensureEngine, TEST_LABEL, uniqueName } from './harness.ts';

const psql = (c: string, sql: string) => docker('exec', c, 'psql', '-v', 'ON_ERROR_STOP=1', '-XAtq', '-c', sql).then((s) => s.trim());
const BALANCES =
  'select (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), ' +
  '(select sum(abalance) from pgbench_accounts), (select sum(delta) from pgbench_history)';

let image: string;
let dir: string;
let config: string;
const made: { containers: string[]; volumes: string[] } = { containers: [], volumes: [] };

async function postgres(volume: string, labels: string[] = []): Promise<string> {
  const name = uniqueName('pg');
  made.containers.push(name);
  await docker('run', '-d', '--name', name, '--label', TEST_LABEL, ...labels.flatMap((l) => ['--label', l]), '--network', 'none', '-v', `${volume}:${POSTGRES_DATA_DIR}`, image);
  await until(`pg_isready in ${name}`, 120_000, () => docker('exec', name, 'pg_isready', '-q').then(() => true));
  return name;
}

beforeAll(async () => {
  await ensureEngine();
  image = await ensurePostgresImage(DEFAULT_SOCKET);
  dir = await tempDir('lifeboat-pg-');
  config = path.join(dir, 'lifeboat.toml');
  await fsp.writeFile(
    config,
    ['[agent]', `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`, '[repository]', `path = ${JSON.stringify(path.join(dir, 'repo'))}`, '[docker]', 'hook_timeout = "60s"'].join('\n'),
  );
  expect((await lifeboat(['init', '--repo', path.join(dir, 'repo')])).code).toBe(0);
}, 600_000);

afterAll(async () => {
  for (const c of made.containers) await docker('rm', '-f', '-v', c).catch(() => {});
  for (const v of made.volumes) await docker('volume', 'rm', '-f', v).catch(() => {});
  await cleanup();
  await cleanupDirs();
});

describe('PostgreSQL under load, backed up by its own protocol', () => {
  it('is never paused, and every snapshot restores to a database that starts, checks clean and keeps its invariants', async () => {
    const volume = uniqueName('pgdata');
    made.volumes.push(volume);
    const db = await postgres(volume, ['lifeboat.consistency=postgres']);
    await docker('exec', db, 'pgbench', '-q', '-i', '-s', '2');
    const load = spawn('docker', ['-H', `unix://${DEFAULT_SOCKET}`, 'exec', db, 'pgbench', '-T', '25', '-c', '3', '-n'], { stdio: 'ignore' });
    const loadEnded = new Promise<void>((resolve) => load.on('close', () => resolve()));
    // the state is watched all along: never paused
    const states = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        states.add((await docker('inspect', '-f', '{{.State.Status}}', db)).trim());
        await sleep(50);
      }
    })();
    const snapshots: { snapshot: string; examined: number }[] = [];
    const backupNow = async () => {
      // a transaction committed since the last snapshot whatever pgbench is doing (its 25 s may be over on a slow machine);
      // delta 0 keeps the balances' invariant
      await psql(db, 'insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 0, now())');
      const r = await lifeboat(['--config', config, '--json', 'backup', volume], { timeoutMs: 180_000 });
      expect(r.code, r.stderr).toBe(0);
      snapshots.push({ snapshot: r.json().snapshot, examined: r.json().examined });
    };
    try {
      await sleep(2000);
      // a base backup, then two that read only the WAL written since
      for (let i = 0; i < 3; i++) await backupNow();
      // the segment the chain ends in is recycled (a switch, a checkpoint): the next one is a base backup again
      for (let i = 0; i < 2; i++) await psql(db, 'select pg_switch_wal(); checkpoint;');
      await backupNow();
    } finally {
      watching = false;
      await watcher;
      load.kill();
      await loadEnded;
    }
    expect([...states]).toEqual(['running']);
    const files = Number((await docker('exec', db, 'sh', '-c', `find ${POSTGRES_DATA_DIR} | wc -l`)).trim());
    const [base, wal1, wal2, rebase] = snapshots.map((s) => s.examined);
    expect(base).toBeGreaterThan(files / 2);
    expect(wal1).toBeLessThan(files / 4);
    expect(wal2).toBeLessThan(files / 4);
    expect(rebase).toBeGreaterThan(files / 2);

    let history = -1;
    for (const { snapshot } of snapshots) {
      const copy = uniqueName('pgcopy');
      made.volumes.push(copy);
      const r = await lifeboat(['--config', config, '--json', 'restore', snapshot, '--to-volume', copy], { timeoutMs: 180_000 });
      expect(r.code, r.stderr).toBe(0);
      const restored = await postgres(copy);
      const [t, b, a, h] = (await psql(restored, BALANCES)).split('|').map(Number);
      expect(t).toBe(b);
      expect(b).toBe(a);
      expect(a).toBe(h);
      // each snapshot holds what the load committed before it: the WAL-only ones replayed past their base
      const rows = Number(await psql(restored, 'select count(*) from pgbench_history'));
      expect(rows).toBeGreaterThan(history);
      history = rows;
      await docker('exec', restored, 'pg_amcheck', '--all', '--install-missing', '--heapallindexed');
      await docker('rm', '-f', restored);
    }
  });
});
