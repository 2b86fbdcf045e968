/**
 * Random directory trees for round-trip tests: a plain-data spec (so
 * fast-check can print and shrink it), a fast-check arbitrary over specs, and
 * materialize(), which writes a spec to disk with exact modes, mtimes,
 * symlinks, hard links, empty files and directories, and sparse files.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';

const run = promisify(execFile);

const KiB = 1024;

export interface Meta {
  readonly name: string;
  readonly mode: number;
  /** Milliseconds since the epoch. */
  readonly mtimeMs: number;
  /** Applied only when materialize() runs as root with owners: true. */
  readonly uid?: number;
  readonly gid?: number;
}

export type Content =
  | { readonly kind: 'bytes'; readonly size: number; readonly pattern: 'random' | 'repeat' | 'zero'; readonly seed: number }
  /** truncate(size), then a few writes of random bytes: holes everywhere else. */
  | { readonly kind: 'sparse'; readonly size: number; readonly writes: readonly SparseWrite[] };

export interface SparseWrite {
  readonly offset: number;
  readonly length: number;
  readonly seed: number;
}

export interface FileSpec extends Meta {
  readonly kind: 'file';
  readonly content: Content;
}

export interface DirSpec extends Meta {
  readonly kind: 'dir';
  readonly children: readonly NodeSpec[];
}

export interface SymlinkSpec extends Omit<Meta, 'mode'> {
  readonly kind: 'symlink';
  readonly target: string;
}

/** Another name for the `to`-th regular file of the tree (modulo their count), wherever it is. */
export interface HardlinkSpec {
  readonly kind: 'hardlink';
  readonly name: string;
  readonly to: number;
}

export type NodeSpec = FileSpec | DirSpec | SymlinkSpec | HardlinkSpec;

/** Deterministic pseudo-random bytes (AES-CTR keystream keyed by seed), so failures reproduce. */
export function pseudoRandomBytes(n: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  key.write('lifeboat', 8);
  const c = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** Compressible bytes: a short seeded pattern repeated. */
export function repetitiveBytes(n: number, seed: number): Buffer {
  const pattern = pseudoRandomBytes(1 + (seed % 97), seed);
  const out = Buffer.alloc(n);
  for (let o = 0; o < n; o += pattern.length) pattern.copy(out, o);
  return out;
}

export function contentBytes(c: Content): Buffer {
  if (c.kind === 'sparse') {
    const out = Buffer.alloc(c.size);
    for (const w of c.writes) pseudoRandomBytes(w.length, w.seed).copy(out, w.offset);
    return out;
  }
  switch (c.pattern) {
    case 'random':
      return pseudoRandomBytes(c.size, c.seed);
    case 'repeat':
      return repetitiveBytes(c.size, c.seed);
    case 'zero':
      return Buffer.alloc(c.size);
  }
}

export interface TreeArbOptions {
  /** Directory nesting below the root. Default 3. */
  readonly maxDepth?: number;
  /** Entries per directory. Default 5. */
  readonly maxChildren?: number;
  /** Largest regular (non-sparse) file. Default 300 KiB. */
  readonly maxFileSize?: number;
  /** Sizes that must be likely: block sizes under test and their multiples. Default 4 KiB and 64 KiB. */
  readonly blockSizes?: readonly number[];
  /** Largest sparse file. Default 1.5 MiB (holes cost nothing). */
  readonly maxSparseSize?: number;
  /** Full 0o7777 modes and random owners (only meaningful as root). Default: whether running as root. */
  readonly privileged?: boolean;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Letters that exercise sorting and encoding: case, punctuation, dots, spaces, accents, CJK, astral. */
const NAME_CHARS = ['a', 'b', 'Z', '0', '_', '-', '.', ' ', 'é', 'ß', '日', '😀', '#', '~', '\\', ':'];

export const nameArb: fc.Arbitrary<string> = fc
  .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 10 })
  .filter((n) => n !== '.' && n !== '..');

