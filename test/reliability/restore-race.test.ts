/**
 * Restore against a hostile writer in its target (issue 12, item 6): while a
 * tree of a few thousand files is restored, another process keeps replacing
 * the target's directories and files with symlinks to a directory outside
 * (restore-racer.ts). Whatever the restore reports, nothing outside the
 * target may be created or changed: the outside directory (root:root 0755
 * when run as root, holding a sentinel file) must keep its entries, owners,
 * modes, times and contents.
 *
 * LIFEBOAT_RACE_ROUNDS sets how many restores run under attack (default 2,
 * a few seconds); each one reports the files it wrote outside. Its counts go
 * to report.ts: races_run (restores raced to their end) and
 * files_written_outside (entries created or changed outside the target:
 * must be 0).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LifeboatError, TargetNotEmptyError } from '../../src/errors/errors.ts';
import { backupDir, openTestRepo, type TestRepo } from '../../src/repo/testing/fixture.ts';
import type { Snapshot } from '../../src/repo/snapshot.ts';
import { restore } from '../../src/restore/restorer.ts';
import { NODE } from '../cli/run.ts';
import { noteFailure } from './crash-harness.ts';
import { writeSummary } from './report.ts';
import type { RacerConfig, RacerCounts } from './restore-racer.ts';

const ROUNDS = Math.max(1, Number(process.env.LIFEBOAT_RACE_ROUNDS ?? 2));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const RACER = path.join(import.meta.dirname, 'restore-racer.ts');
const MiB = 1024 * 1024;

const tally = { races_run: 0, files_written_outside: 0 };
const failures: string[] = [];
afterAll(() => writeSummary({ suite: 'restore-race', part: 'racer', counts: tally, failures }));

interface Seen {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeNs: bigint;
  readonly size: bigint;
  readonly digest: string;
}

/** Everything under `root` (root included) as relative path → what a change would alter. */
async function survey(root: string): Promise<Map<string, Seen>> {
  const out = new Map<string, Seen>();
  const visit = async (rel: string) => {
    const full = rel === '.' ? root : path.join(root, rel);
    const st = await fsp.lstat(full, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
    const digest = type === 'file' ? crypto.createHash('sha256').update(await fsp.readFile(full)).digest('hex') : '';
    out.set(rel, { type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs, size: st.size, digest });
    if (type === 'dir') for (const name of await fsp.readdir(full)) await visit(rel === '.' ? name : path.join(rel, name));
  };
  await visit('.');
  return out;
}

/** Entries created outside, and entries whose owner, mode, time, size or contents changed. */
function changes(before: Map<string, Seen>, after: Map<string, Seen>): { created: string[]; changed: string[] } {
  const created = [...after.keys()].filter((k) => !before.has(k));
  const changed: string[] = [];
  for (const [k, b] of before) {
    const a = after.get(k);
    if (!a) changed.push(`${k}: removed`);
    else {
      const diff = (Object.keys(b) as (keyof Seen)[]).filter((f) => a[f] !== b[f]);
      if (diff.length > 0) changed.push(`${k}: ${diff.map((f) => `${f} ${String(b[f])} -> ${String(a[f])}`).join(', ')}`);
    }
  }
  return { created, changed };
}

/**
 * The source: 48 directories of 6 subdirectories of 10 small files (2,880
 * files, 336 directories), a few files over 1 MiB (written in ranges),
 * hard links, symlinks inside the tree and a fifo; everything owned by
 * 1234:1234 when run as root, directories 0777, as the tester had it.
 */
async function makeSource(src: string): Promise<{ dirs: string[]; files: string[] }> {
  const dirs: string[] = [];
  const files: string[] = [];
  await fsp.mkdir(src);
  for (let a = 0; a < 48; a++) {
    const top = `d${String(a).padStart(2, '0')}`;
    dirs.push(top);
    for (let b = 0; b < 6; b++) {
      const sub = path.join(top, `s${b}`);
      dirs.push(sub);
      await fsp.mkdir(path.join(src, sub), { recursive: true });
      for (let c = 0; c < 10; c++) {
        const rel = path.join(sub, `f${c}.txt`);
        files.push(rel);
        await fsp.writeFile(path.join(src, rel), `${rel}\n`.repeat(1 + ((a * 7 + b * 3 + c) % 40)));
      }
    }
    if (a % 12 === 0) {
      const big = path.join(top, 'big.bin');
      files.push(big);
      await fsp.writeFile(path.join(src, big), Buffer.alloc(Math.round(1.5 * MiB), a + 1));
      await fsp.link(path.join(src, top, 's0', 'f0.txt'), path.join(src, top, 's1', 'hard.txt'));
      await fsp.symlink('s0/f1.txt', path.join(src, top, 'rel-link'));
    }
  }
  fs.mkdirSync(path.join(src, 'special'));
  dirs.push('special');
  if (process.platform === 'linux') {
    await new Promise<void>((resolve, reject) =>
      spawn('mkfifo', [path.join(src, 'special', 'pipe')], { stdio: 'ignore' }).on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mkfifo exited ${code}`)))),
    );
  }
  if (isRoot) {
    const own = async (rel: string) => {
      const full = path.join(src, rel);
      await fsp.lchown(full, 1234, 1234);
      if ((await fsp.lstat(full)).isDirectory()) await fsp.chmod(full, 0o777);
      for (const name of (await fsp.lstat(full)).isDirectory() ? await fsp.readdir(full) : []) await own(path.join(rel, name));
    };
    await own('.');
  }
  return { dirs, files };
}

function startRacer(cfg: RacerConfig): { ready: Promise<void>; finished: Promise<RacerCounts> } {
  const child = spawn(NODE, [RACER, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = Promise.withResolvers<void>();
  const finished = Promise.withResolvers<RacerCounts>();
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => {
    out += s;
    if (out.startsWith('ready\n')) ready.resolve();
  });
  child.on('error', (err) => {
    ready.reject(err);
    finished.reject(err);
  });
  child.on('exit', (code, signal) => {
    ready.reject(new Error(`racer exited (${code ?? signal}) before it was ready`));
    const last = out.trim().split('\n').at(-1) ?? '';
    if (code === 0 && last.startsWith('{')) finished.resolve(JSON.parse(last) as RacerCounts);
    else finished.reject(new Error(`racer exited with ${code ?? signal}: ${out}`));
  });
  return { ready: ready.promise, finished: finished.promise };
}

describe.skipIf(process.platform === 'win32')('restore raced by a process writing in its target', () => {
  let t: TestRepo;
  let snapshot: Snapshot;
  let tree: { dirs: string[]; files: string[] };

  beforeAll(async () => {
    t = await openTestRepo({ workers: 2 });
    const src = path.join(await t.temp.make(), 'src');
    tree = await makeSource(src);
    snapshot = await backupDir(t, src);
  });
  afterAll(() => t?.close());

  for (let round = 1; round <= ROUNDS; round++) {
    it(`round ${round}/${ROUNDS}: writes and changes nothing outside the target`, async (ctx) => {
      ctx.onTestFailed(noteFailure(failures, `round ${round}`));
      const base = await t.temp.make('lifeboat-race-');
      const outside = path.join(base, 'outside');
      const sentinel = path.join(outside, 'sentinel');
      await fsp.mkdir(outside);
      await fsp.writeFile(sentinel, 'sentinel: must stay as it is\n');
      await fsp.chmod(sentinel, 0o644);
      await fsp.chmod(outside, 0o755);
      if (isRoot) {
        await fsp.chown(sentinel, 0, 0);
        await fsp.chown(outside, 0, 0);
      }
      await fsp.utimes(sentinel, 1_000_000_000, 1_000_000_000);
      await fsp.utimes(outside, 1_000_000_000, 1_000_000_000);
      const before = await survey(outside);

      const target = path.join(base, 'target');
      await fsp.mkdir(target);
      const stopFile = path.join(base, 'stop');
      const racer = startRacer({ target, outside, outsideFile: sentinel, ...tree, stopFile, maxMs: 90_000, seed: round * 7919 });
      await racer.ready;
      let outcome: string;
      let warnings = 0;
      try {
        const stats = await restore(t.repo, snapshot, { target, pool: t.pool, onWarning: () => warnings++ });
        outcome = `completed with ${stats.errors} entries not restored`;
      } catch (err) {
        // Whatever the restore reports, it reports it as one of ours or a system error with a code.
        expect(err, 'the racer wrote into the target before the restore began').not.toBeInstanceOf(TargetNotEmptyError);
        expect(err instanceof LifeboatError || typeof (err as NodeJS.ErrnoException).code === 'string', String(err)).toBe(true);
        outcome = `failed: ${(err as Error).message}`;
      } finally {
        await fsp.writeFile(stopFile, '');
      }
      const counts = await racer.finished;
      const after = await survey(outside);
      const { created, changed } = changes(before, after);
      const createdFiles = created.filter((k) => after.get(k)?.type === 'file').length;
      const report =
        `round ${round}: restore ${outcome} (${warnings} warnings); racer ${counts.swaps} swaps, ${counts.planted} plants, ` +
        `${counts.shuffles} shuffles in ${counts.loops} loops; outside: ${createdFiles} files written, ${created.length} entries created, ${changed.length} changed`;
      console.log(report);
      expect(counts.swaps + counts.planted, 'the racer never got to act').toBeGreaterThan(0);
      tally.races_run++;
      tally.files_written_outside += created.length + changed.length;
      const show = (k: string) => `${k} (${after.get(k)?.type})`;
      expect({ created: created.slice(0, 20).map(show), changed: changed.slice(0, 20) }, report).toEqual({ created: [], changed: [] });
    });
  }
});
