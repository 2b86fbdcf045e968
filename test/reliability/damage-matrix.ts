/**
 * The damage matrix (issue 12): one pristine repository, every kind of damage
 * to its files and to the tables of its index, each followed by every command
 * on a fresh copy, then the checks that must hold whatever the command did:
 *
 *   (a) it succeeded, or failed with one line `lifeboat: <message> [LB_ERR_...]`
 *       on stderr, a documented code (never LB_ERR_INTERNAL, never a stack
 *       trace) and that code's exit status;
 *   (b) no pack file a snapshot still needs was deleted or changed: the packs
 *       the same command keeps on the pristine repository (its reference run)
 *       must all be there, byte for byte, but those the damage itself hit;
 *   (c) after `repair --rebuild-index` every snapshot the reference run keeps
 *       (and a backup's new one) is listed and restores bit-exact, but those
 *       whose data the damage itself destroyed (which may fail, in one line,
 *       and restore bit-exact if they restore at all).
 *
 * Nothing is written outside the repository either: the directory around it
 * is compared before and after.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { parseKeyFile, unwrapKeys, wrapKeys } from '../../src/repo/keys.ts';
import { lifeboat, PASSWORD, ROOT, type RunResult, tempDir } from '../cli/run.ts';
import { diffManifests, type Manifest, randomBytes } from '../cli/tree.ts';
import { digestManifest, packFilesOf } from './crash-harness.ts';

const execFileP = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * bin/lifeboat runs dist/, which every vitest run in this checkout rebuilds
 * (test/global-setup.ts): a command started while another run rewrites it
 * loads half of the old build and half of the new one. Such a run proves
 * nothing about the repository, so it is run again, once dist/ is whole:
 * only when dist/ changed while it ran, or it died linking dist/'s modules.
 */
const DIST = path.join(ROOT, 'dist');
/** The newest modification time in dist/ (a few hundred files: a few milliseconds). */
function distStamp(): number {
  let newest = 0;
  for (const e of fs.readdirSync(DIST, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, fs.statSync(path.join(e.parentPath, e.name), { throwIfNoEntry: false })?.mtimeMs ?? 0);
  }
  return newest;
}
const LINK_ERROR = /^file:\/\/\/\S*\/dist\/\S+:\d+\n[^]*?SyntaxError: The requested module '[^']+' does not provide an export named/;

/** cli(), required to succeed with nothing on stderr (the setup's runs). */
export async function must(args: readonly string[]): Promise<RunResult> {
  const r = await cli(args);
  if (r.code !== 0 || r.stderr !== '') throw new Error(`lifeboat ${args.join(' ')}: exit ${r.code ?? r.signal}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`);
  return r;
}
const mustJson = async <T = any>(args: readonly string[]): Promise<T> => (await must([...args, '--json'])).json<T>();

export async function cli(args: readonly string[], beforeRetry?: () => Promise<void>): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const before = distStamp();
    const r = await lifeboat(args);
    const torn = distStamp() !== before || LINK_ERROR.test(r.stderr);
    if (!torn || r.code === 0 || attempt === 3) return r;
    console.log(`[damage] dist/ was rebuilt under \`lifeboat ${args.join(' ')}\` (exit ${r.code ?? r.signal}): run again`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await beforeRetry?.();
  }
}

// ---------------------------------------------------------------------------
// The pristine repository and what is true of it
// ---------------------------------------------------------------------------

export interface Snap {
  readonly id: string;
  readonly label: string;
  /** What a restore must reproduce (file contents as digests). */
  readonly expected: Manifest;
}

export interface Reference {
  /** Pristine packs (relative paths) that the command leaves in place, unchanged, on the pristine repository. */
  readonly packs: ReadonlySet<string>;
  /** Snapshots listed after the command on the pristine repository (a backup's new one left out). */
  readonly snapshots: readonly string[];
}

export interface Pristine {
  readonly dir: string;
  readonly repo: string;
  readonly config: string;
  /** Source A (three snapshots of it were taken; the oldest forgotten), unchanged since its newest. */
  readonly srcA: string;
  readonly srcB: string;
  readonly manifestA: Manifest;
  /** Snapshots kept, oldest first: A1, A2, B1. */
  readonly snapshots: readonly Snap[];
  /** The forgotten one (its data partly dead in the packs). */
  readonly forgotten: string;
  /** Pack files, relative to packs/ ('xx/name'), → sha256. */
  readonly packs: ReadonlyMap<string, string>;
  /** The repository id, and another repository's (with its index.db). */
  readonly repoId: string;
  readonly otherId: string;
  readonly otherIndex: string;
  /** A copy of index.db taken after the second snapshot (it does not know the later ones). */
  readonly olderIndex: string;
  /** A copy of index.db taken just before the forget: it knows every kept snapshot, and the forgotten one. */
  readonly beforeForgetIndex: string;
  readonly keyFile: string;
  /** Packs the destroying damages hit, and the snapshots that need each (found by restoring with it gone). */
  readonly targets: { readonly data: string; readonly data2: string; readonly tree: string };
  readonly needs: ReadonlyMap<string, ReadonlySet<string>>;
  /** Per command: what it does to the pristine repository. */
  readonly reference: ReadonlyMap<string, Reference>;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

export async function hashPacks(repo: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of await packFilesOf(repo)) {
    if (f.endsWith('.tmp')) continue;
    out.set(path.relative(path.join(repo, 'packs'), f), sha256(await fsp.readFile(f)));
  }
  return out;
}

export async function copyRepo(from: string, to: string): Promise<void> {
  await execFileP('cp', ['-a', from, to]);
}

async function makeSourceA(src: string): Promise<void> {
  await fsp.mkdir(path.join(src, 'sub', 'deep'), { recursive: true });
  await fsp.mkdir(path.join(src, 'empty'));
  // over 64 blocks of 16 KiB: a file that needs list blobs
  await fsp.writeFile(path.join(src, 'big.bin'), randomBytes(Math.round(1.5 * MiB), 'damage-big'));
  await fsp.writeFile(path.join(src, 'sub', 'a.bin'), randomBytes(300 * KiB, 'damage-a'));
  await fsp.writeFile(path.join(src, 'sub', 'deep', 'notes.txt'), 'notes of a damaged repository\n');
  await fsp.writeFile(path.join(src, 'repetitive.txt'), Buffer.alloc(200 * KiB, 'lifeboat '));
  await fsp.writeFile(path.join(src, 'empty.txt'), '');
  await fsp.symlink('sub/deep/notes.txt', path.join(src, 'link'));
}

