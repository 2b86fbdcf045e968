// Repository benchmark: Lifeboat vs restic vs borg on the same tree, in one run.
// Steps: full backup, no-change backup, 1% in-place change backup, restore of the latest
// snapshot. Each step runs the tools in a rotating order, each under GNU time (wall, peak RSS).
//
//   node bench/repo-bench.ts [--size-mib 1024] [--seed S] [--tools lifeboat,restic,borg]
//                            [--work bench/work] [--borg-compression C] [--lifeboat CMD] [--keep]
// Prints Markdown tables and writes bench/results/repo-latest.json. Always exits 0 once it has
// printed the report (a report, not a test).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureTree } from './gen-tree.ts';
import { dirBytes } from './lib/dirsize.ts';
import { errorLine, evaluateTargets, renderReport, STEPS, type StepName, type StepRecord, type StepTable } from './lib/report.ts';
import { ensureOk, type TimedResult } from './lib/timed.ts';
import { diffManifests, hashTree, manifestBytes, type Manifest } from './lib/treehash.ts';
import { makeTools, TOOL_NAMES, type Tool, type ToolName } from './lib/tools.ts';
import { mutateTree, type MutationReport } from './mutate.ts';

const BENCH_DIR = dirname(new URL(import.meta.url).pathname);
const PROJECT_DIR = dirname(BENCH_DIR);

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);
const sync = (): void => void spawnSync('sync');

function parseOptions() {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '1024' },
      seed: { type: 'string', default: 'lifeboat-bench' },
      tools: { type: 'string', default: TOOL_NAMES.join(',') },
      work: { type: 'string', default: join(BENCH_DIR, 'work') },
      'borg-compression': { type: 'string' },
      lifeboat: { type: 'string', default: process.env['LIFEBOAT_BIN'] ?? join(PROJECT_DIR, 'bin', 'lifeboat') },
      keep: { type: 'boolean', default: false },
    },
  });
  const tools = values.tools.split(',').map((t) => t.trim()) as ToolName[];
  for (const t of tools) if (!TOOL_NAMES.includes(t)) throw new Error(`unknown tool ${t}`);
  const sizeMib = Number(values['size-mib']);
  if (!(sizeMib > 0)) throw new Error('--size-mib must be a positive number');
  return {
    sizeMib,
    seed: values.seed,
    tools,
    work: resolve(values.work),
    borgCompression: values['borg-compression'],
    lifeboatCmd: values.lifeboat.split(/\s+/).filter(Boolean),
    keep: values.keep,
  };
}

function record(r: TimedResult, extra: Partial<StepRecord> = {}): StepRecord {
  const failed = r.code !== 0;
  const error = failed ? (r.stderr || r.stdout).trim().split('\n').slice(-20).join('\n') : undefined;
  return {
    ok: !failed,
    ...(error === undefined ? {} : { error }),
    wallS: r.wallS,
    maxRssKiB: r.maxRssKiB,
    userS: r.userS,
    sysS: r.sysS,
    ...extra,
  };
}

/** Lifeboat prints one JSON object; tolerate log lines around it. */
function parseJsonOutput(stdout: string): Record<string, unknown> | undefined {
  const text = stdout.trim();
  for (const candidate of [text, text.slice(text.lastIndexOf('\n{') + 1)]) {
    try {
      const v: unknown = JSON.parse(candidate);
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      /* try the next candidate */
    }
  }
  return undefined;
}

/** Where inside `target` a tool put the restored tree (restic and borg keep the absolute path). */
function restoredRoot(target: string, source: string): string | undefined {
  const candidates = [join(target, source), join(target, basename(source)), target];
  return candidates.find((c) => existsSync(join(c, 'db', 'data.db')));
}

function backupStep(tool: Tool, step: StepName, tree: string): StepRecord {
  sync();
  const before = dirBytes(tool.repo);
  const r = tool.backup(step, tree);
  sync();
  const grownBytes = dirBytes(tool.repo) - before;
  const reported = tool.name === 'lifeboat' && r.code === 0 ? parseJsonOutput(r.stdout) : undefined;
  return record(r, { grownBytes, ...(reported ? { reported } : {}) });
}

function restoreStep(tool: Tool, work: string, tree: string, source: Manifest, keep: boolean): StepRecord {
  const target = join(work, 'restore', tool.name);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  sync();
  const r = tool.restore(target);
  if (r.code !== 0) return record(r);
  const root = restoredRoot(target, tree);
  const diffs = root ? diffManifests(source, hashTree(root)) : [`no restored tree found under ${target}`];
  if (!keep) rmSync(target, { recursive: true, force: true });
  return record(r, { verified: diffs.length === 0, verifyDiffs: diffs });
}

