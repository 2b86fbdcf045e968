import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FakeEngine } from './fake-engine.ts';
import { flushedWal, PsqlSessions } from './postgres-backup.ts';
import { installFakePsql } from './testing/fake-psql.ts';
import { spec, tempDir } from './testing/inventory-fixture.ts';

let dir: ReturnType<typeof tempDir>;
let engine: FakeEngine;
let psql: ReturnType<typeof installFakePsql>;

beforeEach(() => {
  dir = tempDir('lifeboat-psql-');
  psql = installFakePsql(dir.dir);
  engine = new FakeEngine(path.join(dir.dir, 'engine'));
});
afterEach(() => {
  psql.restore();
  dir.cleanup();
});

const sessionsStarted = () => psql.starts();

async function runningDb() {
  engine.addImage({ repoTags: ['postgres:15'] });
  const id = await engine.createContainer(spec('db', 'postgres:15'));
  await engine.start(id);
  return (await engine.inspectContainer(id))!;
}

it('asks every backup\'s question on one session, and on a new one once that one is gone', async () => {
  const db = await runningDb();
  const sessions = new PsqlSessions();
  try {
    for (let i = 0; i < 3; i++) {
      expect(await flushedWal(engine, db, '0/3000000', { timeoutMs: 10_000, sessions })).toMatchObject({ lsn: '0/3000100', bytesSince: 256 });
    }
    expect(sessionsStarted()).toHaveLength(1);
    // the database restarted: its session's psql is gone
    process.kill(Number(sessionsStarted()[0]), 'SIGKILL');
    expect(await flushedWal(engine, db, '0/3000000', { timeoutMs: 10_000, sessions })).toMatchObject({ segment: '000000010000000000000003' });
    expect(sessionsStarted()).toHaveLength(2);
  } finally {
    await sessions.close();
  }
  // without sessions, each question opens its own
  await flushedWal(engine, db, '0/3000000', { timeoutMs: 10_000 });
  expect(sessionsStarted()).toHaveLength(3);
});

it('a kept session that stops answering fails that backup after one timeout, not two, and the next opens a new one', async () => {
  const db = await runningDb();
  const sessions = new PsqlSessions();
  try {
    await flushedWal(engine, db, '0/3000000', { timeoutMs: 1000, sessions });
    psql.hang(true);
    const err = await flushedWal(engine, db, '0/3000000', { timeoutMs: 1000, sessions }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LB_ERR_DATABASE_BACKUP' });
    expect((err as Error).message).toMatch(/did not answer within/);
    // no second session was started to wait out the timeout again
    expect(sessionsStarted()).toHaveLength(1);
    psql.hang(false);
    expect(await flushedWal(engine, db, '0/3000000', { timeoutMs: 1000, sessions })).toMatchObject({ lsn: '0/3000100' });
    expect(sessionsStarted()).toHaveLength(2);
  } finally {
    psql.hang(false);
    await sessions.close();
  }
});
