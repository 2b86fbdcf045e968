/**
 * A table-driven fuzz harness. A target names a decoder or loader, the inputs
 * to throw at it (a fast-check arbitrary, so runs are seeded, reproducible and
 * shrink to a small case) and how to run one input. The rule for every target:
 * an input is accepted, or rejected with a LifeboatError whose code the target
 * allows; anything else is a failure:
 *
 *   untyped  something other than a LifeboatError escaped (TypeError, RangeError, SqliteError, ...)
 *   code     a LifeboatError with a code the target does not list
 *   hang     one input ran longer than the target's timeoutMs (the worker is terminated)
 *   memory   one input raised the process's peak RSS by more than memLimitBytes, or the heap overflowed
 *   alloc    one input asked Buffer for more than allocLimitBytes at once, caught or not
 *   crash    the target's setup or the worker itself failed
 *
 * Each target runs in its own worker thread, so a synchronous infinite loop
 * can be stopped and a runaway heap is capped by resourceLimits.
 *
 * Adding a target: create test/reliability/fuzz/targets-<area>.ts that calls
 * registerTarget({...}) at the top level. fuzz.test.ts loads every targets*.ts
 * file beside it and runs every registered target; nothing else to change.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type fc from 'fast-check';

export interface FuzzTarget<I, C = undefined> {
  /** Unique, short, stable: it names the test and seeds the default run. */
  readonly name: string;
  /** What is fuzzed, for the report. */
  readonly description: string;
  /** Codes a rejection may carry. Absent: any LifeboatError. */
  readonly codes?: readonly string[];
  /** Built once per run in the worker (a repository, a valid encoding to mutate), before any input. */
  setup?(): C | Promise<C>;
  readonly input: (ctx: C) => fc.Arbitrary<I>;
  /**
   * Runs one input. Returning is acceptance; throwing a LifeboatError is a
   * rejection; throwing anything else (an invariant the target checks on an
   * accepted result, say) is a failure.
   */
  run(input: I, ctx: C): unknown;
  teardown?(ctx: C): void | Promise<void>;
  /** Bound on one input's time; default 5 s (generous: CI machines are shared). */
  readonly timeoutMs?: number;
  /** Bound on one input's growth of the process's peak RSS; default 256 MiB. */
  readonly memLimitBytes?: number;
  /** Largest single Buffer allocation an input may cause; default 64 MiB. */
  readonly allocLimitBytes?: number;
}

type AnyTarget = FuzzTarget<any, any>;
const registry = new Map<string, AnyTarget>();

export function registerTarget<I, C = undefined>(target: FuzzTarget<I, C>): void {
  if (registry.has(target.name)) throw new Error(`fuzz target ${target.name} is registered twice`);
  registry.set(target.name, target as AnyTarget);
}

export function registeredTargets(): ReadonlyMap<string, AnyTarget> {
  return registry;
}

/** Every targets*.ts module in this directory, as URLs a worker can import. */
export function targetModules(dir = import.meta.dirname): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => /^targets[\w-]*\.ts$/.test(n))
    .sort()
    .map((n) => pathToFileURL(path.join(dir, n)).href);
}

export type FailureKind = 'untyped' | 'code' | 'hang' | 'memory' | 'alloc' | 'crash';

export interface FuzzFailure {
  readonly kind: FailureKind;
  readonly message: string;
  /** The input (shrunk when fast-check could), rendered; absent for hangs, where the worker died with it. */
  readonly input?: string;
  /** 0-based number of the input that failed first (inputs tried while shrinking count on). */
  readonly run?: number;
}

export interface TargetReport {
  readonly target: string;
  readonly seed: number;
  /** Inputs tried before the first failure, or all of them. */
  readonly runs: number;
  readonly accepted: number;
  /** Rejections by error code. */
  readonly rejected: Readonly<Record<string, number>>;
  readonly failures: readonly FuzzFailure[];
  /** The largest growth of peak RSS one input caused, in bytes (0 where it cannot be measured). */
  readonly maxGrowthBytes: number;
  readonly durationMs: number;
  /** How to run exactly this case again. */
  readonly replay: string;
}

export interface RunOptions {
  readonly runs: number;
  readonly seed: number;
  /** Modules that register the target (default: every targets*.ts here). */
  readonly modules?: readonly string[];
  /** fast-check replay path of a counterexample, to run just that case. */
  readonly path?: string;
  /** Time allowed for the target's setup. */
  readonly setupTimeoutMs?: number;
}

/** What the worker is told. */
export interface WorkerJob {
  readonly modules: readonly string[];
  readonly target: string;
  readonly runs: number;
  readonly seed: number;
  readonly path?: string;
}

/** What the worker says: a heartbeat before each input, the first failure as soon as it is seen, the result. */
export type WorkerMessage =
  | { readonly kind: 'start'; readonly run: number }
  | { readonly kind: 'failure'; readonly failure: FuzzFailure }
  | { readonly kind: 'done'; readonly report: Omit<TargetReport, 'durationMs' | 'replay' | 'seed' | 'target'> };

const WORKER = new URL('./worker.ts', import.meta.url);
export const DEFAULTS = { timeoutMs: 5_000, memLimitBytes: 256 * 2 ** 20, allocLimitBytes: 64 * 2 ** 20 } as const;