/** Changes a source in place: 60 KiB in the middle of big.bin, and one file more. */
export async function changeSource(src: string, seed: string): Promise<void> {
  const fd = await fsp.open(path.join(src, 'big.bin'), 'r+');
  try {
    await fd.write(randomBytes(60 * KiB, `${seed}-patch`), 0, 60 * KiB, 700 * KiB);
  } finally {
    await fd.close();
  }
  await fsp.writeFile(path.join(src, `added-${seed}.bin`), randomBytes(80 * KiB, `${seed}-added`));
}

const listIds = async (repo: string, config: string): Promise<string[]> =>
  (await mustJson<{ id: string }[]>(['snapshots', '--repo', repo, '--config', config])).map((s) => s.id);

/**
 * Builds the pristine repository: A0 (source A with a junk file), A1 (without
 * it), A2 (source A changed), B1 (source B); then A0 is forgotten without a
 * prune, so some packs hold dead data. 1 MiB packs and 16 KiB blocks, so
 * there are many packs and big.bin needs list blobs.
 */
export async function buildPristine(commands: readonly Command[]): Promise<Pristine> {
  const dir = await tempDir('lifeboat-damage-pristine-');
  const repo = path.join(dir, 'repo');
  const config = path.join(dir, 'lifeboat.toml');
  const srcA = path.join(dir, 'srcA');
  const srcB = path.join(dir, 'srcB');
  await fsp.writeFile(config, `[agent]\nstate_dir = ${JSON.stringify(path.join(dir, 'state'))}\n[repository]\npack_size = "1MiB"\n[backup]\nblock_size = "16KiB"\nworkers = 2\n`);
  const run = (args: string[]) => [...args, '--repo', repo, '--config', config];
  await must(run(['init']));
  await makeSourceA(srcA);
  await fsp.writeFile(path.join(srcA, 'junk.bin'), randomBytes(700 * KiB, 'damage-junk'));
  const forgotten = (await mustJson(run(['backup', '--path', srcA]))).snapshot as string;
  await fsp.rm(path.join(srcA, 'junk.bin'));
  const a1 = (await mustJson(run(['backup', '--path', srcA]))).snapshot as string;
  const expectedA1 = await digestManifest(srcA);
  const olderIndex = path.join(dir, 'older-index.db');
  await snapshotIndex(path.join(repo, 'index.db'), olderIndex);
  await changeSource(srcA, 'a2');
  const a2 = (await mustJson(run(['backup', '--path', srcA]))).snapshot as string;
  const manifestA = await digestManifest(srcA);
  await fsp.mkdir(path.join(srcB, 'etc'), { recursive: true });
  await fsp.writeFile(path.join(srcB, 'b.bin'), randomBytes(600 * KiB, 'damage-b'));
  await fsp.writeFile(path.join(srcB, 'etc', 'b.conf'), 'source = B\n');
  const b1 = (await mustJson(run(['backup', '--path', srcB]))).snapshot as string;
  const expectedB1 = await digestManifest(srcB);
  const beforeForgetIndex = path.join(dir, 'before-forget-index.db');
  await snapshotIndex(path.join(repo, 'index.db'), beforeForgetIndex);
  const forget = await mustJson(run(['forget', '--keep-last', '2']));
  const removed = (forget.removed as (string | { id: string })[]).map((r) => (typeof r === 'string' ? r : r.id));
  if (removed.length !== 1 || removed[0] !== forgotten) throw new Error(`forget --keep-last 2 removed ${JSON.stringify(forget.removed)}, expected only ${forgotten}`);

  const snapshots: Snap[] = [
    { id: a1, label: 'A1', expected: expectedA1 },
    { id: a2, label: 'A2', expected: manifestA },
    { id: b1, label: 'B1', expected: expectedB1 },
  ];
  const listed = await listIds(repo, config);
  if (listed.sort().join() !== snapshots.map((s) => s.id).sort().join()) throw new Error(`pristine lists ${listed.join(', ')}`);

  // another repository, for its index.db and its id
  const other = path.join(dir, 'other');
  await must(['init', '--repo', other]);
  const otherSrc = path.join(dir, 'other-src');
  await fsp.mkdir(otherSrc);
  await fsp.writeFile(path.join(otherSrc, 'x.txt'), 'another repository\n');
  await must(['backup', '--repo', other, '--path', otherSrc]);
  const otherIndex = path.join(dir, 'other-index.db');
  await snapshotIndex(path.join(other, 'index.db'), otherIndex);

  const keys = await fsp.readdir(path.join(repo, 'keys'));
  if (keys.length !== 1) throw new Error(`expected one key file, found ${keys.join(', ')}`);
  await cheapenKeyFile(path.join(repo, 'keys', keys[0]!));
  const packs = await hashPacks(repo);
  const repoId = JSON.parse(await fsp.readFile(path.join(repo, 'config.json'), 'utf8')).id as string;
  const otherId = JSON.parse(await fsp.readFile(path.join(other, 'config.json'), 'utf8')).id as string;

  const base = { dir, repo, config, srcA, srcB, manifestA, snapshots, forgotten, packs, repoId, otherId, otherIndex, olderIndex, beforeForgetIndex, keyFile: keys[0]! };
  const { targets, needs } = await pickTargets(base);

  const reference = new Map<string, Reference>();
  for (const c of commands) reference.set(c.name, await referenceRun({ ...base, targets, needs, reference }, c));
  return { ...base, targets, needs, reference };
}

/**
 * Rewraps the key file with scrypt at N=2^10 instead of 2^15: the format
 * keeps the parameters per file for this, and the matrix runs a thousand
 * commands, each of which would spend ~100 ms deriving the key.
 */
