import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FakeEngine } from '../docker/fake-engine.ts';
import { installFakePsql } from '../docker/testing/fake-psql.ts';
import { spec, volumeMount } from '../docker/testing/inventory-fixture.ts';
import { DatabaseBackupError } from '../errors/errors.ts';
import { latestSnapshotOf } from '../repo/snapshots.ts';
import { openTestRepo, type TestRepo } from '../repo/testing/fixture.ts';
import { backupPostgres } from './postgres.ts';

let t: TestRepo;
let psql: ReturnType<typeof installFakePsql>;

beforeEach(async () => {
  t = await openTestRepo({ workers: 1 });
  psql = installFakePsql(await t.temp.make('lifeboat-psql-'));
});
afterEach(async () => {
  psql.restore();
  await t.close();
});

it('refuses a PostgreSQL whose WAL is outside the volume (initdb --waldir), ending its backup and saving nothing', async () => {
  const engine = new FakeEngine(await t.temp.make('lifeboat-engine-'));
  engine.addImage({ repoTags: ['postgres:15'] });
  const id = await engine.createContainer(spec('db', 'postgres:15', { mounts: [volumeMount('pgdata', '/var/lib/postgresql/data')] }));
  await engine.start(id);
  const db = (await engine.inspectContainer(id))!;
  const source = await t.temp.make('lifeboat-pgdata-');
  fs.writeFileSync(path.join(source, 'PG_VERSION'), '15\n');
  // initdb --waldir: pg_wal is a link to a directory elsewhere, which a backup of the volume would miss
  fs.symlinkSync(await t.temp.make('lifeboat-waldir-'), path.join(source, 'pg_wal'));
  const read = { source, host: 'test-host', volume: 'pgdata', splitter: { kind: 'fixed' as const, size: 64 * 1024 }, packSize: t.packSize, compressionLevel: 3, pool: t.pool, meta: {} };
  const refused = backupPostgres(engine, t.repo, db, read, { timeoutMs: 10_000, log: pino({ level: 'silent' }) });
  await expect(refused).rejects.toBeInstanceOf(DatabaseBackupError);
  await expect(refused).rejects.toThrow(/keeps its WAL outside volume pgdata/);
  // the backup was ended: its session (and with it PostgreSQL's backup) is gone
  const [pid] = psql.starts();
  expect(psql.starts()).toHaveLength(1);
  expect(() => process.kill(Number(pid), 0)).toThrow();
  expect(latestSnapshotOf(t.repo, 'test-host', path.resolve(source))).toBeUndefined();
});