export function treeArb(opts: TreeArbOptions = {}): fc.Arbitrary<DirSpec> {
  const maxDepth = opts.maxDepth ?? 3;
  const maxChildren = opts.maxChildren ?? 5;
  const maxFileSize = opts.maxFileSize ?? 300 * KiB;
  const blockSizes = opts.blockSizes ?? [4 * KiB, 64 * KiB];
  const maxSparse = opts.maxSparseSize ?? 1536 * KiB;
  const privileged = opts.privileged ?? isRoot;

  const mtimeMs = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) }), weight: 6 },
    { arbitrary: fc.integer({ min: Date.UTC(1900, 0, 1), max: -1 }), weight: 1 }, // before 1970
  );
  const fileMode = privileged ? fc.integer({ min: 0, max: 0o7777 }) : fc.integer({ min: 0, max: 0o777 }).map((m) => m | 0o600);
  const dirMode = privileged ? fc.integer({ min: 0, max: 0o7777 }) : fc.integer({ min: 0, max: 0o777 }).map((m) => m | 0o700);
  const owner = privileged ? fc.integer({ min: 0, max: 70_000 }) : fc.constant(undefined);
  const seed = fc.nat();

  const multiples = blockSizes.flatMap((b) => {
    const out = [b - 1, b, b + 1];
    for (let k = 2; k * b <= maxFileSize && k <= 8; k++) out.push(k * b);
    return out.filter((n) => n <= maxFileSize);
  });
  const size = fc.oneof(
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 16 * KiB }), weight: 3 },
    { arbitrary: fc.integer({ min: 0, max: maxFileSize }), weight: 2 },
    { arbitrary: fc.constantFrom(0, 1, ...multiples), weight: 3 },
  );
  const bytes: fc.Arbitrary<Content> = fc.record({
    kind: fc.constant('bytes' as const),
    size,
    pattern: fc.constantFrom('random' as const, 'repeat' as const, 'zero' as const),
    seed,
  });
  const sparse: fc.Arbitrary<Content> = fc
    .record({
      size: fc.integer({ min: 1, max: maxSparse }),
      writes: fc.array(fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), length: fc.integer({ min: 1, max: 8 * KiB }), seed }), {
        maxLength: 4,
      }),
    })
    .map(({ size: n, writes }) => ({
      kind: 'sparse' as const,
      size: n,
      writes: writes.map((w) => {
        const length = Math.min(w.length, n);
        return { offset: Math.floor(w.at * (n - length)), length, seed: w.seed };
      }),
    }));

  const file: fc.Arbitrary<NodeSpec> = fc.record({
    kind: fc.constant('file' as const),
    name: nameArb,
    mode: fileMode,
    mtimeMs,
    uid: owner,
    gid: owner,
    content: fc.oneof({ arbitrary: bytes, weight: 4 }, { arbitrary: sparse, weight: 1 }),
  });
  const symlink: fc.Arbitrary<NodeSpec> = fc.record({
    kind: fc.constant('symlink' as const),
    name: nameArb,
    mtimeMs,
    uid: owner,
    gid: owner,
    target: fc.oneof(
      fc.string({ unit: fc.constantFrom(...NAME_CHARS, '/'), minLength: 1, maxLength: 40 }),
      fc.constantFrom('../escape', '/etc/passwd', '.', '..', 'missing/target'),
    ),
  });
  const hardlink: fc.Arbitrary<NodeSpec> = fc.record({ kind: fc.constant('hardlink' as const), name: nameArb, to: fc.nat(1000) });

  const dirOf = (children: fc.Arbitrary<NodeSpec[]>): fc.Arbitrary<DirSpec> =>
    fc.record({ kind: fc.constant('dir' as const), name: nameArb, mode: dirMode, mtimeMs, uid: owner, gid: owner, children });
  const byName = { selector: (n: NodeSpec) => n.name, depthIdentifier: 'tree' };
  const { node } = fc.letrec<{ node: NodeSpec; dir: DirSpec }>((tie) => ({
    node: fc.oneof(
      { maxDepth, depthIdentifier: 'tree', depthSize: 'medium' },
      { arbitrary: file, weight: 4 },
      { arbitrary: symlink, weight: 1 },
      { arbitrary: hardlink, weight: 1 },
      { arbitrary: tie('dir'), weight: 2 },
    ),
    dir: dirOf(fc.uniqueArray(tie('node'), { ...byName, maxLength: maxChildren, size: 'medium' })),
  }));
  // The root always has a few entries, so even the first, smallest runs test something.
  return dirOf(fc.uniqueArray(node, { ...byName, minLength: Math.min(3, maxChildren), maxLength: maxChildren + 2 }));
}