async function cheapenKeyFile(file: string): Promise<void> {
  const parsed = parseKeyFile(await fsp.readFile(file, 'utf8'), path.dirname(path.dirname(file)));
  const keys = unwrapKeys(parsed, PASSWORD, file);
  await fsp.writeFile(file, JSON.stringify(wrapKeys(keys, PASSWORD, { N: 1 << 10, r: 8, p: 1 }), null, 2), { mode: 0o600 });
}

/** A consistent copy of an index (its WAL folded in). */
async function snapshotIndex(from: string, to: string): Promise<void> {
  const db = new Database(from, { fileMustExist: true, readonly: true });
  try {
    await db.backup(to);
  } finally {
    db.close();
  }
}

/**
 * The packs the destroying damages hit, chosen so that they matter whatever
 * the workers put where: the two biggest data packs that A2 needs (its
 * big.bin is read through lists, and a backup of source A deduplicates
 * against them), and the tree pack of the newest backup. With the snapshots
 * that need each.
 */
async function pickTargets(p: Omit<Pristine, 'targets' | 'needs' | 'reference'>): Promise<Pick<Pristine, 'targets' | 'needs'>> {
  const db = new Database(path.join(p.repo, 'index.db'), { readonly: true, fileMustExist: true });
  let data: string[];
  let tree: string | undefined;
  try {
    const rows = db
      .prepare('SELECT p.name AS name, sum(b.type <> 0) AS meta, sum(b.length) AS bytes FROM packs p JOIN blobs b ON b.pack = p.id GROUP BY p.id ORDER BY bytes DESC')
      .all() as { name: string; meta: number; bytes: number }[];
    data = rows.filter((r) => r.meta === 0).map((r) => `${r.name.slice(0, 2)}/${r.name}`);
    const name = db.prepare('SELECT p.name FROM snapshots s JOIN blobs b ON b.id = s.tree JOIN packs p ON p.id = b.pack WHERE s.id = ?').pluck().get(p.snapshots.at(-1)!.id) as string | undefined;
    tree = name && `${name.slice(0, 2)}/${name}`;
  } finally {
    db.close();
  }
  const needs = new Map<string, Set<string>>();
  const ofA2: string[] = [];
  for (const pack of data) {
    const n = await snapshotsNeeding(p, pack);
    needs.set(pack, n);
    if (n.has(a2(p as Pristine))) ofA2.push(pack);
    if (ofA2.length === 2) break;
  }
  if (ofA2.length < 2 || !tree) throw new Error(`the pristine repository has too few packs to damage: data packs ${data.join(', ')}, of A2 ${ofA2.join(', ')}, tree pack ${tree}`);
  needs.set(tree, await snapshotsNeeding(p, tree));
  return { targets: { data: ofA2[0]!, data2: ofA2[1]!, tree }, needs };
}

/** The kept snapshots that need a pack: those that no longer restore once it is gone (the pristine index otherwise). */
async function snapshotsNeeding(p: Omit<Pristine, 'targets' | 'needs' | 'reference'>, pack: string): Promise<Set<string>> {
  if (p.packs.get(pack) === undefined) throw new Error(`no pack ${pack}`);
  const dir = await tempDir('lifeboat-damage-needs-');
  const repo = path.join(dir, 'repo');
  await copyRepo(p.repo, repo);
  await fsp.rm(path.join(repo, 'packs', pack));
  const out = new Set<string>();
  for (const s of p.snapshots) {
    const target = path.join(dir, `t-${s.label}`);
    const r = await cli(['restore', s.id, '--repo', repo, '--config', p.config, '--target', target], () => fsp.rm(target, { recursive: true, force: true }));
    if (r.code !== 0) out.add(s.id);
  }
  await fsp.rm(dir, { recursive: true, force: true });
  return out;
}

/** Runs a command on a pristine copy: it must succeed; what it keeps is the reference. */
async function referenceRun(p: Pristine, c: Command): Promise<Reference> {
  const dir = await tempDir('lifeboat-damage-ref-');
  const repo = path.join(dir, 'repo');
  await copyRepo(p.repo, repo);
  const cell: Cell = { p, dir, repo, kind: NO_DAMAGE, command: c, destroyedPacks: new Set(), destroyedSnapshots: new Set(), newSnapshots: [] };
  await c.prepare?.(cell);
  const args = [...c.args(cell), '--repo', repo, '--config', p.config, '--json'];
  const r = await must(args);
  const problems = await c.check(cell, r);
  if (problems.length > 0) throw new Error(`reference run of ${c.name}: ${problems.join('; ')}`);
  const now = await hashPacks(repo);
  const packs = new Set([...p.packs].filter(([rel, h]) => now.get(rel) === h).map(([rel]) => rel));
  const listed = await listIds(repo, p.config);
  await fsp.rm(dir, { recursive: true, force: true });
  return { packs, snapshots: listed.filter((id) => !cell.newSnapshots.some((n) => n.id === id)) };
}

// ---------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------

export interface DamageKind {
  readonly name: string;
  /** What part of the repository it hits (for the report). */
  readonly part: string;
  /** Destroys data: the pack it hits (the snapshots needing it may be lost). */
  readonly destroys?: (p: Pristine) => string;
  /** Leaves config.json or the key unusable: put back before the check (c). */
  readonly unusable?: boolean;
  /** Harmless leftovers or damage the open heals: every command must succeed. */
  readonly benign?: boolean;
  /** Damage no repair can mend (no data is lost, but verify must report it and repair may fail with LB_ERR_REPAIR_INCOMPLETE). */
  readonly unmendable?: boolean;
  /** Snapshot ids the damage adds (records of snapshots whose data is not here): they may be listed, and need not restore. */
  readonly plants?: (p: Pristine) => readonly string[];
  apply(repo: string, p: Pristine): Promise<void>;
}

const NO_DAMAGE: DamageKind = { name: 'none', part: 'none', apply: async () => {} };

