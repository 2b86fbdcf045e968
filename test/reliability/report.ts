/**
 * The reliability report: runs the suite under test/reliability (crash
 * harness, faults, fuzzing with more inputs than CI, secrets), gathers what
 * each part counted, and prints one table:
 *
 *   node_modules/node/bin/node test/reliability/report.ts [--fuzz-runs 2000] [--results DIR] [--no-run]
 *
 * Exits 0 when every test passed, no suite reported a failure, no snapshot
 * was lost, no intact pack was deleted and no file was written outside a
 * target; 1 otherwise.
 *
 * ## How a suite feeds the report (the contract)
 *
 * report.ts runs vitest with LIFEBOAT_RELIABILITY_RESULTS set to a fresh
 * directory. A suite that sees it set writes one JSON file there per test file
 * (or per part), with writeSummary() below; when it is unset (plain CI runs)
 * nothing is written. A file is named `<suite>-<part>.json` and holds:
 *
 *   {
 *     "format": 1,
 *     "suite": "crash",                 // fuzz | crash | faults | replication | secrets | ...
 *     "part": "backup-sigkill",         // distinguishes files of one suite
 *     "counts": {                       // every key optional; report.ts sums each over all files
 *       "faults_injected": 120,         // faults caused on purpose: SIGKILLs, disk full, corrupted blocks, engine kills
 *       "crashes_survived": 120,        // of those, runs after which the repository verified clean and the next run completed
 *       "bad_inputs": 0,                // hostile or malformed inputs tried (fuzz inputs, bad frames, paths with ..)
 *       "bad_inputs_rejected": 0,       // of those, refused with a typed error (the rest were accepted as valid)
 *       "snapshots_checked": 340,       // committed snapshots restored and compared bit-exact after a fault
 *       "snapshots_lost": 0,            // committed snapshots that no longer restore bit-exact: must be 0
 *       "damage_kinds": 58,             // kinds of damage to a repository's files and index tables tried (damage.test.ts)
 *       "commands_after_damage": 190,   // commands run on a damaged repository, each followed by the checks
 *       "intact_packs_deleted": 0,      // pack files a snapshot needed, not hit by the damage, that a command deleted or changed: must be 0
 *       "races_run": 12,                // restores raced by a writer in their target, and changes made to files while backups read them
 *       "files_written_outside": 0      // files a restore (or a command on a damaged repository) wrote outside its target: must be 0
 *     },
 *     "failures": []                    // one line per thing that did not hold; empty when all did
 *   }
 *
 * Counts are non-negative integers. A suite counts only what it checked: a
 * crash is "survived" only once verify was clean, every snapshot committed
 * before the kill restored bit-exact, and the next run completed.
 *
 * Peak memory under load is not run here (it takes an hour): it is read from
 * the last `node bench/load.ts` run, bench/results/load-latest.json.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

export const COUNT_KEYS = [
  'faults_injected',
  'crashes_survived',
  'bad_inputs',
  'bad_inputs_rejected',
  'snapshots_checked',
  'snapshots_lost',
  'damage_kinds',
  'commands_after_damage',
  'intact_packs_deleted',
  'races_run',
  'files_written_outside',
] as const;
export type CountKey = (typeof COUNT_KEYS)[number];

export interface SuiteSummary {
  readonly format: 1;
  readonly suite: string;
  readonly part: string;
  readonly counts: Partial<Record<CountKey, number>>;
  readonly failures: readonly string[];
}

export const RESULTS_ENV = 'LIFEBOAT_RELIABILITY_RESULTS';

/** Writes a suite's summary when report.ts asked for one (atomically: report.ts may read at any time after). */
export function writeSummary(s: Omit<SuiteSummary, 'format'>): void {
  const dir = process.env[RESULTS_ENV];
  if (!dir) return;
  for (const [k, v] of Object.entries(s.counts)) {
    if (!(COUNT_KEYS as readonly string[]).includes(k) || !Number.isSafeInteger(v) || v < 0) throw new Error(`summary count ${k}=${v} is not one of ${COUNT_KEYS.join(', ')} or not a count`);
  }
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${s.suite}-${s.part}.json`.replace(/[^\w.-]/g, '_'));
  fs.writeFileSync(`${file}.tmp`, JSON.stringify({ format: 1, ...s }, null, 2));
  fs.renameSync(`${file}.tmp`, file);
}

export function readSummaries(dir: string): SuiteSummary[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json') && n !== 'vitest.json')
    .sort()
    .map((n) => {
      const s = JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as SuiteSummary;
      if (s.format !== 1 || typeof s.suite !== 'string' || typeof s.counts !== 'object' || !Array.isArray(s.failures)) throw new Error(`${n} is not a reliability summary (format 1)`);
      return s;
    });
}

interface LoadResult {
  date: string;
  peakRssKiB: number | null;
  steps: { step: string; scale: number; files: number; bytes: number; ok: boolean; maxRssKiB: number }[];
}

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numFailedTestSuites: number;
  testResults: { name: string; status: string; assertionResults: { fullName: string; status: string }[] }[];
}

const ROOT = path.resolve(import.meta.dirname, '../..');

function sum(summaries: readonly SuiteSummary[], key: CountKey): number {
  return summaries.reduce((n, s) => n + (s.counts[key] ?? 0), 0);
}

function table(rows: readonly (readonly string[])[]): string {
  const [head, ...body] = rows;
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(head!), line(head!.map((_, i) => (i === 0 ? '---' : '---:'))), ...body.map(line)].join('\n');
}

function loadFigures(): { text: string; peakMiB: number | undefined } {
  const file = path.join(ROOT, 'bench', 'results', 'load-latest.json');
  if (!fs.existsSync(file)) return { text: 'not measured (run `node bench/load.ts`)', peakMiB: undefined };
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as LoadResult;
  const top = Math.max(...r.steps.map((s) => s.scale));
  const at = (step: string) => r.steps.find((s) => s.step === step && s.scale === top && s.ok);
  const files = at('files-backup');
  const big = at('big-backup');
  const parts = [
    files && `${(files.maxRssKiB / 1024).toFixed(0)} MiB backing up ${files.files.toLocaleString('en')} files`,
    big && `${(big.maxRssKiB / 1024).toFixed(0)} MiB backing up a ${(big.bytes / 2 ** 30).toFixed(0)} GiB file`,
  ].filter(Boolean);
  const peakMiB = r.peakRssKiB === null ? undefined : r.peakRssKiB / 1024;
  return { text: `${peakMiB === undefined ? '–' : `${peakMiB.toFixed(0)} MiB`} (${parts.join('; ') || 'no step succeeded'}; bench/load.ts of ${r.date.slice(0, 10)})`, peakMiB };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      'fuzz-runs': { type: 'string', default: '2000' },
      results: { type: 'string' },
      'no-run': { type: 'boolean', default: false },
    },
  });
  const dir = path.resolve(values.results ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-reliability-')));
  const vitestFile = path.join(dir, 'vitest.json');
  if (!values['no-run']) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    process.stderr.write(`[report] running test/reliability (fuzz runs ${values['fuzz-runs']} per target); summaries in ${dir}\n`);
    // On this runtime (the pinned one: better-sqlite3 is built for it), with its bin first on PATH for what the tests spawn.
    const env = { ...process.env, PATH: `${path.join(ROOT, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}`, [RESULTS_ENV]: dir, LIFEBOAT_FUZZ_RUNS: values['fuzz-runs'] };
    const r = spawnSync(
      process.execPath,
      [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/reliability', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestFile}`],
      { cwd: ROOT, stdio: ['ignore', process.stderr, process.stderr], env },
    );
    if (r.error) throw r.error;
  }

  const summaries = readSummaries(dir);
  const tests = fs.existsSync(vitestFile) ? (JSON.parse(fs.readFileSync(vitestFile, 'utf8')) as VitestJson) : undefined;
  const failedTests = tests ? tests.numFailedTests + (tests.numFailedTestSuites > 0 && tests.numFailedTests === 0 ? tests.numFailedTestSuites : 0) : 1;
  const failures = summaries.flatMap((s) => s.failures.map((f) => `${s.suite}/${s.part}: ${f}`));
  const lost = sum(summaries, 'snapshots_lost');
  const packsDeleted = sum(summaries, 'intact_packs_deleted');
  const outside = sum(summaries, 'files_written_outside');
  const load = loadFigures();

  const badInputs = sum(summaries, 'bad_inputs');
  const rejected = sum(summaries, 'bad_inputs_rejected');
  console.log('## Lifeboat reliability report\n');
  console.log(
    table([
      ['measure', 'value'],
      ['faults injected', String(sum(summaries, 'faults_injected'))],
      ['crashes survived', String(sum(summaries, 'crashes_survived'))],
      ['bad inputs tried', `${badInputs} (${rejected} refused with a typed error, ${badInputs - rejected} accepted as valid)`],
      ['snapshots lost (must be 0)', `${lost} of ${sum(summaries, 'snapshots_checked')} checked`],
      ['damage kinds tried', `${sum(summaries, 'damage_kinds')}, followed by ${sum(summaries, 'commands_after_damage')} commands`],
      ['intact packs deleted (must be 0)', String(packsDeleted)],
      ['races run', String(sum(summaries, 'races_run'))],
      ['files written outside a target (must be 0)', String(outside)],
      ['peak memory under load', load.text],
      ['tests', tests ? `${tests.numPassedTests} passed, ${failedTests} failed, ${tests.numPendingTests} skipped` : 'no vitest result'],
    ]),
  );
  if (summaries.length > 0) {
    console.log('\nBy suite:\n');
    console.log(
      table([
        ['suite/part', ...COUNT_KEYS],
        ...summaries.map((s) => [`${s.suite}/${s.part}`, ...COUNT_KEYS.map((k) => (s.counts[k] === undefined ? '' : String(s.counts[k])))]),
      ]),
    );
  }
  if (failures.length > 0) console.log(`\nFailures:\n${failures.map((f) => `- ${f}`).join('\n')}`);
  if (tests && failedTests > 0) {
    const failed = tests.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => `- ${path.relative(ROOT, f.name)}: ${a.fullName}`));
    console.log(`\nFailed tests:\n${failed.join('\n') || '- (a test file failed to run)'}`);
  }
  process.exitCode = failedTests === 0 && failures.length === 0 && lost === 0 && packsDeleted === 0 && outside === 0 ? 0 : 1;
}

if (import.meta.main) main();