export interface MaterializeOptions {
  /** chown to the spec's owners (needs root). Default: whether running as root. */
  readonly owners?: boolean;
}

/**
 * Writes the spec's children into `dir` (created if missing) and gives `dir`
 * the root's mode and mtime. Contents first, hard links next, metadata last
 * and bottom-up, so no later step disturbs an mtime already set.
 */
export async function materialize(root: DirSpec, dir: string, opts: MaterializeOptions = {}): Promise<void> {
  const owners = (opts.owners ?? isRoot) && isRoot;
  const files: string[] = [];
  const links: { path: string; to: number }[] = [];
  const metadata: { path: string; spec: FileSpec | DirSpec | SymlinkSpec }[] = [];

  const create = async (d: string, spec: DirSpec) => {
    await fsp.mkdir(d, { recursive: true });
    for (const child of spec.children) {
      const p = path.join(d, child.name);
      switch (child.kind) {
        case 'dir':
          await create(p, child);
          break;
        case 'file':
          await writeContent(p, child.content);
          files.push(p);
          metadata.push({ path: p, spec: child });
          break;
        case 'symlink':
          await fsp.symlink(child.target, p);
          metadata.push({ path: p, spec: child });
          break;
        case 'hardlink':
          links.push({ path: p, to: child.to });
          break;
      }
    }
    metadata.push({ path: d, spec }); // after its children: post-order
  };
  await create(dir, root);

  for (const l of links) {
    if (files.length === 0) await fsp.writeFile(l.path, 'no file to link to');
    else await fsp.link(files[l.to % files.length]!, l.path);
  }

  for (const { path: p, spec } of metadata) {
    // Owner before mode: chown clears set-id bits.
    if (owners && spec.uid !== undefined && spec.gid !== undefined) await fsp.lchown(p, spec.uid, spec.gid);
    if (spec.kind !== 'symlink') await fsp.chmod(p, spec.mode);
    await setMtime(p, spec.mtimeMs);
  }
}

/**
 * Sets atime and mtime without following a symlink. Node's utimes silently
 * turns a negative time into "now", so times before 1970 go through touch(1).
 */
export async function setMtime(p: string, ms: number): Promise<void> {
  if (ms >= 0) {
    await fsp.lutimes(p, ms / 1000, ms / 1000);
    return;
  }
  // touch reads "@-S.F" as -(S.F).
  const abs = BigInt(-ms) * 1_000_000n;
  await run('touch', ['-h', '-d', `@-${abs / 1_000_000_000n}.${String(abs % 1_000_000_000n).padStart(9, '0')}`, p]);
}

async function writeContent(p: string, c: Content): Promise<void> {
  if (c.kind === 'bytes') {
    await fsp.writeFile(p, contentBytes(c));
    return;
  }
  const fh = await fsp.open(p, 'w');
  try {
    await fh.truncate(c.size);
    for (const w of c.writes) await fh.write(pseudoRandomBytes(w.length, w.seed), 0, w.length, w.offset);
  } finally {
    await fh.close();
  }
}

/** Regular files of a spec (hard links excluded), for sizing a run. */
export function specBytes(root: DirSpec): number {
  let n = 0;
  for (const c of root.children) {
    if (c.kind === 'file') n += c.content.size;
    else if (c.kind === 'dir') n += specBytes(c);
  }
  return n;
}