/** Edits index.db with SQL, as damage would: foreign keys off, the WAL folded back in on close. */
function withIndex(repo: string, edit: (db: Database.Database) => void): Promise<void> {
  const db = new Database(path.join(repo, 'index.db'), { fileMustExist: true });
  try {
    db.pragma('foreign_keys = OFF');
    edit(db);
  } finally {
    db.close();
  }
  return Promise.resolve();
}

const sqlDamage = (name: string, part: string, ...statements: string[]): DamageKind => ({
  name,
  part,
  ...(BENIGN_SQL.has(name) ? { benign: true } : {}),
  apply: (repo) =>
    withIndex(repo, (db) => {
      for (const s of statements) db.exec(s);
    }),
});

async function overwrite(file: string, at: number, bytes: Buffer): Promise<void> {
  const fd = await fsp.open(file, 'r+');
  try {
    await fd.write(bytes, 0, bytes.length, at);
  } finally {
    await fd.close();
  }
}

/** Rows whose loss the open heals (snapshot rows come back from the records) or that hold nothing here (refs, locks). */
const BENIGN_SQL = new Set(['snapshots: every row deleted', 'snapshots: one row deleted', 'refs: every row deleted', 'locks: every row deleted']);

const indexFile = (repo: string) => path.join(repo, 'index.db');
const recordOf = (repo: string, id: string) => path.join(repo, 'snapshots', id);
const a2 = (p: Pristine) => p.snapshots[1]!.id;
const PLANTED_SNAPSHOT = sha256(Buffer.from('a snapshot of nothing'));

