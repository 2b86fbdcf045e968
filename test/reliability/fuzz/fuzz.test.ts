/**
 * Runs every registered fuzz target (every targets*.ts beside this file) for
 * LIFEBOAT_FUZZ_RUNS inputs (300 by default, seeded per target so CI tries
 * the same inputs every time). More on demand:
 *
 *   LIFEBOAT_FUZZ_RUNS=20000 npx vitest run test/reliability/fuzz
 *   LIFEBOAT_FUZZ_SEED=random LIFEBOAT_FUZZ_TARGET=frames,tree npx vitest run test/reliability/fuzz
 *
 * A failure prints the target, the input (shrunk), and the command that runs it again.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { writeSummary } from '../report.ts';
import { defaultSeed, describeReport, fuzzSettings, registeredTargets, runTarget, type TargetReport, targetModules } from './fuzz.ts';

const modules = targetModules();
for (const m of modules) await import(m);
const settings = fuzzSettings();
const reports: TargetReport[] = [];

describe('fuzz: every input is accepted or refused with a typed error, in bounded time and memory', () => {
  it('has the targets the reliability issue names', () => {
    expect([...registeredTargets().keys()]).toEqual(expect.arrayContaining(['tree', 'list', 'pack-trailer', 'key-file', 'unseal', 'config', 'frames', 'index-db']));
  });

  for (const [name, target] of registeredTargets()) {
    const timeout = 120_000 + settings.runs * (target.timeoutMs ?? 5_000) / 20;
    it.skipIf(settings.only !== undefined && !settings.only.has(name))(`${name}: ${target.description}`, async () => {
      const report = await runTarget(name, { runs: settings.runs, seed: settings.seed ?? defaultSeed(name), modules, ...(settings.path ? { path: settings.path } : {}) });
      reports.push(report);
      console.log(describeReport(report));
      expect(report.failures, describeReport(report)).toEqual([]);
      expect(report.runs).toBe(settings.runs);
      expect(report.accepted + Object.values(report.rejected).reduce((a, b) => a + b, 0)).toBe(settings.runs);
    }, timeout);
  }
});

afterAll(() => {
  writeSummary({
    suite: 'fuzz',
    part: 'decoders',
    counts: {
      bad_inputs: reports.reduce((n, r) => n + r.runs, 0),
      bad_inputs_rejected: reports.reduce((n, r) => n + Object.values(r.rejected).reduce((a, b) => a + b, 0), 0),
    },
    failures: reports.flatMap((r) => r.failures.map((f) => `${r.target}: ${f.kind}: ${f.message}`)),
  });
});
