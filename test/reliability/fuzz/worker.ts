/**
 * The worker side of runTarget: loads the target modules, sets the target up,
 * and feeds it inputs through fast-check, checking each outcome against the
 * harness's rule. Memory is watched two ways: Buffer allocations above the
 * target's limit are refused (and reported even if the code under test
 * swallowed the refusal), and the process's peak RSS is reset before each
 * input and read after it (Linux), which catches native allocations too.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { LifeboatError } from '../../../src/errors/errors.ts';
import { DEFAULTS, type FuzzFailure, registeredTargets, type WorkerJob, type WorkerMessage } from './fuzz.ts';

const job = workerData as WorkerJob;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);

class Refused extends Error {}

/** Refuses single Buffer allocations above `limit`; returns a probe that says (and resets) whether one was tried. */
function guardAllocations(limit: number): () => number | undefined {
  let tried: number | undefined;
  for (const fn of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
    const original = Buffer[fn] as (size: number, ...rest: unknown[]) => Buffer;
    (Buffer as unknown as Record<string, unknown>)[fn] = function (this: unknown, size: number, ...rest: unknown[]) {
      if (typeof size === 'number' && size > limit) {
        tried ??= size;
        throw new Refused(`Buffer.${fn}(${size}) refused by the fuzz harness (limit ${limit})`);
      }
      return original.call(this, size, ...rest);
    };
  }
  return () => {
    const t = tried;
    tried = undefined;
    return t;
  };
}

/** Peak RSS since the last reset, in bytes; undefined where /proc cannot say (then memory is not checked). */
const peak = {
  reset(): boolean {
    try {
      fs.writeFileSync('/proc/self/clear_refs', '5');
      return true;
    } catch {
      return false;
    }
  },
  read(key: 'VmHWM' | 'VmRSS'): number | undefined {
    try {
      const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  },
};

/** Inputs rendered for a report: buffers as length and leading hex, everything cut to a readable size. */
function render(input: unknown): string {
  const text = JSON.stringify(input, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return `<${v.byteLength} bytes: ${Buffer.from(v.buffer, v.byteOffset, Math.min(v.byteLength, 96)).toString('hex')}${v.byteLength > 96 ? '…' : ''}>`;
    if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      const data = (v as { data: number[] }).data;
      return `<${data.length} bytes: ${Buffer.from(data.slice(0, 96)).toString('hex')}${data.length > 96 ? '…' : ''}>`;
    }
    if (typeof v === 'string' && v.length > 400) return `${v.slice(0, 400)}… (${v.length} chars)`;
    if (typeof v === 'bigint') return `${v}n`;
    return v;
  });
  return text === undefined ? String(input) : text.length > 3000 ? `${text.slice(0, 3000)}…` : text;
}

async function main(): Promise<void> {
  for (const m of job.modules) await import(m);
  const target = registeredTargets().get(job.target);
  if (!target) throw new Error(`no fuzz target ${job.target} in ${job.modules.join(', ')}`);
  const ctx = await target.setup?.();
  const allocLimit = target.allocLimitBytes ?? DEFAULTS.allocLimitBytes;
  const memLimit = target.memLimitBytes ?? DEFAULTS.memLimitBytes;
  const refused = guardAllocations(allocLimit);
  const canMeasure = peak.reset();

  let run = -1;
  let counting = true;
  let accepted = 0;
  let maxGrowth = 0;
  const rejected: Record<string, number> = {};
  let first: FuzzFailure | undefined;

  // fast-check goes on shrinking after the first failure: counts stop there, and the first is posted at once
  // so that it is known even if a shrinking step hangs.
  const fail = (failure: FuzzFailure): never => {
    if (!first) {
      first = failure;
      counting = false;
      post({ kind: 'failure', failure });
    }
    throw Object.assign(new Error(failure.message), { failure });
  };

  const property = fc.asyncProperty(target.input(ctx), async (input: unknown) => {
    run++;
    post({ kind: 'start', run });
    const rssBefore = canMeasure && peak.reset() ? peak.read('VmRSS') : undefined;
    let outcome: { ok: true } | { ok: false; err: unknown };
    try {
      await target.run(input, ctx);
      outcome = { ok: true };
    } catch (err) {
      outcome = { ok: false, err };
    }
    const here = { run, input: render(input) };
    const asked = refused();
    if (asked !== undefined) fail({ kind: 'alloc', message: `asked for a Buffer of ${asked} bytes (limit ${allocLimit})`, ...here });
    if (rssBefore !== undefined) {
      const growth = (peak.read('VmHWM') ?? 0) - rssBefore;
      maxGrowth = Math.max(maxGrowth, growth);
      if (growth > memLimit) fail({ kind: 'memory', message: `peak RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB (limit ${(memLimit / 2 ** 20).toFixed(0)} MiB)`, ...here });
    }
    if (outcome.ok) {
      if (counting) accepted++;
      return;
    }
    const err = outcome.err;
    if (err instanceof LifeboatError) {
      if (target.codes && !target.codes.includes(err.code)) fail({ kind: 'code', message: `${err.name} [${err.code}]: ${err.message}`, ...here });
      if (counting) rejected[err.code] = (rejected[err.code] ?? 0) + 1;
      return;
    }
    const e = err as { name?: string; code?: unknown; message?: string; stack?: string };
    const where = e.stack?.split('\n').slice(1, 4).map((l) => l.trim()).join(' < ') ?? '';
    fail({ kind: 'untyped', message: `${e.name ?? typeof err}${typeof e.code === 'string' ? ` [${e.code}]` : ''}: ${e.message ?? String(err)}${where ? ` (${where})` : ''}`, ...here });
  });

  const details = await fc.check(property, { numRuns: job.runs, seed: job.seed, ...(job.path ? { path: job.path } : {}) });
  const failures: FuzzFailure[] = [];
  if (details.failed) {
    // The shrunk case's own failure (its message fits its input), numbered as the first one found.
    const shrunk = (details.errorInstance as { failure?: FuzzFailure } | undefined)?.failure ?? first;
    const replayPath = details.counterexamplePath ? ` (LIFEBOAT_FUZZ_PATH=${details.counterexamplePath})` : '';
    failures.push(
      shrunk
        ? { ...shrunk, ...(first?.run === undefined ? {} : { run: first.run }), message: `${shrunk.message}${replayPath}` }
        : { kind: 'crash', message: `fast-check: ${String(details.errorInstance ?? 'failed')}` },
    );
  }
  await target.teardown?.(ctx);
  const runs = first?.run === undefined ? run + 1 : first.run + 1;
  post({ kind: 'done', report: { runs, accepted, rejected, failures, maxGrowthBytes: maxGrowth } });
}

main().catch((err: Error) => {
  post({ kind: 'done', report: { runs: 0, accepted: 0, rejected: {}, failures: [{ kind: 'crash', message: `${err.name}: ${err.message}` }], maxGrowthBytes: 0 } });
});
