/**
 * The crash harness: runs a CLI command as a real child process and kills it
 * with SIGKILL at fault points (src/util/fault.ts), then checks that nothing
 * committed before the kill was lost or damaged and that the command can
 * simply be run again.
 *
 * A scenario is table data: how to set a chain up, what to change before each
 * run, the command to kill, its fault points, and what must be listed after a
 * kill. Each chain has a repository of its own and runs its kills in turn:
 *
 *   setup, prepare, recording run (traced: counts every point's passes)
 *   for each planned kill (point, N drawn from a seeded generator within the recorded count):
 *     prepare; run killed at the Nth pass of the point (the trace proves which kill it was)
 *     verify --read-data clean (unreferenced packs allowed: every stored blob is read back);
 *     every snapshot that must be listed is (lost ones counted); the scenario's snapshots restore
 *     bit-exact (restoreAfterKill)
 *     the next run of the same command completes
 *   prune reclaims every leftover: no unreferenced pack, no .tmp file, pack bytes = indexed bytes;
 *   verify clean; the oldest, newest and one drawn snapshot restore bit-exact.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { expect, type TestContext } from 'vitest';
import { lifeboat, ok, okJson, type RunResult, sql, tempDir } from '../cli/run.ts';
import { diffManifests, type Manifest, manifest } from '../cli/tree.ts';
import { writeSummary } from './report.ts';

/** CRASH_SEED picks other kill indices (and data); the default makes every run the same. */
export const SEED = process.env.CRASH_SEED ?? 'lifeboat-crash-1';

export interface KillPlan {
  readonly point: string;
  readonly kills: number;
  /** The point lies after the snapshot commit: the killed run's snapshot must be listed too. */
  readonly commits?: boolean;
}

export interface Scenario {
  readonly name: string;
  /** Extra config text (the harness sets 1 MiB packs, 4 KiB blocks and one worker, so counts repeat run to run). */
  readonly config?: string;
  /** Chains run side by side, each on its own repository; each lists its kills. */
  readonly chains: readonly (readonly KillPlan[])[];
  /** Makes the chain's starting state (init is done). */
  setup(h: Chain): Promise<void>;
  /** Before every run of the command, killed or not; `round` counts from 0. */
  prepare(h: Chain, round: number): Promise<void>;
  /** The command to kill (the harness adds --repo, --config and --json). */
  command(h: Chain): string[];
  /** Registers what a completed run committed. */
  completed(h: Chain, r: RunResult): Promise<void>;
  /** The registered snapshots that must be listed after a kill (default: all). */
  mustList?(h: Chain): readonly Committed[];
  /**
   * Which snapshots restore bit-exact after each kill (verify --read-data has
   * read back every stored blob of all of them): 'new', those not restored
   * since their commit (the scenario makes the newest hold everything the
   * killed command writes or moves); 'none' when the command is a restore
   * that checks its own result (calling h.checked).
   */
  readonly restoreAfterKill: 'new' | 'none';
}

export interface Committed {
  readonly id: string;
  /** What a restore must reproduce (file contents as digests). */
  readonly expected: Manifest;
  /** Restored bit-exact after a kill that came after its commit. */
  restoredAfterKill: boolean;
}

/** Figures for the report, per scenario. */
interface Tally {
  faults_injected: number;
  crashes_survived: number;
  snapshots_checked: number;
  snapshots_lost: number;
  failures: string[];
}
const tallies = new Map<string, Tally>();
function tallyOf(scenario: Scenario): Tally {
  let t = tallies.get(scenario.name);
  if (!t) tallies.set(scenario.name, (t = { faults_injected: 0, crashes_survived: 0, snapshots_checked: 0, snapshots_lost: 0, failures: [] }));
  return t;
}

export class Chain {
  readonly scenario: Scenario;
  readonly index: number;
  readonly dir: string;
  readonly repo: string;
  readonly src: string;
  readonly config: string;
  readonly random: () => number;
  /** Snapshots a completed (or committing) run made, oldest first. */
  committed: Committed[] = [];
  #runs = 0;

  private constructor(scenario: Scenario, index: number, dir: string) {
    this.scenario = scenario;
    this.index = index;
    this.dir = dir;
    this.repo = path.join(dir, 'repo');
    this.src = path.join(dir, 'src');
    this.config = path.join(dir, 'lifeboat.toml');
    this.random = seeded(`${SEED}/${scenario.name}/${index}`);
  }

  static async create(scenario: Scenario, index: number): Promise<Chain> {
    const h = new Chain(scenario, index, await tempDir(`lifeboat-crash-${scenario.name}-`));
    await fsp.mkdir(h.src);
    await fsp.writeFile(
      h.config,
      `[repository]\npack_size = "1MiB"\n\n[backup]\nblock_size = "4KiB"\nworkers = 1\n${scenario.config ?? ''}`,
    );
    await ok(h.args(['init']));
    return h;
  }

  /** A label for messages, enough to reproduce: scenario, chain, seed. */
  get label(): string {
    return `${this.scenario.name}#${this.index} (CRASH_SEED=${SEED})`;
  }

