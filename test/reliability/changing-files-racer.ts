/**
 * The racer of changing-files.test.ts: a worker thread that truncates, grows
 * and replaces (by rename) the files of a backup source at random points while
 * backups read them, and logs every change so the test can rebuild every
 * version each file really had.
 *
 * Every version of a file differs from the one before in mtime (two changes of
 * one file are at least MIN_GAP_MS apart, more than any file system's clock
 * tick), and a replacement in inode too. An append is one write: during it a
 * reader can see the old content plus a prefix of the appended bytes, which is
 * a state the file really had, and the test accepts it as one.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';

export type Change =
  | { readonly file: string; readonly op: 'truncate'; readonly size: number }
  | { readonly file: string; readonly op: 'append'; readonly seed: number; readonly length: number }
  | { readonly file: string; readonly op: 'replace'; readonly seed: number; readonly length: number };

export interface RacerInit {
  readonly dir: string;
  /** A directory outside `dir` on the same file system, for replacements before their rename. */
  readonly scratch: string;
  readonly files: readonly { readonly name: string; readonly size: number; readonly large: boolean }[];
  readonly seed: number;
  /** Int32 slots: [0] stop when non-zero, [1] changes made, [2] always 0 (to wait on). */
  readonly control: SharedArrayBuffer;
}

/** Two changes of one file are at least this far apart (ms), so every version has its own mtime. */
export const MIN_GAP_MS = 15;

/** Seeded content: the same seed and length give the same bytes, here and in the test. */
export function contentOf(seed: number, length: number): Buffer {
  const key = crypto.createHash('sha256').update(`lifeboat changing files ${seed}`).digest().subarray(0, 16);
  const c = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(length)), c.final()]);
}

/** mulberry32: a small seeded generator in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const KiB = 1024;
const MiB = 1024 * KiB;

function race(init: RacerInit): Change[] {
  const control = new Int32Array(init.control);
  const random = seeded(init.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const size = new Map(init.files.map((f) => [f.name, f.size]));
  const last = new Map<string, number>();
  const log: Change[] = [];
  let seed = init.seed * 100_000;
  while (Atomics.load(control, 0) === 0) {
    // Mostly short gaps, sometimes a quiet spell, so some reads race and some do not.
    Atomics.wait(control, 2, 0, random() < 0.25 ? int(20, 80) : int(0, 4));
    if (Atomics.load(control, 0) !== 0) break;
    const f = init.files[int(0, init.files.length - 1)]!;
    const now = performance.now();
    if (now - (last.get(f.name) ?? -Infinity) < MIN_GAP_MS) continue;
    const file = path.join(init.dir, f.name);
    const current = size.get(f.name)!;
    const cap = f.large ? 28 * MiB : 1200 * KiB;
    const pick = random();
    let change: Change;
    if ((pick < 0.35 && current > 0) || current > cap) {
      change = { file: f.name, op: 'truncate', size: int(Math.floor(current * 0.3), current - 1) };
      fs.truncateSync(file, change.size);
      size.set(f.name, change.size);
    } else if (pick < 0.7) {
      change = { file: f.name, op: 'append', seed: ++seed, length: f.large ? int(1, 3 * MiB) : int(1, 200 * KiB) };
      fs.appendFileSync(file, contentOf(change.seed, change.length));
      size.set(f.name, current + change.length);
    } else {
      change = { file: f.name, op: 'replace', seed: ++seed, length: f.large ? int(9 * MiB, 20 * MiB) : int(0, 900 * KiB) };
      const tmp = path.join(init.scratch, `${f.name}.tmp`);
      fs.writeFileSync(tmp, contentOf(change.seed, change.length));
      fs.renameSync(tmp, file);
      size.set(f.name, change.length);
    }
    last.set(f.name, performance.now());
    log.push(change);
    Atomics.add(control, 1, 1);
  }
  return log;
}

if (!isMainThread && (workerData as { racer?: RacerInit } | undefined)?.racer) {
  parentPort!.postMessage(race((workerData as { racer: RacerInit }).racer));
}
