/**
 * Backups while files change under them (issue 12, item 5), at random points:
 * a racer thread (changing-files-racer.ts) truncates, grows and replaces the
 * files of a source while two backups of it run (the second with the first as
 * parent), and logs every change. Then every file of both snapshots is
 * restored and must be a version the file really had: never a splice of
 * versions. A file the backup reports as changed while it was read is left
 * out, or kept as it was in the parent snapshot.
 *
 * Bounded to a few seconds by default; CHANGING_FILES_ROUNDS=200 runs longer,
 * CHANGING_FILES_SEED picks other races. It prints what it ran, and writes
 * its counts for test/reliability/report.ts (faults_injected: changes made
 * while backups ran; races_run: backups run while the racer changed their
 * files; snapshots_checked; snapshots_lost: snapshots holding a file that
 * never was).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { backup } from '../../src/backup/archiver.ts';
import type { Snapshot } from '../../src/repo/snapshot.ts';
import type { SplitterSpec } from '../../src/repo/splitter-spec.ts';
import { openTestRepo, type TestRepo } from '../../src/repo/testing/fixture.ts';
import { restore } from '../../src/restore/restorer.ts';
import { StoreHookedPool } from '../../src/backup/testing/store-hook.ts';
import type { StoreItem, StoreReply } from '../../src/backup/jobs.ts';
import { type Change, contentOf, type RacerInit, seeded } from './changing-files-racer.ts';
import { writeSummary } from './report.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const ROUNDS = Number(process.env.CHANGING_FILES_ROUNDS ?? 3);
const SEED = Number(process.env.CHANGING_FILES_SEED ?? 1);
const RACER = new URL('./changing-files-racer.ts', import.meta.url);

/** The real pool, counting how often each file's first part is sent: more than once is a re-read. */
class CountingWorkers extends StoreHookedPool {
  readonly starts = new Map<string, number>();
  override store(items: readonly StoreItem[], send: () => Promise<StoreReply>): Promise<StoreReply> {
    for (const i of items) if (i.start === 0) this.starts.set(i.path, (this.starts.get(i.path) ?? 0) + 1);
    return send();
  }
}

const tally = { rounds: 0, backups: 0, races: 0, reread: 0, reported: 0, keptFromParent: 0, filesChecked: 0, snapshotsChecked: 0, never: 0 };
const failures: string[] = [];

afterAll(() => {
  const line =
    `changing files: ${tally.rounds} rounds, ${tally.backups} backups, ${tally.races} races (changes made while backups ran), ` +
    `${tally.reread} files re-read, ${tally.reported} reported (${tally.keptFromParent} kept from the parent), ` +
    `${tally.filesChecked} restored files checked, ${tally.never} that never existed`;
  console.log(line);
  writeSummary({
    suite: 'changing-files',
    part: 'racer',
    counts: { faults_injected: tally.races, races_run: tally.backups, snapshots_checked: tally.snapshotsChecked, snapshots_lost: tally.never > 0 ? 1 : 0 },
    failures,
  });
});

/** True when `got` is a state the file really had: a version after a change, or during an append a prefix of the grown one. */
function isVersion(got: Buffer, history: readonly Change[]): boolean {
  let cur: Buffer = Buffer.alloc(0);
  for (const c of history) {
    const prev = cur.length;
    if (c.op === 'truncate') cur = cur.subarray(0, c.size);
    else if (c.op === 'append') cur = Buffer.concat([cur, contentOf(c.seed, c.length)]);
    else cur = contentOf(c.seed, c.length);
    if (got.equals(cur)) return true;
    if (c.op === 'append' && got.length > prev && got.length < cur.length && got.equals(cur.subarray(0, got.length))) return true;
  }
  return false;
}

interface Backed {
  readonly snapshot: Snapshot;
  /** Names the backup reported as changed while read. */
  readonly reported: Set<string>;
}

