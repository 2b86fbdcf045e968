// Load benchmark: memory must not grow with the number of files or the size of a file.
// At each scale (default 0.1 then 1), through the CLI and under GNU time (wall, peak RSS):
//   - backup of a tree of 1,000,000 small files (1,000 directories of 1,000), then a no-change backup;
//   - backup of one 10 GiB file, then a restore of it, checked identical by SHA-256.
// Peak RSS at 1/10 and at full scale side by side shows whether the footprint follows the input.
//
//   node bench/load.ts [--work bench/work/load] [--files 1000000] [--file-gib 10] [--scales 0.1,1]
//                      [--steps files,big] [--lifeboat CMD] [--keep]
// Prints a Markdown table and writes bench/results/load-latest.json (read by test/reliability/report.ts).
// A report, not a test: it exits 0 once it has printed, even when a step failed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { textBytes } from './lib/content.ts';
import { RandomStream, Sfc32 } from './lib/prng.ts';
import { runTimed, type TimedResult } from './lib/timed.ts';

const BENCH_DIR = dirname(new URL(import.meta.url).pathname);
const PROJECT_DIR = dirname(BENCH_DIR);
const GiB = 2 ** 30;
const FILES_PER_DIR = 1000;
const SEED = 'lifeboat-load';
const PASSWORD = 'lifeboat-load-password';

const log = (msg: string): void => void process.stderr.write(`[load] ${msg}\n`);

function parseOptions() {
  const { values } = parseArgs({
    options: {
      work: { type: 'string', default: join(BENCH_DIR, 'work', 'load') },
      files: { type: 'string', default: '1000000' },
      'file-gib': { type: 'string', default: '10' },
      scales: { type: 'string', default: '0.1,1' },
      steps: { type: 'string', default: 'files,big' },
      lifeboat: { type: 'string', default: process.env['LIFEBOAT_BIN'] ?? join(PROJECT_DIR, 'bin', 'lifeboat') },
      keep: { type: 'boolean', default: false },
    },
  });
  const files = Number(values.files);
  const fileGib = Number(values['file-gib']);
  const scales = values.scales.split(',').map(Number);
  if (!(files > 0) || !(fileGib > 0) || scales.some((s) => !(s > 0))) throw new Error('--files, --file-gib and --scales must be positive');
  const steps = new Set(values.steps.split(',').map((s) => s.trim()));
  for (const s of steps) if (s !== 'files' && s !== 'big') throw new Error(`unknown step ${s} (files, big)`);
  return { work: resolve(values.work), files, fileGib, scales, steps, lifeboatCmd: values.lifeboat.split(/\s+/).filter(Boolean), keep: values.keep };
}
type Options = ReturnType<typeof parseOptions>;

export interface LoadStep {
  readonly step: 'files-backup' | 'files-nochange' | 'big-backup' | 'big-restore';
  readonly scale: number;
  /** Files in the input, and bytes of file content. */
  readonly files: number;
  readonly bytes: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly wallS: number;
  readonly maxRssKiB: number;
  readonly userS: number;
  readonly sysS: number;
  /** Lifeboat's --json output. */
  readonly reported?: Record<string, unknown>;
  /** big-restore: the restored file's SHA-256 equals the source's. */
  readonly identical?: boolean;
}

/** Generated inputs are reused when the marker says they match (after a --keep run). */
function generated<T>(dir: string, want: Record<string, unknown>, make: () => T): T {
  const file = join(dir, '.generated.json');
  if (existsSync(file)) {
    const have = JSON.parse(readFileSync(file, 'utf8')) as { want: unknown; result: T };
    if (JSON.stringify(have.want) === JSON.stringify(want)) return have.result;
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const result = make();
  writeFileSync(file, JSON.stringify({ want, result }));
  return result;
}

/** `count` text files of 64 B to 4 KiB with unique contents (log-like: compressible, no dedup), 1,000 per directory. */
function makeFiles(dir: string, count: number): { files: number; bytes: number } {
  return generated(dir, { count, FILES_PER_DIR, SEED }, () => {
    const rng = new Sfc32(SEED, 'files');
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const sub = join(dir, 'tree', `d${String(Math.floor(i / FILES_PER_DIR)).padStart(4, '0')}`);
      if (i % FILES_PER_DIR === 0) mkdirSync(sub, { recursive: true });
      const data = textBytes(rng, 64 + rng.int(4096 - 64));
      writeFileSync(join(sub, `f${String(i % FILES_PER_DIR).padStart(3, '0')}.log`), data);
      bytes += data.length;
      if (i > 0 && i % 100_000 === 0) log(`  ${i} files written`);
    }
    return { files: count, bytes };
  });
}

