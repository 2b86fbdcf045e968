import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FakeEngine } from './fake-engine.ts';
import { flushedWal, PsqlSessions } from './postgres-backup.ts';
import { spec, tempDir } from './testing/inventory-fixture.ts';

// A psql that answers the WAL question and notes its pid each time it starts: one line per session.
const FAKE_PSQL = `#!/bin/sh
echo $$ >> "$STARTS"
while read -r line; do
  case "$line" in
    '\\echo '*) echo "\${line#\\\\echo }" ;;
    *pg_current_wal_flush_lsn*) echo "0/3000100|000000010000000000000003|256|7445566778899001122" ;;
  esac
done
`;

let dir: ReturnType<typeof tempDir>;
let engine: FakeEngine;
let starts: string;
let savedPath: string | undefined;

beforeEach(() => {
  dir = tempDir('lifeboat-psql-');
  const bin = path.join(dir.dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'psql'), FAKE_PSQL, { mode: 0o755 });
  starts = path.join(dir.dir, 'starts');
  savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${process.env.PATH}`;
  process.env.STARTS = starts;
  engine = new FakeEngine(path.join(dir.dir, 'engine'));
});
afterEach(() => {
  process.env.PATH = savedPath;
  delete process.env.STARTS;
  dir.cleanup();
});

const sessionsStarted = () => (fs.existsSync(starts) ? fs.readFileSync(starts, 'utf8').trim().split('\n') : []);

it('asks every backup\'s question on one session, and on a new one once that one is gone', async () => {
  engine.addImage({ repoTags: ['postgres:15'] });
  const id = await engine.createContainer(spec('db', 'postgres:15'));
  await engine.start(id);
  const db = (await engine.inspectContainer(id))!;
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