/** Every kind of damage tried. Each applies to a fresh copy of the pristine repository. */
export const DAMAGE_KINDS: readonly DamageKind[] = [
  // index.db as a file
  { name: 'index.db emptied', part: 'index file', apply: (repo) => fsp.truncate(indexFile(repo), 0) },
  { name: 'index.db truncated to half', part: 'index file', apply: async (repo) => fsp.truncate(indexFile(repo), Math.floor((await fsp.stat(indexFile(repo))).size / 2)) },
  { name: 'index.db truncated to 100 bytes', part: 'index file', apply: (repo) => fsp.truncate(indexFile(repo), 100) },
  {
    name: 'index.db garbage in the middle',
    part: 'index file',
    apply: async (repo) => {
      const size = (await fsp.stat(indexFile(repo))).size;
      await overwrite(indexFile(repo), Math.floor(size / 2) - 2048, randomBytes(4096, 'index-garbage'));
    },
  },
  { name: 'index.db garbage header', part: 'index file', apply: (repo) => overwrite(indexFile(repo), 0, randomBytes(100, 'index-header')) },
  { name: "index.db of another repository", part: 'index file', apply: (repo, p) => fsp.copyFile(p.otherIndex, indexFile(repo)) },
  { name: 'index.db an older copy of itself', part: 'index file', apply: (repo, p) => fsp.copyFile(p.olderIndex, indexFile(repo)) },
  { name: 'index.db an older copy of itself, from before a forget', part: 'index file', apply: (repo, p) => fsp.copyFile(p.beforeForgetIndex, indexFile(repo)) },
  { name: 'index.db deleted', part: 'index file', apply: (repo) => fsp.rm(indexFile(repo)) },
  { name: 'index.db-wal of garbage', part: 'index file', benign: true, apply: (repo) => fsp.writeFile(`${indexFile(repo)}-wal`, randomBytes(64 * KiB, 'wal-garbage')) },
  { name: 'index.db-shm of garbage', part: 'index file', benign: true, apply: (repo) => fsp.writeFile(`${indexFile(repo)}-shm`, randomBytes(32 * KiB, 'shm-garbage')) },
  {
    name: 'index.db-wal and -shm of garbage, with a WAL header',
    part: 'index file',
    benign: true,
    apply: async (repo) => {
      // a WAL magic and page size, then garbage frames: SQLite must reject the checksums
      const header = Buffer.alloc(32);
      header.writeUInt32BE(0x377f0682, 0);
      header.writeUInt32BE(3007000, 4);
      header.writeUInt32BE(4096, 8);
      await fsp.writeFile(`${indexFile(repo)}-wal`, Buffer.concat([header, randomBytes(3 * 4120, 'wal-frames')]));
      await fsp.writeFile(`${indexFile(repo)}-shm`, randomBytes(32 * KiB, 'shm-garbage-2'));
    },
  },
  sqlDamage('index schema: table locks dropped', 'index schema', 'DROP TABLE locks'),
  sqlDamage('index schema: index blobs_by_pack dropped, user_version from the future', 'index schema', 'DROP INDEX blobs_by_pack', 'PRAGMA user_version = 99'),

  // rows deleted
  sqlDamage('blobs: every row deleted', 'blobs rows', 'DELETE FROM blobs'),
  sqlDamage('blobs: a third of the rows deleted', 'blobs rows', 'DELETE FROM blobs WHERE id IN (SELECT id FROM blobs ORDER BY id LIMIT (SELECT count(*) / 3 FROM blobs))'),
  sqlDamage('blobs: tree and list rows deleted', 'blobs rows', 'DELETE FROM blobs WHERE type <> 0'),
  sqlDamage('packs: every row deleted', 'packs rows', 'DELETE FROM packs'),
  {
    name: 'packs: the row of a pack A2 needs deleted',
    part: 'packs rows',
    apply: (repo, p) => withIndex(repo, (db) => db.prepare('DELETE FROM packs WHERE name = ?').run(path.basename(p.targets.data))),
  },
  sqlDamage('snapshots: every row deleted', 'snapshots rows', 'DELETE FROM snapshots'),
  sqlDamage('snapshots: one row deleted', 'snapshots rows', 'DELETE FROM snapshots WHERE id = (SELECT id FROM snapshots ORDER BY time LIMIT 1)'),
  sqlDamage('refs: every row deleted', 'refs rows', 'DELETE FROM refs'),
  sqlDamage('locks: every row deleted', 'locks rows', 'DELETE FROM locks'),
  sqlDamage('meta: the repository row deleted', 'meta rows', 'DELETE FROM meta'),

  // values of the wrong kind
  sqlDamage('blobs: text offsets', 'blobs values', "UPDATE blobs SET offset = 'x' || offset WHERE type = 0"),
  sqlDamage('blobs: empty and blob values in integer columns', 'blobs values', "UPDATE blobs SET length = '' WHERE type = 0", "UPDATE blobs SET raw_length = X'00' WHERE type <> 0"),
  sqlDamage("blobs: 'NULL' text for a pack", 'blobs values', "UPDATE blobs SET pack = 'NULL' WHERE type = 1"),
  sqlDamage('blobs: negative offsets', 'blobs values', 'UPDATE blobs SET offset = -offset - 1'),
  sqlDamage('blobs: huge stored lengths', 'blobs values', 'UPDATE blobs SET length = 1e15 WHERE type = 0'),
  sqlDamage('blobs: huge raw lengths', 'blobs values', 'UPDATE blobs SET raw_length = 9007199254740991 WHERE type = 0'),
  sqlDamage('blobs: real lengths', 'blobs values', 'UPDATE blobs SET length = length + 0.5 WHERE type <> 0'),
  sqlDamage('blobs: ids of the wrong length', 'blobs values', 'UPDATE blobs SET id = substr(id, 1, 16) WHERE type = 1'),
  sqlDamage('blobs: types out of range', 'blobs values', 'UPDATE blobs SET type = 7 WHERE type = 2'),
  sqlDamage('blobs: rows naming a pack row that does not exist', 'blobs values', 'UPDATE blobs SET pack = pack + 1000 WHERE type = 0'),
  sqlDamage('packs: names that are not hex', 'packs values', "UPDATE packs SET name = '../../escaped-pack-' || id"),
  sqlDamage('packs: sizes of the wrong kind', 'packs values', "UPDATE packs SET size = 'big' WHERE id % 2 = 0", 'UPDATE packs SET size = -1 WHERE id % 2 = 1'),
  sqlDamage('snapshots: tags not JSON', 'snapshots values', "UPDATE snapshots SET tags = '{not json'"),
  sqlDamage('snapshots: tree ids of the wrong length', 'snapshots values', 'UPDATE snapshots SET tree = substr(tree, 1, 7)'),
  sqlDamage('snapshots: stats, splitter and time of the wrong kind', 'snapshots values', "UPDATE snapshots SET stats = 'x', splitter = '[]', time = 'yesterday'"),
  sqlDamage('snapshots: parent and meta of the wrong kind', 'snapshots values', "UPDATE snapshots SET parent = 'not a parent', meta = 42"),
  sqlDamage('snapshots: an id that walks out of snapshots/', 'snapshots values', "UPDATE snapshots SET id = '../../escaped-record' WHERE id = (SELECT id FROM snapshots ORDER BY time DESC LIMIT 1)"),
  sqlDamage(
    'locks: garbage lock rows',
    'locks values',
    "INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES ('x', 7, '', -5, '', 'soon')",
    `INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (X'00ff', 'yes', 'host\nname', 1e12, 'then', 1e300)`,
  ),
  {
    name: 'locks: a stale exclusive lock of a gone process',
    part: 'locks values',
    benign: true,
    apply: (repo) =>
      withIndex(repo, (db) =>
        db.prepare('INSERT INTO locks (id, exclusive, host, pid, created, refreshed) VALUES (?, 1, ?, ?, ?, ?)').run('0123456789abcdef', os.hostname(), 4_000_000, new Date().toISOString(), Date.now()),
      ),
  },
  { name: 'meta: another repository id', part: 'meta values', apply: (repo, p) => withIndex(repo, (db) => db.prepare("UPDATE meta SET value = ? WHERE key = 'repository'").run(p.otherId)) },
  sqlDamage('meta: an empty repository id', 'meta values', "UPDATE meta SET value = '' WHERE key = 'repository'"),

  // snapshot records
  { name: 'snapshot record deleted', part: 'records', benign: true, apply: (repo, p) => fsp.rm(recordOf(repo, a2(p))) },
  { name: 'snapshot record truncated', part: 'records', apply: async (repo, p) => fsp.truncate(recordOf(repo, a2(p)), Math.floor((await fsp.stat(recordOf(repo, a2(p)))).size / 2)) },
  { name: 'snapshot record of garbage', part: 'records', apply: (repo, p) => fsp.writeFile(recordOf(repo, a2(p)), randomBytes(300, 'record-garbage')) },
  { name: 'snapshot record emptied', part: 'records', apply: (repo, p) => fsp.truncate(recordOf(repo, a2(p)), 0) },
  {
    name: 'snapshot record renamed to a new id',
    part: 'records',
    apply: (repo, p) => fsp.rename(recordOf(repo, a2(p)), recordOf(repo, sha256(Buffer.from('a new id')))),
  },
  { name: 'snapshot record renamed over another', part: 'records', apply: (repo, p) => fsp.rename(recordOf(repo, a2(p)), recordOf(repo, p.snapshots[0]!.id)) },
  {
    name: 'snapshot record of a snapshot whose data is not here',
    part: 'records',
    unmendable: true,
    plants: () => [PLANTED_SNAPSHOT],
    apply: async (repo, p) => {
      const r = JSON.parse(await fsp.readFile(recordOf(repo, a2(p)), 'utf8'));
      await fsp.writeFile(recordOf(repo, PLANTED_SNAPSHOT), JSON.stringify({ ...r, id: PLANTED_SNAPSHOT, tree: sha256(Buffer.from('no such tree')) }));
    },
  },
  { name: 'snapshots/ deleted', part: 'records', benign: true, apply: (repo) => fsp.rm(path.join(repo, 'snapshots'), { recursive: true }) },

  // config and keys
  { name: 'config.json emptied', part: 'config', unusable: true, apply: (repo) => fsp.truncate(path.join(repo, 'config.json'), 0) },
  { name: 'config.json another id', part: 'config', apply: async (repo, p) => fsp.writeFile(path.join(repo, 'config.json'), (await fsp.readFile(path.join(repo, 'config.json'), 'utf8')).replace(p.repoId, p.otherId)) },
  { name: 'key file emptied', part: 'keys', unusable: true, apply: (repo, p) => fsp.truncate(path.join(repo, 'keys', p.keyFile), 0) },
  { name: 'key file of garbage', part: 'keys', unusable: true, apply: (repo, p) => fsp.writeFile(path.join(repo, 'keys', p.keyFile), randomBytes(366, 'key-garbage')) },
  { name: 'keys/ deleted', part: 'keys', unusable: true, apply: (repo) => fsp.rm(path.join(repo, 'keys'), { recursive: true }) },

  // packs
  { name: 'pack deleted', part: 'packs', destroys: (p) => p.targets.data, apply: (repo, p) => fsp.rm(path.join(repo, 'packs', p.targets.data)) },
  {
    name: 'pack truncated',
    part: 'packs',
    destroys: (p) => p.targets.data2,
    apply: async (repo, p) => fsp.truncate(path.join(repo, 'packs', p.targets.data2), Math.floor((await fsp.stat(path.join(repo, 'packs', p.targets.data2))).size / 2)),
  },
  {
    name: "pack trailer flipped (the newest tree pack's)",
    part: 'packs',
    destroys: (p) => p.targets.tree,
    apply: async (repo, p) => {
      const file = path.join(repo, 'packs', p.targets.tree);
      const size = (await fsp.stat(file)).size;
      const b = await fsp.readFile(file);
      await overwrite(file, size - 30, Buffer.from(b.subarray(size - 30, size - 22).map((x) => x ^ 0xff)));
    },
  },
  {
    name: 'a .tmp pack leftover',
    part: 'packs',
    benign: true,
    apply: async (repo, p) => {
      const name = sha256(Buffer.from('leftover')).slice(0, 32);
      const data = await fsp.readFile(path.join(repo, 'packs', p.targets.data));
      await fsp.mkdir(path.join(repo, 'packs', name.slice(0, 2)), { recursive: true });
      await fsp.writeFile(path.join(repo, 'packs', name.slice(0, 2), `${name}.tmp`), data.subarray(0, data.length >> 1));
    },
  },
  {
    name: 'foreign files in packs/ (names no pack has)',
    part: 'packs',
    benign: true,
    apply: async (repo) => {
      await fsp.writeFile(path.join(repo, 'packs', 'README.txt'), 'someone left a note here\n');
      await fsp.mkdir(path.join(repo, 'packs', 'zz'), { recursive: true });
      await fsp.writeFile(path.join(repo, 'packs', 'zz', 'notes'), 'and another\n');
    },
  },
  {
    name: "a file of garbage with a pack's name",
    part: 'packs',
    unmendable: true,
    apply: async (repo) => {
      const hexName = sha256(Buffer.from('not a pack')).slice(0, 32);
      await fsp.mkdir(path.join(repo, 'packs', hexName.slice(0, 2)), { recursive: true });
      await fsp.writeFile(path.join(repo, 'packs', hexName.slice(0, 2), hexName), randomBytes(5000, 'foreign-pack'));
    },
  },
  {
    name: 'a pack copied under another name',
    part: 'packs',
    benign: true,
    apply: async (repo, p) => {
      await fsp.mkdir(path.join(repo, 'packs', 'ff'), { recursive: true });
      await fsp.copyFile(path.join(repo, 'packs', p.targets.data2), path.join(repo, 'packs', 'ff', 'f'.repeat(32)));
    },
  },
  { name: 'reserve deleted', part: 'reserve', benign: true, apply: (repo) => fsp.rm(path.join(repo, 'reserve'), { force: true }) },
];

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

