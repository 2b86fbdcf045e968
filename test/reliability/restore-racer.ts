/**
 * The hostile process for restore-race.test.ts, run as a child process so it
 * truly runs beside the restore: while the restore writes into the target, it
 * keeps replacing the target's directories and files with symlinks to a
 * directory outside (or to a file in it), plants symlinks where files are
 * about to be created, swaps sibling directories' names back and forth, and
 * puts things back, over and over.
 *
 * It never follows a symlink of its own making: it only acts on paths none of
 * whose ancestors it has swapped out, and the restore makes no symlink that
 * points outside, so every rename and symlink of its own lands in the target.
 *
 * Arguments: one JSON object (Config). Prints "ready" once started and, when
 * the stop file appears (or after maxMs), one JSON line of counts, then exits.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface RacerConfig {
  readonly target: string;
  readonly outside: string;
  /** A file inside `outside`, for symlinks that stand in for files. */
  readonly outsideFile: string;
  /** Relative paths of the tree's directories and regular files, in any order. */
  readonly dirs: readonly string[];
  readonly files: readonly string[];
  readonly stopFile: string;
  readonly maxMs: number;
  readonly seed: number;
}

export interface RacerCounts {
  swaps: number;
  planted: number;
  shuffles: number;
  restored: number;
  loops: number;
}

const SUFFIX = '.lbrace';
/** Swaps kept in place at once; the oldest is put back when a new one would exceed this. */
const ACTIVE = 16;

function main(): void {
  const cfg = JSON.parse(process.argv[2]!) as RacerConfig;
  let state = cfg.seed >>> 0 || 1;
  const random = (n: number) => {
    // xorshift32: reproducible choices for a given seed (the timing is not).
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const counts: RacerCounts = { swaps: 0, planted: 0, shuffles: 0, restored: 0, loops: 0 };
  /** Relative path → what to undo: a swap (renamed aside) or a plant (a symlink where nothing was). */
  const active = new Map<string, 'swap' | 'plant'>();
  const order: string[] = [];
  const full = (rel: string) => path.join(cfg.target, rel);
  /** True when `rel`, an ancestor or a descendant of it is swapped out: acting on it could go through a symlink of ours. */
  const touchesActive = (rel: string) => {
    for (const a of active.keys()) if (a === rel || a.startsWith(rel + path.sep) || rel.startsWith(a + path.sep)) return true;
    return false;
  };
  const attempt = (fn: () => void) => {
    try {
      fn();
      return true;
    } catch {
      return false;
    }
  };
  const undo = (rel: string) => {
    const kind = active.get(rel);
    active.delete(rel);
    const p = full(rel);
    attempt(() => {
      if (fs.lstatSync(p).isSymbolicLink()) fs.unlinkSync(p);
    });
    if (kind === 'swap') attempt(() => fs.renameSync(p + SUFFIX, p));
    counts.restored++;
  };
  const remember = (rel: string, kind: 'swap' | 'plant') => {
    active.set(rel, kind);
    order.push(rel);
    while (active.size > ACTIVE) {
      const oldest = order.shift()!;
      if (active.has(oldest)) undo(oldest);
    }
  };
  const link = (isDir: boolean) => (isDir || random(2) === 0 ? cfg.outside : cfg.outsideFile);

  const started = Date.now();
  process.stdout.write('ready\n');
  for (;;) {
    counts.loops++;
    if ((counts.loops & 63) === 0 && (fs.existsSync(cfg.stopFile) || Date.now() - started > cfg.maxMs)) break;
    const pickDir = random(4) !== 0;
    const list = pickDir ? cfg.dirs : cfg.files;
    if (list.length === 0) continue;
    const rel = list[random(list.length)]!;
    if (touchesActive(rel)) {
      if (active.has(rel) && random(3) === 0) undo(rel);
      continue;
    }
    const p = full(rel);
    let st: fs.Stats | undefined;
    attempt(() => (st = fs.lstatSync(p)));
    if (st === undefined) {
      // Not created yet: plant a symlink where the restore is about to create a file or directory
      // (never in the target's root: the restore would refuse a target that is not empty).
      // Rarely at a directory's name: that costs the subtree, and the racer wants the restore to go on.
      if (rel.includes(path.sep) && random(pickDir ? 64 : 4) === 0 && attempt(() => fs.symlinkSync(link(pickDir), p))) {
        counts.planted++;
        remember(rel, 'plant');
      }
      continue;
    }
    if (st.isSymbolicLink()) continue;
    const action = random(8);
    if (action === 0 && pickDir) {
      // Swap two sibling directories' names and back, through a temporary name.
      const sibling = cfg.dirs[random(cfg.dirs.length)]!;
      if (sibling === rel || path.dirname(sibling) !== path.dirname(rel) || touchesActive(sibling)) continue;
      const q = full(sibling);
      const tmp = p + '.lbtmp';
      if (attempt(() => fs.renameSync(p, tmp))) {
        attempt(() => fs.renameSync(q, p));
        attempt(() => fs.renameSync(tmp, q));
        counts.shuffles++;
      }
      continue;
    }
    // Swap: the real entry moves aside, a symlink to the outside takes its name.
    if (!attempt(() => fs.renameSync(p, p + SUFFIX))) continue;
    attempt(() => fs.symlinkSync(link(st!.isDirectory()), p));
    counts.swaps++;
    remember(rel, 'swap');
  }
  process.stdout.write(`${JSON.stringify(counts)}\n`);
}

main();
