// Deterministic benchmark tree: one database-like file, many medium and small files in nested dirs.
// Full size (--size-mib 1024): db/data.db 512 MiB, 2,000 x 200 KiB, 10,000 x 10 KiB, ~100 dirs
// (12,001 files, ~1000 MiB). Half of the bytes are incompressible, half compressible text records.
// Smaller --size-mib scales the db size and the file counts, keeping file sizes.
//
//   node bench/gen-tree.ts [--root DIR] [--size-mib N] [--seed S] [--force]
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { contentFor, textBytes, type Kind } from './lib/content.ts';
import { RandomStream, Sfc32 } from './lib/prng.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const LAYOUT_VERSION = 1;

export interface TreeFile {
  readonly path: string; // relative to the tree root
  readonly size: number;
  readonly kind: Kind;
}

export interface TreeLayout {
  readonly sizeMib: number;
  readonly dbPath: string;
  readonly dbBytes: number;
  /** The db alternates random and text extents of this size (even extents random). */
  readonly extentBytes: number;
  readonly dirs: readonly string[];
  readonly medium: readonly TreeFile[];
  readonly small: readonly TreeFile[];
  readonly totalBytes: number;
  readonly fileCount: number;
}

export interface TreeOptions {
  readonly sizeMib: number;
  readonly seed: string;
}

export const MEDIUM_BYTES = 200 * KiB;
export const SMALL_BYTES = 10 * KiB;

export function dbExtentKind(extent: number): Kind {
  return extent % 2 === 0 ? 'random' : 'text';
}

export function treeLayout(sizeMib: number): TreeLayout {
  const f = sizeMib / 1024;
  const dbBytes = Math.max(1, Math.round(512 * f)) * MiB;
  const leafCount = Math.max(2, Math.round(100 * f));
  const groups = Math.ceil(Math.sqrt(leafCount));
  const dirs: string[] = [];
  for (let i = 0; i < leafCount; i++) {
    dirs.push(`files/g${String(i % groups).padStart(2, '0')}/d${String(i).padStart(3, '0')}`);
  }
  const files = (count: number, size: number, stem: string): TreeFile[] =>
    Array.from({ length: count }, (_, i) => {
      const kind: Kind = i % 2 === 0 ? 'random' : 'text';
      const name = `${stem}-${String(i).padStart(5, '0')}.${kind === 'random' ? 'bin' : 'log'}`;
      return { path: `${dirs[i % leafCount]}/${name}`, size, kind };
    });
  const medium = files(Math.max(2, Math.round(2000 * f)), MEDIUM_BYTES, 'blob');
  const small = files(Math.max(2, Math.round(10000 * f)), SMALL_BYTES, 'rec');
  const totalBytes = dbBytes + medium.length * MEDIUM_BYTES + small.length * SMALL_BYTES;
  return {
    sizeMib,
    dbPath: 'db/data.db',
    dbBytes,
    extentBytes: MiB,
    dirs,
    medium,
    small,
    totalBytes,
    fileCount: 1 + medium.length + small.length,
  };
}

/** Content of db extent `e` (deterministic). */
export function dbExtent(seed: string, e: number, bytes: number): Buffer {
  return dbExtentKind(e) === 'random'
    ? new RandomStream(seed, `db:${e}`).bytes(bytes)
    : textBytes(new Sfc32(seed, `db:${e}`), bytes);
}

function writeDb(root: string, layout: TreeLayout, seed: string): void {
  const file = join(root, layout.dbPath);
  mkdirSync(dirname(file), { recursive: true });
  const fd = openSync(file, 'w');
  try {
    const batch: Buffer[] = [];
    let batched = 0;
    const flush = (): void => {
      if (batched > 0) writeSync(fd, Buffer.concat(batch, batched));
      batch.length = 0;
      batched = 0;
    };
    for (let e = 0, off = 0; off < layout.dbBytes; e++, off += layout.extentBytes) {
      const n = Math.min(layout.extentBytes, layout.dbBytes - off);
      batch.push(dbExtent(seed, e, n));
      batched += n;
      if (batched >= 16 * MiB) flush();
    }
    flush();
  } finally {
    closeSync(fd);
  }
}

// --- state file next to the tree, so an unmodified tree can be reused across runs ---

interface TreeState {
  readonly layoutVersion: number;
  readonly sizeMib: number;
  readonly seed: string;
  readonly mutated: boolean;
}

const stateFile = (root: string): string => `${resolve(root)}.state.json`;

export function readTreeState(root: string): TreeState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(root), 'utf8')) as TreeState;
  } catch {
    return undefined;
  }
}

export function markMutated(root: string): void {
  const s = readTreeState(root);
  if (s) writeFileSync(stateFile(root), JSON.stringify({ ...s, mutated: true }));
}

export function generateTree(root: string, opts: TreeOptions): TreeLayout {
  const layout = treeLayout(opts.sizeMib);
  rmSync(stateFile(root), { force: true });
  rmSync(root, { recursive: true, force: true });
  for (const d of layout.dirs) mkdirSync(join(root, d), { recursive: true });
  writeDb(root, layout, opts.seed);
  for (const f of [...layout.medium, ...layout.small]) {
    writeFileSync(join(root, f.path), contentFor(f.kind, opts.seed, f.path, f.size));
  }
  const state: TreeState = { layoutVersion: LAYOUT_VERSION, sizeMib: opts.sizeMib, seed: opts.seed, mutated: false };
  writeFileSync(stateFile(root), JSON.stringify(state));
  return layout;
}

/** Generates the tree unless a pristine one with the same parameters is already there. */
export function ensureTree(root: string, opts: TreeOptions): { layout: TreeLayout; reused: boolean } {
  const s = readTreeState(root);
  const pristine =
    s !== undefined &&
    existsSync(root) &&
    s.layoutVersion === LAYOUT_VERSION &&
    s.sizeMib === opts.sizeMib &&
    s.seed === opts.seed &&
    !s.mutated;
  if (pristine) return { layout: treeLayout(opts.sizeMib), reused: true };
  return { layout: generateTree(root, opts), reused: false };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      root: { type: 'string', default: 'bench/work/tree' },
      'size-mib': { type: 'string', default: '1024' },
      seed: { type: 'string', default: 'lifeboat-bench' },
      force: { type: 'boolean', default: false },
    },
  });
  const opts = { sizeMib: Number(values['size-mib']), seed: values.seed };
  if (!(opts.sizeMib > 0)) throw new Error('--size-mib must be a positive number');
  const t0 = performance.now();
  const { layout, reused } = values.force
    ? { layout: generateTree(values.root, opts), reused: false }
    : ensureTree(values.root, opts);
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `${reused ? 'reused' : 'generated'} ${resolve(values.root)}: ${layout.fileCount} files, ` +
      `${layout.dirs.length} leaf dirs, ${(layout.totalBytes / MiB).toFixed(1)} MiB in ${s}s`,
  );
}

if (import.meta.main) main();