  args(command: readonly string[]): string[] {
    return [...command, '--repo', this.repo, '--config', this.config];
  }

  /** A fresh path under the chain's directory. */
  fresh(name: string): string {
    return path.join(this.dir, `${name}-${++this.#runs}`);
  }

  /** Seeded pseudo-random bytes: the same for the same chain and name. */
  bytes(n: number, name: string): Buffer {
    const key = crypto.createHash('sha256').update(`${SEED}/${this.scenario.name}/${this.index}/${name}`).digest();
    return crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
  }

  /** Runs the command to completion with the trace on; returns the passes of each point. */
  async record(): Promise<Map<string, number>> {
    const trace = this.fresh('trace');
    const r = await ok(this.args([...this.scenario.command(this), '--json']), { env: { LIFEBOAT_FAULT_TRACE: trace } });
    await this.scenario.completed(this, r);
    const counts = new Map<string, number>();
    for (const line of (await fsp.readFile(trace, 'utf8').catch(() => '')).split('\n')) {
      if (line) counts.set(line, (counts.get(line) ?? 0) + 1);
    }
    return counts;
  }

  /** Runs the command killed at the nth pass of point; requires that this kill, and no other, ended it. */
  async kill(point: string, n: number): Promise<void> {
    const trace = this.fresh('trace');
    const args = this.args([...this.scenario.command(this), '--json']);
    const r = await lifeboat(args, { env: { LIFEBOAT_FAULT: `${point}:${n}`, LIFEBOAT_FAULT_TRACE: trace } });
    const passes = (await fsp.readFile(trace, 'utf8').catch(() => '')).split('\n');
    const what = `${this.label}: lifeboat ${args.join(' ')} with LIFEBOAT_FAULT=${point}:${n}`;
    expect(r.signal, `${what}: exit ${r.code}, passes of ${point}: ${passes.filter((l) => l === point).length}\n${r.stderr}`).toBe('SIGKILL');
    expect(passes, `${what}: killed, but not by its fault point`).toContain(`kill ${point} ${n}`);
    expect(r.stdout, what).toBe('');
    tallyOf(this.scenario).faults_injected++;
  }

  /** Runs the command to completion (the run after a kill). */
  async rerun(): Promise<void> {
    const r = await ok(this.args([...this.scenario.command(this), '--json']));
    await this.scenario.completed(this, r);
  }