export interface Cell {
  readonly p: Pristine;
  readonly dir: string;
  readonly repo: string;
  readonly kind: DamageKind;
  readonly command: Command;
  readonly destroyedPacks: ReadonlySet<string>;
  readonly destroyedSnapshots: ReadonlySet<string>;
  /** Snapshots the command made (a backup's), checked in (c) too. */
  readonly newSnapshots: Snap[];
}

export interface Command {
  readonly name: string;
  prepare?(cell: Cell): Promise<void>;
  /** Its arguments, without --repo, --config and --json. */
  args(cell: Cell): string[];
  /** After a success (exit 0): what its output must say. Returns the problems. */
  check(cell: Cell, r: RunResult): Promise<string[]>;
}

const none = async (): Promise<string[]> => [];

const sameSet = (a: readonly string[], b: readonly string[]) => [...a].sort().join() === [...b].sort().join();

async function backupCheck(cell: Cell, r: RunResult, src: string, expected: Manifest): Promise<string[]> {
  const id = r.json<{ snapshot: string }>().snapshot;
  cell.newSnapshots.push({ id, label: `new backup of ${path.basename(src)}`, expected });
  return [];
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'snapshots',
    args: () => ['snapshots'],
    check: async (cell, r) => {
      const listed = r.json<{ id: string }[]>().map((s) => s.id);
      const want = cell.p.snapshots.map((s) => s.id);
      const label = (id: string) => `${id.slice(0, 8)}${id === cell.p.forgotten ? ' (forgotten before the damage)' : ''}`;
      return sameSet(listed, want) ? [] : [`snapshots listed ${listed.map(label).join(', ') || 'nothing'}, but the repository holds ${want.map(label).join(', ')}`];
    },
  },
  {
    name: 'verify',
    args: () => ['verify'],
    check: async (cell) => (cell.kind.destroys ? ['verify passed over a destroyed pack'] : []),
  },
  {
    name: 'verify --read-data',
    args: () => ['verify', '--read-data'],
    check: async (cell) => (cell.kind.destroys ? ['verify --read-data passed over a destroyed pack'] : []),
  },
  {
    name: 'backup (unchanged source)',
    args: (cell) => ['backup', '--path', cell.p.srcA],
    check: (cell, r) => backupCheck(cell, r, cell.p.srcA, cell.p.manifestA),
  },
  {
    name: 'backup (changed source)',
    prepare: async (cell) => {
      await execFileP('cp', ['-a', cell.p.srcA, path.join(cell.dir, 'src-changed')]);
      await changeSource(path.join(cell.dir, 'src-changed'), 'cell');
    },
    args: (cell) => ['backup', '--path', path.join(cell.dir, 'src-changed')],
    check: async (cell, r) => backupCheck(cell, r, path.join(cell.dir, 'src-changed'), await digestManifest(path.join(cell.dir, 'src-changed'))),
  },
  {
    name: 'restore',
    args: (cell) => ['restore', a2(cell.p), '--target', path.join(cell.dir, 'restored')],
    check: async (cell) => {
      const diffs = diffManifests(cell.p.snapshots[1]!.expected, await digestManifest(path.join(cell.dir, 'restored')));
      return diffs.length === 0 ? [] : [`restore succeeded but is not A2: ${diffs.slice(0, 3).join('; ')}`];
    },
  },
  { name: 'forget --keep-last 1 --prune', args: () => ['forget', '--keep-last', '1', '--prune'], check: none },
  { name: 'prune', args: () => ['prune'], check: none },
  { name: 'unlock', args: () => ['unlock'], check: none },
  { name: 'unlock --remove-all', args: () => ['unlock', '--remove-all'], check: none },
  { name: 'repair --rebuild-index', args: () => ['repair', '--rebuild-index'], check: none },
];

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/** The codes the README documents, and the exit status each has (2 for usage and configuration). */
export function documentedCodes(): Map<string, 1 | 2> {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const out = new Map<string, 1 | 2>();
  for (const line of readme.split('\n')) {
    if (!line.startsWith('| `LB_ERR_')) continue;
    const exit = /\(exit 2\)/.test(line) ? 2 : 1;
    for (const m of line.split('|')[1]!.matchAll(/`(LB_ERR_[A-Z0-9_*]+)`/g)) out.set(m[1]!, exit);
  }
  return out;
}
const CODES = documentedCodes();

