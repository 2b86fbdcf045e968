/**
 * The alert rules of contrib/prometheus, checked and unit-tested by
 * Prometheus's own promtool (from Debian's prometheus package: .ci/run
 * unpacks it and sets PROMTOOL). Without promtool the test is skipped on a
 * developer's machine, never in CI.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = path.resolve(import.meta.dirname, '../../contrib/prometheus');
const promtool = process.env.PROMTOOL ?? ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => fs.existsSync(p));

describe('contrib/prometheus', () => {
  it('has promtool to check it when CI runs', () => {
    if (process.env.CI) expect(promtool, 'CI must provide promtool (PROMTOOL)').toBeDefined();
  });

  it.skipIf(!promtool)('passes promtool check rules and the rules unit tests (a first failure, stale backups and replicas, an unreachable peer, a failed drill)', () => {
    const check = execFileSync(promtool!, ['check', 'rules', 'lifeboat.rules.yml'], { cwd: DIR, encoding: 'utf8' });
    expect(check).toContain('SUCCESS: 6 rules found');
    const test = execFileSync(promtool!, ['test', 'rules', 'lifeboat.rules.test.yml'], { cwd: DIR, encoding: 'utf8' });
    expect(test).toContain('SUCCESS');
  });
});
