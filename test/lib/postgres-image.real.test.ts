/**
 * The PostgreSQL 15 test image (test/lib/postgres-image.ts) against the real
 * engine: a container on a named volume, network none, comes up healthy;
 * pgbench loads it; the pgbench balances agree; pg_amcheck finds nothing; a
 * new container on the same volume after a SIGKILL starts from the data
 * (crash recovery, no initdb). The first run builds the image (minutes); later
 * runs import or reuse it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, DEFAULT_SOCKET, ensureEngine, TEST_LABEL, uniqueName } from '../docker/harness.ts';
import { docker, until } from './docker-cli.ts';
import { ensurePostgresImage, POSTGRES_DATA_DIR, POSTGRES_RECIPE_LABEL, postgresRecipeHash } from './postgres-image.ts';

const ready = (c: string) => until(`pg_isready in ${c}`, 60_000, () => docker('exec', c, 'pg_isready', '-q').then(() => true));

let image: string;
const volume = uniqueName('pgdata');
const containers: string[] = [];

async function startPostgres(): Promise<string> {
  const name = uniqueName('pg');
  containers.push(name);
  await docker('run', '-d', '--name', name, '--label', TEST_LABEL, '--network', 'none', '-v', `${volume}:${POSTGRES_DATA_DIR}`, image);
  await ready(name);
  return name;
}

const psql = (c: string, sql: string) => docker('exec', c, 'psql', '-v', 'ON_ERROR_STOP=1', '-XAtq', '-c', sql).then((s) => s.trim());

const BALANCES =
  'select (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), ' +
  '(select sum(abalance) from pgbench_accounts), (select sum(delta) from pgbench_history), (select count(*) from pgbench_history)';

beforeAll(async () => {
  await ensureEngine();
  image = await ensurePostgresImage(DEFAULT_SOCKET);
  await docker('volume', 'create', '--label', TEST_LABEL, volume);
}, 30 * 60_000);

afterAll(async () => {
  for (const c of containers) await docker('rm', '-f', '-v', c).catch(() => undefined);
  await docker('volume', 'rm', '-f', volume).catch(() => undefined);
  await cleanup();
});

describe('the PostgreSQL 15 test image', () => {
  it('is reused: a second call returns the same image, labelled with the recipe', async () => {
    const started = Date.now();
    expect(await ensurePostgresImage(DEFAULT_SOCKET)).toBe(image);
    expect(Date.now() - started).toBeLessThan(5_000);
    const labels = JSON.parse(await docker('image', 'inspect', '--format', '{{json .Config.Labels}}', image)) as Record<string, string>;
    expect(labels[POSTGRES_RECIPE_LABEL]).toBe(postgresRecipeHash());
  });

  it('runs pgbench on a volume with its balances intact and pg_amcheck clean, and restarts from the volume after a kill', async () => {
    const c = await startPostgres();
    expect(await psql(c, 'show server_version_num')).toMatch(/^15\d{4}$/);
    // the HEALTHCHECK (pg_isready) turns healthy
    await until('a healthy container', 60_000, async () => (await docker('inspect', '--format', '{{.State.Health.Status}}', c)).trim() === 'healthy');

    await docker('exec', c, 'pgbench', '-i', '-s', '1', '-q');
    const bench = await docker('exec', c, 'pgbench', '-T', '3', '-c', '2');
    const done = Number(/number of transactions actually processed: (\d+)/.exec(bench)?.[1]);
    expect(done).toBeGreaterThan(0);

    const [t, b, a, h, n] = (await psql(c, BALANCES)).split('|');
    expect(Number(n)).toBe(done);
    expect([t, b, a]).toEqual([h, h, h]);

    // pg_amcheck exits non-zero and reports on any corruption it finds
    const check = await docker('exec', c, 'pg_amcheck', '--all', '--install-missing', '--heapallindexed');
    expect(check.trim()).toBe('');

    // Killed: a new container on the same volume starts from the data (crash recovery, no initdb).
    await docker('rm', '-f', c);
    const again = await startPostgres();
    expect(await psql(again, BALANCES)).toBe([t, b, a, h, n].join('|'));
    // the logs are on stdout and stderr both
    const logs = await promisify(execFile)('docker', ['-H', `unix://${DEFAULT_SOCKET}`, 'logs', again]).then((r) => r.stdout + r.stderr);
    expect(logs).toContain('starting from the data');
    expect(logs).not.toContain('initialising an empty data directory');
    expect(logs).toMatch(/database system was interrupted|not properly shut down/);
  }, 180_000);
});