/** (a): success, or one line `lifeboat: <message> [LB_ERR_...]` with a documented code and its exit status. Returns the problems, and the code. */
export function contract(r: RunResult): { problems: string[]; code: string | null } {
  const problems: string[] = [];
  if (r.signal !== null) return { problems: [`killed by ${r.signal}`], code: null };
  if (/\n\s+at |LB_ERR_INTERNAL/.test(r.stderr)) problems.push(`a stack trace or LB_ERR_INTERNAL on stderr: ${r.stderr.slice(0, 600)}`);
  if (r.code === 0) {
    const bad = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('lifeboat: warning: '));
    if (bad.length > 0) problems.push(`succeeded with more than warnings on stderr: ${bad.slice(0, 3).join(' / ')}`);
    return { problems, code: null };
  }
  const m = /^lifeboat: (.+) \[(LB_ERR_[A-Z0-9_]+)\]\n$/.exec(r.stderr);
  if (!m) {
    problems.push(`exit ${r.code} without exactly one "lifeboat: <message> [LB_ERR_...]" line on stderr: ${JSON.stringify(r.stderr.slice(0, 600))}`);
    return { problems, code: null };
  }
  const code = m[2]!;
  const exit = CODES.get(code) ?? (code.startsWith('LB_ERR_SYSTEM_') ? 1 : undefined);
  if (exit === undefined) problems.push(`undocumented code ${code}: ${m[1]}`);
  else if (r.code !== exit) problems.push(`exit ${r.code} with ${code}, documented as exit ${exit}`);
  if (code === 'LB_ERR_INTERNAL') problems.push(`LB_ERR_INTERNAL: ${m[1]}`);
  return { problems, code };
}

/** (b): the pristine packs the reference run keeps, but those the damage hit, still there byte for byte. */
async function packsLost(cell: Cell): Promise<string[]> {
  const now = await hashPacks(cell.repo);
  const lost: string[] = [];
  for (const rel of cell.p.reference.get(cell.command.name)!.packs) {
    if (cell.destroyedPacks.has(rel)) continue;
    const h = now.get(rel);
    if (h !== cell.p.packs.get(rel)) lost.push(`${rel} ${h === undefined ? 'deleted' : 'changed'}`);
  }
  return lost;
}

export interface CellResult {
  readonly kind: string;
  readonly command: string;
  /** The command's outcome: 'ok' or its code. */
  readonly outcome: string;
  readonly failures: string[];
  readonly packsDeleted: number;
  readonly snapshotsChecked: number;
  readonly snapshotsLost: number;
  /** Entries the command (or the check) created next to the repository. */
  readonly writtenOutside: number;
  readonly ms: number;
}

/** Lists a directory's entries (names only), for what appears beside the repository. */
const entries = async (dir: string) => new Set(await fsp.readdir(dir));

