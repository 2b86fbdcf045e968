import { defineConfig } from 'vitest/config';

/**
 * Three tiers. unit (what `npm test` runs, under a minute): src/'s tests,
 * in-process, fakes for the engine. integration: real processes, the real
 * engine, TLS, the CLI as built, and src/'s heavier *.int.test.ts. reliability:
 * crash, damage, fuzz and race suites. CI (`npm run test:all`) runs them all.
 */
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // CI reads the counts from the JSON report to print "N passed, N failed".
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.ci/vitest-results.json' }]] : ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['src/**/*.test.ts'], exclude: ['src/**/*.int.test.ts'], isolate: false } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['src/**/*.int.test.ts', 'test/**/*.test.ts'],
          exclude: ['test/reliability/**'],
          // the CLI tests run bin/lifeboat, which runs dist/
          globalSetup: ['test/global-setup.ts'],
        },
      },
      { extends: true, test: { name: 'reliability', include: ['test/reliability/**/*.test.ts'], globalSetup: ['test/global-setup.ts'] } },
    ],
  },
});