/** One file of incompressible bytes, hashed as it is written. */
function makeBigFile(dir: string, bytes: number): { sha256: string } {
  return generated(dir, { bytes, SEED }, () => {
    const stream = new RandomStream(SEED, 'big');
    const hash = createHash('sha256');
    mkdirSync(join(dir, 'tree'), { recursive: true });
    const fd = openSync(join(dir, 'tree', 'big.bin'), 'w');
    try {
      for (let left = bytes; left > 0; ) {
        const chunk = stream.bytes(Math.min(left, 4 << 20));
        hash.update(chunk);
        for (let o = 0; o < chunk.length; ) o += writeSync(fd, chunk, o);
        left -= chunk.length;
      }
    } finally {
      closeSync(fd);
    }
    return { sha256: hash.digest('hex') };
  });
}

function sha256File(file: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Lifeboat prints one JSON object on stdout with --json. */
function reported(r: TimedResult): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(r.stdout);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function record(step: LoadStep['step'], scale: number, input: { files: number; bytes: number }, r: TimedResult, extra: Partial<LoadStep> = {}): LoadStep {
  const ok = r.code === 0 && extra.identical !== false;
  const error = r.code !== 0 ? (r.stderr || r.stdout).trim().split('\n').slice(-5).join(' / ') : extra.identical === false ? 'restored file differs from the source' : undefined;
  const rep = reported(r);
  const rec: LoadStep = {
    step,
    scale,
    ...input,
    ok,
    ...(error === undefined ? {} : { error }),
    wallS: r.wallS,
    maxRssKiB: r.maxRssKiB,
    userS: r.userS,
    sysS: r.sysS,
    ...(rep ? { reported: rep } : {}),
    ...extra,
  };
  log(`${step} (scale ${scale}): ${ok ? `${rec.wallS.toFixed(1)} s, peak RSS ${(rec.maxRssKiB / 1024).toFixed(0)} MiB` : `FAILED: ${error}`}`);
  return rec;
}

/** Bytes each scale writes at most: the tree's blocks (4 KiB per small file) and repository, or the big file three times (source, repository, restore). */
function neededBytes(o: Options, scale: number): number {
  const files = o.steps.has('files') ? o.files * scale * 4096 * 1.6 : 0;
  const big = o.steps.has('big') ? o.fileGib * scale * GiB * 3.05 : 0;
  return files + big;
}

function lifeboat(o: Options, args: readonly string[]): TimedResult {
  return runTimed([...o.lifeboatCmd, ...args], { env: { ...process.env, LIFEBOAT_PASSWORD: PASSWORD } });
}

const sync = (): void => void spawnSync('sync');

function runScale(o: Options, scale: number): LoadStep[] {
  const out: LoadStep[] = [];
  const dir = join(o.work, `scale-${scale}`);
  mkdirSync(dir, { recursive: true });

  if (o.steps.has('files')) {
    const count = Math.round(o.files * scale);
    log(`scale ${scale}: ${count} small files`);
    const input = makeFiles(join(dir, 'files'), count);
    const tree = join(dir, 'files', 'tree');
    const repo = join(dir, 'repo-files');
    rmSync(repo, { recursive: true, force: true });
    ensureRun(lifeboat(o, ['init', '--repo', repo]), 'init');
    sync();
    out.push(record('files-backup', scale, input, lifeboat(o, ['--json', 'backup', '--repo', repo, '--path', tree])));
    sync();
    out.push(record('files-nochange', scale, input, lifeboat(o, ['--json', 'backup', '--repo', repo, '--path', tree])));
    rmSync(repo, { recursive: true, force: true });
    if (!o.keep) rmSync(join(dir, 'files'), { recursive: true, force: true });
  }

  if (o.steps.has('big')) {
    const bytes = Math.round(o.fileGib * scale * GiB);
    log(`scale ${scale}: one file of ${(bytes / GiB).toFixed(2)} GiB`);
    const { sha256 } = makeBigFile(join(dir, 'big'), bytes);
    const input = { files: 1, bytes };
    const tree = join(dir, 'big', 'tree');
    const repo = join(dir, 'repo-big');
    const target = join(dir, 'restore-big');
    rmSync(repo, { recursive: true, force: true });
    rmSync(target, { recursive: true, force: true });
    ensureRun(lifeboat(o, ['init', '--repo', repo]), 'init');
    sync();
    const b = record('big-backup', scale, input, lifeboat(o, ['--json', 'backup', '--repo', repo, '--path', tree]));
    out.push(b);
    if (b.ok) {
      // The source is not needed any more: free its space before the restore writes as much again.
      if (!o.keep) rmSync(join(dir, 'big'), { recursive: true, force: true });
      sync();
      const r = lifeboat(o, ['--json', 'restore', 'latest', '--repo', repo, '--target', target]);
      const identical = r.code === 0 ? sha256File(join(target, 'big.bin')) === sha256 : undefined;
      out.push(record('big-restore', scale, input, r, identical === undefined ? {} : { identical }));
    }
    rmSync(repo, { recursive: true, force: true });
    rmSync(target, { recursive: true, force: true });
    if (!o.keep) rmSync(join(dir, 'big'), { recursive: true, force: true });
  }
  return out;
}

function ensureRun(r: TimedResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
}

const TITLE: Record<LoadStep['step'], string> = {
  'files-backup': 'backup, small files',
  'files-nochange': 'no-change backup, small files',
  'big-backup': 'backup, one large file',
  'big-restore': 'restore, one large file',
};

function describeInput(s: LoadStep): string {
  return s.files === 1 ? `1 file, ${(s.bytes / GiB).toFixed(2)} GiB` : `${s.files.toLocaleString('en')} files, ${(s.bytes / GiB).toFixed(2)} GiB`;
}

function render(steps: readonly LoadStep[]): string {
  const rows = steps.map((s) => {
    const rep = s.reported ?? {};
    const detail =
      s.step === 'big-restore'
        ? s.identical === undefined ? '–' : s.identical ? 'SHA-256 identical' : 'DIFFERS'
        : typeof rep['files'] === 'number'
          ? `${rep['files']} files, ${rep['files_unchanged']} unchanged, stored ${((Number(rep['bytes_stored']) || 0) / 2 ** 20).toFixed(0)} MiB`
          : '–';
    return `| ${TITLE[s.step]} | ${describeInput(s)} | ${s.ok ? s.wallS.toFixed(1) : 'FAIL'} | ${s.ok ? (s.maxRssKiB / 1024).toFixed(0) : '–'} | ${(s.userS + s.sysS).toFixed(1)} | ${s.ok ? detail : s.error} |`;
  });
  return ['| step | input | wall (s) | peak RSS (MiB) | CPU (s) | result |', '| --- | --- | ---: | ---: | ---: | --- |', ...rows].join('\n');
}

/** Peak RSS of a step at the largest scale over the same step at the smallest: 1.0 means memory did not follow the input. */
function growth(steps: readonly LoadStep[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(TITLE) as LoadStep['step'][]) {
    const ok = steps.filter((s) => s.step === name && s.ok).sort((a, b) => a.scale - b.scale);
    if (ok.length >= 2) out[name] = ok.at(-1)!.maxRssKiB / ok[0]!.maxRssKiB;
  }
  return out;
}

function main(): void {
  const o = parseOptions();
  mkdirSync(o.work, { recursive: true });
  const fs = statfsSync(o.work);
  const free = fs.bavail * fs.bsize;
  const need = Math.max(...o.scales.map((s) => neededBytes(o, s)));
  log(`work ${o.work}: ${(free / GiB).toFixed(1)} GiB free, the largest scale needs about ${(need / GiB).toFixed(1)} GiB`);
  if (need > free) throw new Error(`not enough space in ${o.work}: choose a smaller --file-gib or --files`);

  const steps: LoadStep[] = [];
  for (const scale of o.scales) steps.push(...runScale(o, scale));
  if (!o.keep) rmSync(o.work, { recursive: true, force: true });

  const ratios = growth(steps);
  const cpu = cpus();
  const okSteps = steps.filter((s) => s.ok);
  const peakRssKiB = okSteps.length ? Math.max(...okSteps.map((s) => s.maxRssKiB)) : null;
  console.log(`## Load benchmark — ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${(totalmem() / GiB).toFixed(0)} GiB RAM\n`);
  console.log(render(steps));
  console.log('');
  console.log('Peak RSS at the largest scale ÷ at the smallest (1.00: memory does not follow the input):');
  for (const [name, r] of Object.entries(ratios)) console.log(`- ${TITLE[name as LoadStep['step']]}: ${r.toFixed(2)}x`);
  if (peakRssKiB !== null) console.log(`\nPeak RSS over all steps: ${(peakRssKiB / 1024).toFixed(0)} MiB`);

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'load-latest.json');
  writeFileSync(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        host: { cpus: cpu.length, model: cpu[0]?.model, memBytes: totalmem() },
        options: { files: o.files, fileGib: o.fileGib, scales: o.scales, steps: [...o.steps] },
        steps,
        rssGrowth: ratios,
        peakRssKiB,
      },
      null,
      2,
    ),
  );
  log(`wrote ${file}`);
}

try {
  main();
} catch (err) {
  console.error(err);
  console.log('load benchmark aborted before completion (see error above)');
}
process.exit(0);