/** Runs one cell: a fresh copy, the damage, the command, and the checks (a), (b), (c). */
export async function runCell(p: Pristine, kind: DamageKind, command: Command): Promise<CellResult> {
  const started = performance.now();
  const dir = await tempDir('lifeboat-damage-');
  const repo = path.join(dir, 'repo');
  await copyRepo(p.repo, repo);
  const destroyed = kind.destroys?.(p);
  const cell: Cell = {
    p,
    dir,
    repo,
    kind,
    command,
    destroyedPacks: new Set(destroyed ? [destroyed] : []),
    destroyedSnapshots: destroyed ? (p.needs.get(destroyed) ?? new Set()) : new Set(),
    newSnapshots: [],
  };
  const failures: string[] = [];
  let checked = 0;
  let lost = 0;
  let deleted = 0;
  let outside = 0;
  let outcome = '';
  try {
    await kind.apply(repo, p);
    await command.prepare?.(cell);
    const before = await entries(dir);
    const allowed = new Set([...before, 'restored']);

    const r = await cli([...command.args(cell), '--repo', repo, '--config', p.config, '--json'], () => fsp.rm(path.join(dir, 'restored'), { recursive: true, force: true }));
    const a = contract(r);
    outcome = r.code === 0 ? 'ok' : (a.code ?? `exit ${r.code}`);
    failures.push(...a.problems.map((x) => `${command.name}: ${x}`));
    if (r.code === 0 && a.problems.length === 0) failures.push(...(await command.check(cell, r)).map((x) => `${command.name}: ${x}`));
    if ((kind.destroys || kind.unmendable) && command.name.startsWith('verify') && r.code === 0) failures.push(`${command.name} exited 0 over damage it cannot mend`);
    // values of the wrong kind in the index are damage that verify must see, as every other command that reads them does
    if (kind.part.endsWith(' values') && !kind.benign && command.name.startsWith('verify') && r.code === 0) failures.push(`${command.name} exited 0 over index values of the wrong kind`);
    if (kind.benign && r.code !== 0) failures.push(`${command.name} failed after harmless damage, which must not stop it: ${r.stderr.trim()}`);

    const lostAfterCommand = await packsLost(cell);
    deleted += lostAfterCommand.length;
    failures.push(...lostAfterCommand.map((x) => `after ${command.name}: intact needed pack ${x}`));
    const created = [...(await entries(dir))].filter((n) => !allowed.has(n));
    outside += created.length;
    if (created.length > 0) failures.push(`after ${command.name}: written beside the repository: ${created.join(', ')}`);

    // (c) the snapshots: rebuild the index, then every one that must restore does, bit-exact
    if (kind.unusable) {
      // put back what the damage made unusable, to see that the command destroyed nothing meanwhile
      await fsp.rm(path.join(repo, 'keys'), { recursive: true, force: true });
      await fsp.cp(path.join(p.repo, 'keys'), path.join(repo, 'keys'), { recursive: true });
      await fsp.copyFile(path.join(p.repo, 'config.json'), path.join(repo, 'config.json'));
    }
    const mayFail = kind.destroys !== undefined || kind.unmendable === true;
    for (let attempt = 1; ; attempt++) {
      const repair = await cli(['repair', '--rebuild-index', '--repo', repo, '--config', p.config, '--json']);
      const ra = contract(repair);
      failures.push(...ra.problems.map((x) => `check's repair --rebuild-index: ${x}`));
      if (repair.code === 0 || (mayFail && ra.code === 'LB_ERR_REPAIR_INCOMPLETE') || attempt === 3) {
        if (repair.code !== 0 && !mayFail) failures.push(`check's repair --rebuild-index failed: ${repair.stderr.trim()}`);
        break;
      }
      // blocked: take the way out an operator would (documented or not), and say it was needed
      failures.push(`check's repair --rebuild-index failed: ${repair.stderr.trim()}`);
      const record = /snapshot record (\S+) is damaged/.exec(repair.stderr)?.[1];
      if (record && record.startsWith(path.join(repo, 'snapshots'))) await fsp.rename(record, `${record}.damaged`);
      await cli(['snapshots', '--repo', repo, '--config', p.config]);
    }
    // what the rebuilt index lists (read here: a CLI call per cell is a tenth of the matrix's time; the restores below open it through the CLI)
    let listed: string[] | undefined;
    try {
      const db = new Database(indexFile(repo), { fileMustExist: true });
      try {
        listed = db.prepare('SELECT id FROM snapshots').pluck().all() as string[];
      } finally {
        db.close();
      }
    } catch (err) {
      failures.push(`the index after repair --rebuild-index does not read: ${(err as Error).message}`);
      lost += p.reference.get(command.name)!.snapshots.filter((id) => !cell.destroyedSnapshots.has(id)).length;
    }
    if (listed) {
      const known = new Map([...p.snapshots, ...cell.newSnapshots].map((s) => [s.id, s]));
      const must = new Set([...p.reference.get(command.name)!.snapshots, ...cell.newSnapshots.map((s) => s.id)]);
      const planted = new Set(kind.plants?.(p) ?? []);
      for (const id of listed) {
        if (id === p.forgotten) failures.push(`after repair: lists ${id.slice(0, 8)}, forgotten before the damage`);
        else if (!known.has(id) && !planted.has(id)) failures.push(`after repair: lists ${id.slice(0, 8)}, which no backup made`);
      }
      for (const id of new Set([...must, ...listed])) {
        const s = known.get(id);
        if (!s) continue;
        const mayBeLost = cell.destroyedSnapshots.has(id) && !cell.newSnapshots.some((n) => n.id === id);
        if (!listed.includes(id)) {
          if (must.has(id) && !mayBeLost) {
            lost++;
            failures.push(`after repair: snapshot ${s.label} (${id.slice(0, 8)}) is not listed`);
          }
          continue;
        }
        const target = path.join(dir, `check-${id.slice(0, 8)}`);
        const restore = () => cli(['restore', id, '--repo', repo, '--config', p.config, '--target', target], () => fsp.rm(target, { recursive: true, force: true }));
        let rr = await restore();
        const rc = contract(rr);
        failures.push(...rc.problems.map((x) => `check's restore of ${s.label}: ${x}`));
        if (rr.signal !== null) {
          // the checking restore crashed (that is a failure above): whether the snapshot is lost, a second one tells
          await fsp.rm(target, { recursive: true, force: true });
          rr = await restore();
        }
        if (rr.code === 0) {
          const diffs = diffManifests(s.expected, await digestManifest(target));
          if (diffs.length === 0) checked++;
          else {
            lost++;
            failures.push(`after repair: snapshot ${s.label} (${id.slice(0, 8)}) restores wrong: ${diffs.slice(0, 3).join('; ')}`);
          }
        } else if (!mayBeLost) {
          lost++;
          failures.push(`after repair: snapshot ${s.label} (${id.slice(0, 8)}) does not restore: ${rr.stderr.trim()}`);
        }
        await fsp.rm(target, { recursive: true, force: true });
      }
    }
    const lostAfterCheck = (await packsLost(cell)).filter((x) => !lostAfterCommand.includes(x));
    deleted += lostAfterCheck.length;
    failures.push(...lostAfterCheck.map((x) => `after the check's repair: intact needed pack ${x}`));
  } catch (err) {
    failures.push(`the cell itself failed: ${(err as Error).stack ?? String(err)}`);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  return { kind: kind.name, command: command.name, outcome, failures, packsDeleted: deleted, snapshotsChecked: checked, snapshotsLost: lost, writtenOutside: outside, ms: performance.now() - started };
}

/** A limit of `n` tasks at once, started in the order they were asked for. */
export function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