/** Seed of a target when none is given: fixed per name, so CI runs the same inputs every time. */
export function defaultSeed(name: string): number {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(name)) h = Math.imul(h ^ c, 0x01000193);
  return h | 0;
}

/**
 * Runs and settings from the environment: LIFEBOAT_FUZZ_RUNS (default 300),
 * LIFEBOAT_FUZZ_SEED (a number, or "random"), LIFEBOAT_FUZZ_TARGET (names,
 * comma-separated), LIFEBOAT_FUZZ_PATH (with one target and a seed: replay
 * one counterexample).
 */
export function fuzzSettings(env: NodeJS.ProcessEnv = process.env): { runs: number; seed?: number; only?: Set<string>; path?: string } {
  const runs = env.LIFEBOAT_FUZZ_RUNS ? Number(env.LIFEBOAT_FUZZ_RUNS) : 300;
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`LIFEBOAT_FUZZ_RUNS must be a positive integer, got ${env.LIFEBOAT_FUZZ_RUNS}`);
  const s = env.LIFEBOAT_FUZZ_SEED;
  const seed = s === undefined || s === '' ? undefined : s === 'random' ? (Math.random() * 2 ** 32) | 0 : Number(s);
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new Error(`LIFEBOAT_FUZZ_SEED must be an integer or "random", got ${s}`);
  const only = env.LIFEBOAT_FUZZ_TARGET ? new Set(env.LIFEBOAT_FUZZ_TARGET.split(',').map((t) => t.trim())) : undefined;
  return { runs, ...(seed === undefined ? {} : { seed }), ...(only ? { only } : {}), ...(env.LIFEBOAT_FUZZ_PATH ? { path: env.LIFEBOAT_FUZZ_PATH } : {}) };
}

/** Runs one registered target in a worker thread; never rejects: problems are failures in the report. */
export function runTarget(name: string, opts: RunOptions): Promise<TargetReport> {
  const target = registry.get(name);
  if (!target) throw new Error(`no fuzz target ${name}`);
  const timeoutMs = target.timeoutMs ?? DEFAULTS.timeoutMs;
  const job: WorkerJob = { modules: opts.modules ?? targetModules(), target: name, runs: opts.runs, seed: opts.seed, ...(opts.path ? { path: opts.path } : {}) };
  const started = performance.now();
  const replay = `LIFEBOAT_FUZZ_TARGET=${name} LIFEBOAT_FUZZ_SEED=${opts.seed} LIFEBOAT_FUZZ_RUNS=${opts.runs} npx vitest run test/reliability/fuzz`;
  // The heap is capped: an input that builds a huge JS structure ends the worker instead of the machine.
  const worker = new Worker(WORKER, { workerData: job, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
  return new Promise((resolve) => {
    let current = -1;
    let first: FuzzFailure | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (report: Omit<TargetReport, 'durationMs' | 'replay' | 'seed' | 'target'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve({ target: name, seed: opts.seed, ...report, durationMs: Math.round(performance.now() - started), replay });
    };
    const died = (failure: FuzzFailure) =>
      finish({ runs: Math.max(0, current), accepted: 0, rejected: {}, failures: first ? [first, failure] : [failure], maxGrowthBytes: 0 });
    const arm = (ms: number, what: () => FuzzFailure) => {
      clearTimeout(timer);
      timer = setTimeout(() => died(what()), ms);
    };
    arm(opts.setupTimeoutMs ?? 120_000, () => ({ kind: 'crash', message: `setup did not finish in ${opts.setupTimeoutMs ?? 120_000} ms` }));
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'start') {
        current = m.run;
        arm(timeoutMs, () => ({ kind: 'hang', message: `input ${m.run} ran longer than ${timeoutMs} ms`, run: m.run }));
      } else if (m.kind === 'failure') {
        first ??= m.failure;
      } else {
        finish(m.report);
      }
    });
    worker.on('error', (err: Error & { code?: string }) => {
      const oom = err.code === 'ERR_WORKER_OUT_OF_MEMORY';
      died({ kind: oom ? 'memory' : 'crash', message: `${oom ? 'heap limit reached' : 'worker failed'}${current >= 0 ? ` at input ${current}` : ''}: ${err.message}`, ...(current >= 0 ? { run: current } : {}) });
    });
    worker.on('exit', (code) => died({ kind: 'crash', message: `worker exited with code ${code} before reporting` }));
  });
}

/** One line per target for logs and the report. */
export function describeReport(r: TargetReport): string {
  const codes = Object.entries(r.rejected).map(([c, n]) => `${c} ${n}`).join(', ') || 'none';
  const head = `${r.target}: ${r.runs} inputs (seed ${r.seed}) in ${(r.durationMs / 1000).toFixed(1)} s: ${r.accepted} accepted, rejected ${codes}, peak RSS growth ${(r.maxGrowthBytes / 2 ** 20).toFixed(1)} MiB`;
  return [head, ...r.failures.map((f) => `  FAILED (${f.kind})${f.run === undefined ? '' : ` at input ${f.run}`}: ${f.message}${f.input ? `\n    input: ${f.input}` : ''}`), ...(r.failures.length ? [`  replay: ${r.replay}`] : [])].join('\n');
}
