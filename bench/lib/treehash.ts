// Per-file SHA-256 manifest of a tree, to check a restore and to warm the page cache.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';

export interface FileEntry {
  readonly size: number;
  readonly sha256: string;
}
export type Manifest = Map<string, FileEntry>;

const BUF = Buffer.alloc(8 << 20);

function hashFile(file: string): FileEntry {
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, BUF, 0, BUF.length, null);
      if (n === 0) break;
      h.update(BUF.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  return { size, sha256: h.digest('hex') };
}

/** Regular files only, keyed by path relative to root ('/'-separated), in sorted walk order. */
export function hashTree(root: string): Manifest {
  const out: Manifest = new Map();
  const walk = (rel: string): void => {
    const entries = readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.set(r, hashFile(join(root, r)));
    }
  };
  walk('');
  return out;
}

export function manifestBytes(m: Manifest): number {
  let n = 0;
  for (const e of m.values()) n += e.size;
  return n;
}

/** Human-readable differences (at most `limit`); empty when equal. */
export function diffManifests(expected: Manifest, actual: Manifest, limit = 10): string[] {
  const diffs: string[] = [];
  for (const [p, e] of expected) {
    const a = actual.get(p);
    if (!a) diffs.push(`missing ${p}`);
    else if (a.size !== e.size || a.sha256 !== e.sha256) diffs.push(`differs ${p}`);
    if (diffs.length >= limit) return diffs;
  }
  for (const p of actual.keys()) {
    if (!expected.has(p)) diffs.push(`extra ${p}`);
    if (diffs.length >= limit) break;
  }
  return diffs;
}