  /** Snapshot ids as the index lists them. */
  async listed(): Promise<string[]> {
    const rows = (await sql(path.join(this.repo, 'index.db'), 'SELECT id FROM snapshots ORDER BY time, id')) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /**
   * After a kill at `plan`: the repository verifies clean (every blob read
   * back and authenticated), every snapshot that must be listed is, nothing
   * else is (but the killed run's own when the point lies after its commit),
   * and the snapshots the scenario names restore bit-exact.
   */
  async checkAfterKill(plan: KillPlan, where: string): Promise<void> {
    const must = this.scenario.mustList?.(this) ?? this.committed;
    this.committed = [...must];
    const [report, listed] = await Promise.all([this.verify(), this.listed()]);
    const lost = must.filter((c) => !listed.includes(c.id));
    tallyOf(this.scenario).snapshots_lost += lost.length;
    expect(lost.map((c) => c.id), `${where}: snapshots lost`).toEqual([]);
    const extra = listed.filter((id) => !must.some((c) => c.id === id));
    expect(extra.length, `${where}: snapshots listed that no completed run made: ${extra.join(', ')}`).toBe(plan.commits ? 1 : 0);
    if (plan.commits) this.committed.push({ id: extra[0]!, expected: await digestManifest(this.src), restoredAfterKill: false });
    expect(report.snapshots, `${where}: verify counted`).toBe(listed.length);
    if (this.scenario.restoreAfterKill === 'none') return;
    await Promise.all(this.committed.filter((c) => !c.restoredAfterKill).map((c) => this.expectRestores(c, where)));
  }

  /** verify --read-data: no problems (unreferenced packs are leftovers, not problems). */
  async verify(): Promise<{ snapshots: number; unreferenced_packs: number }> {
    const report = await okJson(this.args(['verify', '--read-data']));
    expect(report.problems, this.label).toEqual([]);
    expect(report.ok).toBe(true);
    return report;
  }

  async expectRestores(c: Committed, where: string): Promise<void> {
    const target = this.fresh('restored');
    await ok(this.args(['restore', c.id, '--target', target]));
    expect(diffManifests(c.expected, await digestManifest(target)), `${where}: restore of ${c.id.slice(0, 8)}`).toEqual([]);
    this.checked(c);
    await fsp.rm(target, { recursive: true, force: true });
  }

  /** A snapshot was restored and found bit-exact. */
  checked(c: Committed): void {
    c.restoredAfterKill = true;
    tallyOf(this.scenario).snapshots_checked++;
  }

  /**
   * The end of a chain: prune takes back every leftover of the kills (no file
   * the index does not name, no .tmp, the packs' bytes exactly the indexed
   * ones), and the repository verifies clean and restores.
   */
  async finish(): Promise<void> {
    const known = new Set(((await sql(path.join(this.repo, 'index.db'), 'SELECT name FROM packs')) as { name: string }[]).map((r) => r.name));
    const leftovers = (await packFilesOf(this.repo)).filter((f) => !known.has(path.basename(f)));
    const pruned = await okJson(this.args(['prune']));
    expect(pruned.orphans_removed, `${this.label}: prune removed the leftovers ${leftovers.join(', ')}`).toBeGreaterThanOrEqual(leftovers.length);
    const after = await this.verify();
    expect(after.unreferenced_packs, this.label).toBe(0);
    const files = await packFilesOf(this.repo);
    expect(files.filter((f) => f.endsWith('.tmp')), this.label).toEqual([]);
    const indexed = (await sql(path.join(this.repo, 'index.db'), 'SELECT COALESCE(SUM(size), 0) AS n FROM packs')) as { n: number }[];
    const onDisk = (await Promise.all(files.map((f) => fsp.stat(f)))).reduce((n, s) => n + s.size, 0);
    expect(onDisk, `${this.label}: bytes in pack files vs bytes the index names`).toBe(indexed[0]!.n);
    expect(await this.listed()).toEqual(expect.arrayContaining(this.committed.map((c) => c.id)));
    // Each was restored after a kill already and verify has read every blob again: restore the
    // oldest, the newest and one drawn between them, which is where a prune mistake would show.
    const sample = new Set([this.committed[0]!, this.committed.at(-1)!, this.committed[Math.floor(this.random() * this.committed.length)]!]);
    for (const c of sample) await this.expectRestores(c, `${this.label} after the final prune`);
  }
}

/** Runs one chain: setup, recording, then every planned kill with its checks, then the final sweep. */
export async function runChain(scenario: Scenario, index: number): Promise<void> {
  try {
    await chain(scenario, index);
  } catch (err) {
    tallyOf(scenario).failures.push(`chain ${index}: ${(err as Error).message.split('\n')[0]}`);
    throw err;
  }
}

async function chain(scenario: Scenario, index: number): Promise<void> {
  const plans = scenario.chains[index]!;
  const h = await Chain.create(scenario, index);
  await scenario.setup(h);
  let round = 0;
  await scenario.prepare(h, round++);
  const counts = await h.record();
  const kills: { plan: KillPlan; n: number }[] = [];
  for (const plan of plans) {
    const passes = counts.get(plan.point) ?? 0;
    expect(passes, `${h.label}: the recording run never passed ${plan.point}`).toBeGreaterThan(0);
    for (let k = 0; k < plan.kills; k++) kills.push({ plan, n: 1 + Math.floor(h.random() * passes) });
  }
  for (const [i, { plan, n }] of kills.entries()) {
    const where = `${h.label} kill ${i + 1}/${kills.length} at ${plan.point}:${n}`;
    await scenario.prepare(h, round++);
    await h.kill(plan.point, n);
    await h.checkAfterKill(plan, where);
    await h.rerun();
    tallyOf(scenario).crashes_survived++;
  }
  await h.finish();
}

/** A manifest whose file contents are replaced by their SHA-256, so many snapshots' expectations fit in memory. */
export async function digestManifest(root: string): Promise<Manifest> {
  const out: Manifest = new Map();
  for (const [rel, e] of await manifest(root)) {
    out.set(rel, e.data ? { ...e, data: crypto.createHash('sha256').update(e.data).digest() } : e);
  }
  return out;
}

export async function packFilesOf(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(repo, 'packs'), { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  }
  return out.sort();
}

/** Plants what a crashed writer leaves: a complete pack no index row names, and a half-written .tmp. */
export async function plantLeftovers(h: Chain, name: string): Promise<void> {
  const packs = (await packFilesOf(h.repo)).filter((f) => !f.endsWith('.tmp'));
  const source = packs[Math.floor(h.random() * packs.length)]!;
  const data = await fsp.readFile(source);
  const a = crypto.createHash('sha256').update(`${name}/a`).digest('hex').slice(0, 32);
  const b = crypto.createHash('sha256').update(`${name}/b`).digest('hex').slice(0, 32);
  for (const [file, bytes] of [
    [path.join(h.repo, 'packs', a.slice(0, 2), a), data],
    [path.join(h.repo, 'packs', b.slice(0, 2), `${b}.tmp`), data.subarray(0, Math.ceil(data.length / 2))],
  ] as const) {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, bytes);
  }
}

/** For a test's onTestFailed: the failure's first line, for the report. */
export function noteFailure(into: string[], what: string): (ctx: TestContext) => void {
  return (ctx) => void into.push(`${what}: ${ctx.task.result?.errors?.[0]?.message?.split('\n')[0] ?? 'failed'}`);
}

/** Hands each scenario's figures to the report (report.ts writes them only when it runs the suite). */
export function reportTallies(): void {
  for (const [part, { failures, ...counts }] of tallies) writeSummary({ suite: 'crash', part, counts, failures });
}

/** mulberry32 over a hash of the seed string: small, fast, and the same everywhere. */
export function seeded(seed: string): () => number {
  let a = crypto.createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
