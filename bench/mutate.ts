// The "1% in-place change": 64 KiB page overwrites at 64 KiB-aligned offsets in db/data.db
// (~0.6% of the nominal tree size), plus rewritten and new medium/small files (~0.4%),
// ~1% in all (10.7 MB for the 1 GiB tree). Reports the bytes truly changed:
// overwritten bytes + rewritten file sizes + new file sizes.
//
//   node bench/mutate.ts [--root DIR] [--size-mib N] [--seed S] [--round R]
// (--size-mib and --seed default to the values the tree was generated with.)
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { contentFor, type Kind } from './lib/content.ts';
import { Sfc32 } from './lib/prng.ts';
import { dbExtentKind, markMutated, MEDIUM_BYTES, readTreeState, SMALL_BYTES, treeLayout, type TreeFile } from './gen-tree.ts';

const PAGE = 64 * 1024;

export interface MutationOptions {
  readonly sizeMib: number;
  readonly seed: string;
  /** Distinguishes repeated mutations of the same tree. */
  readonly round?: number;
}

export interface MutationReport {
  readonly pages: number;
  readonly pageBytes: number;
  readonly rewrittenFiles: number;
  readonly rewrittenBytes: number;
  readonly newFiles: number;
  readonly newBytes: number;
  /** Sum of the above byte counts: what a perfect incremental backup has to store. */
  readonly changedBytes: number;
  readonly changedPercent: number;
}

/** `count` distinct indices in [0, n), in random order. */
function distinct(rng: Sfc32, n: number, count: number): number[] {
  const chosen = new Set<number>();
  const k = Math.min(count, n);
  while (chosen.size < k) chosen.add(rng.int(n));
  return [...chosen];
}

export function mutateTree(root: string, opts: MutationOptions): MutationReport {
  const layout = treeLayout(opts.sizeMib);
  const round = opts.round ?? 1;
  const tag = `mutate:r${round}`;
  const rng = new Sfc32(opts.seed, tag);
  const nominal = opts.sizeMib * 1024 * 1024;
  const count = (fraction: number, unit: number): number => Math.max(1, Math.round((fraction * nominal) / unit));

  // 1. Database page writes, in place.
  const pageIdx = distinct(rng, Math.floor(layout.dbBytes / PAGE), count(0.006, PAGE));
  const fd = openSync(join(root, layout.dbPath), 'r+');
  try {
    for (const p of pageIdx) {
      const kind = dbExtentKind(Math.floor((p * PAGE) / layout.extentBytes));
      writeSync(fd, contentFor(kind, opts.seed, `${tag}:page:${p}`, PAGE), 0, PAGE, p * PAGE);
    }
  } finally {
    closeSync(fd);
  }

  // 2. Whole-file rewrites (same size, new content) of existing medium and small files.
  const rewrite = (files: readonly TreeFile[], unit: number): number => {
    let bytes = 0;
    for (const i of distinct(rng, files.length, count(0.001, unit))) {
      const f = files[i]!;
      writeFileSync(join(root, f.path), contentFor(f.kind, opts.seed, `${tag}:${f.path}`, f.size));
      bytes += f.size;
    }
    return bytes;
  };
  const rwMedium = rewrite(layout.medium, MEDIUM_BYTES);
  const rwSmall = rewrite(layout.small, SMALL_BYTES);

  // 3. New files: medium ones in a new directory, small ones spread over existing directories.
  let newFiles = 0;
  let newBytes = 0;
  const create = (path: string, size: number, kind: Kind): void => {
    writeFileSync(join(root, path), contentFor(kind, opts.seed, `${tag}:${path}`, size));
    newFiles++;
    newBytes += size;
  };
  const incoming = `files/incoming-r${round}`;
  mkdirSync(join(root, incoming), { recursive: true });
  for (let i = 0, n = count(0.001, MEDIUM_BYTES); i < n; i++) {
    create(`${incoming}/upload-${String(i).padStart(4, '0')}.bin`, MEDIUM_BYTES, i % 2 === 0 ? 'random' : 'text');
  }
  for (let i = 0, n = count(0.001, SMALL_BYTES); i < n; i++) {
    const dir = layout.dirs[rng.int(layout.dirs.length)]!;
    create(`${dir}/new-r${round}-${String(i).padStart(4, '0')}.log`, SMALL_BYTES, i % 2 === 0 ? 'random' : 'text');
  }
  markMutated(root);

  const pageBytes = pageIdx.length * PAGE;
  const rewrittenBytes = rwMedium + rwSmall;
  const changedBytes = pageBytes + rewrittenBytes + newBytes;
  return {
    pages: pageIdx.length,
    pageBytes,
    rewrittenFiles: rwMedium / MEDIUM_BYTES + rwSmall / SMALL_BYTES,
    rewrittenBytes,
    newFiles,
    newBytes,
    changedBytes,
    changedPercent: (100 * changedBytes) / layout.totalBytes,
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', default: 'bench/work/tree' },
      'size-mib': { type: 'string' },
      seed: { type: 'string' },
      round: { type: 'string', default: '1' },
    },
  });
  const state = readTreeState(values.root);
  const sizeMib = Number(values['size-mib'] ?? state?.sizeMib ?? 1024);
  const seed = values.seed ?? state?.seed ?? 'lifeboat-bench';
  const report = mutateTree(values.root, { sizeMib, seed, round: Number(values.round) });
  console.log(JSON.stringify({ root: resolve(values.root), ...report }, null, 2));
}

if (import.meta.main) main();