async function round(t: TestRepo, pool: CountingWorkers, n: number): Promise<void> {
  const random = seeded(SEED * 7919 + n);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const dir = await t.temp.make(`lifeboat-changing-${n}-`);
  const src = path.join(dir, 'src');
  const scratch = path.join(dir, 'scratch');
  await fsp.mkdir(src);
  await fsp.mkdir(scratch);
  const files = [
    ...Array.from({ length: 2 }, (_, i) => ({ name: `large-${i}`, size: int(9 * MiB, 20 * MiB), large: true })),
    ...Array.from({ length: 6 }, (_, i) => ({ name: `small-${i}`, size: int(0, 900 * KiB), large: false })),
  ];
  const history = new Map<string, Change[]>();
  for (const [i, f] of files.entries()) {
    const first: Change = { file: f.name, op: 'replace', seed: SEED * 1_000_000 + n * 1000 + i, length: f.size };
    history.set(f.name, [first]);
    await fsp.writeFile(path.join(src, f.name), contentOf(first.seed, first.length));
  }
  const splitter: SplitterSpec = n % 3 === 2 ? { kind: 'cdc', size: 64 * KiB } : { kind: 'fixed', size: 64 * KiB };

  const control = new SharedArrayBuffer(12);
  const racer: RacerInit = { dir: src, scratch, files, seed: SEED * 1000 + n, control };
  const worker = new Worker(RACER, { workerData: { racer } });
  const log = new Promise<Change[]>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const backed: Backed[] = [];
  try {
    for (let b = 0; b < 2; b++) {
      const reported = new Set<string>();
      const other: string[] = [];
      pool.starts.clear();
      const snapshot = await backup(t.repo, {
        source: src,
        host: `round-${n}`,
        splitter,
        packSize: t.packSize,
        compressionLevel: 1,
        pool,
        onWarning: (p, err) => {
          if (path.dirname(p) === src && err.message.includes('changed while it was read')) reported.add(path.basename(p));
          else other.push(`${p}: ${err.message}`);
        },
      });
      tally.backups++;
      for (const count of pool.starts.values()) if (count > 1) tally.reread++;
      if (other.length > 0) failures.push(`round ${n} backup ${b}: unexpected warnings: ${other.join('; ')}`);
      if (snapshot.stats.errors !== reported.size) failures.push(`round ${n} backup ${b}: ${snapshot.stats.errors} errors, ${reported.size} files reported`);
      tally.reported += reported.size;
      backed.push({ snapshot, reported });
    }
  } finally {
    Atomics.store(new Int32Array(control), 0, 1);
    Atomics.notify(new Int32Array(control), 2);
  }
  const changes = await log;
  await worker.terminate();
  tally.races += changes.length;
  for (const c of changes) history.get(c.file)!.push(c);

  const restored: Map<string, Buffer | undefined>[] = [];
  for (const [b, { snapshot, reported }] of backed.entries()) {
    const target = path.join(dir, `restored-${b}`);
    await restore(t.repo, snapshot, { target, pool, onWarning: (p, err) => failures.push(`round ${n} restore ${b}: ${p}: ${err.message}`) });
    const got = new Map<string, Buffer | undefined>();
    let bad = false;
    for (const f of files) {
      const content = await fsp.readFile(path.join(target, f.name)).catch(() => undefined);
      got.set(f.name, content);
      const where = `round ${n} (CHANGING_FILES_SEED=${SEED}) backup ${b}, ${f.name}`;
      if (content === undefined) {
        if (!reported.has(f.name)) failures.push(`${where}: missing, and not reported`);
        else if (b > 0 && restored[b - 1]!.get(f.name) !== undefined) failures.push(`${where}: reported, but not kept from the parent`);
        continue;
      }
      tally.filesChecked++;
      if (!isVersion(content, history.get(f.name)!)) {
        bad = true;
        tally.never++;
        failures.push(`${where}: ${content.length} bytes that were never the file's content`);
      }
      if (reported.has(f.name) && b > 0) {
        if (content.equals(restored[b - 1]!.get(f.name) ?? Buffer.alloc(0))) tally.keptFromParent++;
        else failures.push(`${where}: reported, but not as it was in the parent`);
      }
    }
    if (!bad) tally.snapshotsChecked++;
    restored.push(got);
  }
  tally.rounds++;
  await fsp.rm(dir, { recursive: true, force: true });
}

describe('backups while a racer truncates, grows and replaces the files they read', () => {
  it(`every restored file is a version that really existed (${ROUNDS} rounds; CHANGING_FILES_ROUNDS for more)`, async () => {
    const t = await openTestRepo({ workers: 2 });
    const pool = new CountingWorkers(t.repo, { workers: 2, level: 1, packSize: t.packSize });
    try {
      for (let n = 0; n < ROUNDS; n++) await round(t, pool, n);
    } finally {
      await pool.close();
      await t.close();
    }
    expect(failures).toEqual([]);
  }, 600_000);
});