/** Lifeboat's `--json snapshots` after the three backups (expects 3 entries with id and time). */
function listSnapshots(tools: readonly Tool[]): unknown[] | undefined {
  const lb = tools.find((t) => t.name === 'lifeboat');
  if (!lb?.snapshots) return undefined;
  const r = lb.snapshots();
  let list: unknown;
  try {
    list = JSON.parse(r.stdout);
  } catch {
    list = undefined;
  }
  if (r.code !== 0 || !Array.isArray(list)) {
    log(`lifeboat snapshots: unexpected result (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    return undefined;
  }
  const wellFormed = list.every((x) => x && typeof x === 'object' && 'id' in x && 'time' in x);
  log(`lifeboat snapshots: ${list.length} listed${wellFormed ? '' : ' (entries lack id/time!)'}`);
  return list;
}

/** Rotate the tool order per step, so no tool always runs first (or right after another). */
const rotated = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

function main(): void {
  const opts = parseOptions();
  const tree = join(opts.work, 'tree');
  const password = 'lifeboat-bench-password';
  mkdirSync(opts.work, { recursive: true });

  const all = makeTools({ workDir: opts.work, password, lifeboatCmd: opts.lifeboatCmd, borgCompression: opts.borgCompression }, opts.tools);
  const versions: Partial<Record<ToolName, string>> = {};
  const missing: ToolName[] = [];
  const tools: Tool[] = [];
  for (const t of all) {
    const v = t.version();
    if (v === undefined) {
      missing.push(t.name);
      log(`${t.name}: not available, skipped`);
    } else {
      versions[t.name] = v;
      tools.push(t);
      log(`${t.name}: ${v}`);
    }
  }
  const names = tools.map((t) => t.name);

  const t0 = performance.now();
  const { layout, reused } = ensureTree(tree, { sizeMib: opts.sizeMib, seed: opts.seed });
  log(`${reused ? 'reused' : 'generated'} tree ${tree}: ${layout.fileCount} files, ${layout.totalBytes} bytes (${((performance.now() - t0) / 1000).toFixed(1)}s)`);

  // Fresh repositories and caches every run.
  for (const d of ['repos', 'cache', 'restore']) rmSync(join(opts.work, d), { recursive: true, force: true });
  mkdirSync(join(opts.work, 'repos'), { recursive: true });
  const initFailed = new Map<ToolName, string>();
  for (const t of tools) {
    try {
      ensureOk(t.init(), `${t.name} init`);
    } catch (err) {
      log(String(err));
      initFailed.set(t.name, errorLine(String(err)));
    }
  }
  const active = tools.filter((t) => !initFailed.has(t.name));

  // Warm-up: read the whole tree once so every tool starts from a warm page cache.
  sync();
  let source = hashTree(tree);
  log(`warm-up read: ${source.size} files, ${manifestBytes(source)} bytes`);

  const steps: StepTable = { full: {}, nochange: {}, incremental: {}, restore: {} };
  let mutation: MutationReport | undefined;
  STEPS.forEach((step, k) => {
    if (step === 'incremental') {
      mutation = mutateTree(tree, { sizeMib: opts.sizeMib, seed: opts.seed });
      log(`mutated: ${mutation.changedBytes} bytes truly changed (${mutation.changedPercent.toFixed(2)}%)`);
      source = hashTree(tree);
    }
    for (const t of rotated(active, k)) {
      log(`${step}: ${t.name}…`);
      const rec = step === 'restore' ? restoreStep(t, opts.work, tree, source, opts.keep) : backupStep(t, step, tree);
      steps[step][t.name] = rec;
      log(`${step}: ${t.name} ${rec.ok ? `${rec.wallS}s, ${Math.round(rec.maxRssKiB / 1024)} MiB` : `FAILED: ${errorLine(rec.error ?? '')}`}`);
      if (rec.verifyDiffs?.length) log(`${step}: ${t.name} restore differs: ${rec.verifyDiffs.join('; ')}`);
    }
  });
  const snapshotList = listSnapshots(active);
  for (const [t, error] of initFailed) {
    const failed: StepRecord = { ok: false, error: `init failed: ${error}`, wallS: NaN, maxRssKiB: NaN, userS: NaN, sysS: NaN };
    for (const s of STEPS) steps[s][t] = failed;
  }

  const changedBytes = mutation?.changedBytes ?? NaN;
  const targets = evaluateTargets(steps, changedBytes);
  const report = renderReport(names, steps, changedBytes, targets);
  const cpu = cpus();
  const header =
    `## Repository benchmark — ${layout.fileCount} files, ${(layout.totalBytes / 2 ** 20).toFixed(0)} MiB ` +
    `(--size-mib ${opts.sizeMib}), ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM\n\n` +
    [...names.map((n) => `- ${n}: ${versions[n]}`), ...missing.map((n) => `- ${n}: NOT AVAILABLE (skipped)`)].join('\n') +
    (names.includes('borg') ? `\n- borg compression: ${opts.borgCompression ?? 'default (lz4)'}` : '') +
    '\n';
  console.log(`${header}\n${report}`);

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, 'repo-latest.json');
  writeFileSync(
    out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        host: { cpus: cpu.length, model: cpu[0]?.model, memBytes: totalmem() },
        options: { sizeMib: opts.sizeMib, seed: opts.seed, borgCompression: opts.borgCompression ?? null },
        versions,
        tree: { path: tree, files: layout.fileCount, bytes: layout.totalBytes, dirs: layout.dirs.length },
        mutation,
        steps,
        lifeboatSnapshots: snapshotList ?? null,
        targets,
      },
      null,
      2,
    ),
  );
  log(`wrote ${out}`);
}

try {
  main();
} catch (err) {
  console.error(err);
  console.log('benchmark aborted before completion (see error above)');
}
process.exit(0);
