/**
 * The console's page in Chromium against an endpoint whose answers carry
 * markup where names and errors go (a file name in an error message, a peer's
 * error text): it shows them as text and runs none of it.
 */
import fs from 'node:fs';
import type http from 'node:http';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeServer, handler, listen } from '../../src/agent/http.ts';
import type { StatusReport } from '../../src/agent/status.ts';
import { captureLog } from '../../src/agent/testing/log.ts';
import { Access } from '../../src/console/access.ts';
import { boundAddress } from '../../src/util/listen.ts';

const CHROMIUM = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const MARKUP = (n: number) => `<img src=x onerror="window.__pwned=${n}"><script>window.__pwned=${n}</script>`;
const now = new Date().toISOString();

const status: StatusReport = {
  agent: { running: true, pid: 1, uptime_s: 5, version: MARKUP(1), host: MARKUP(2), started: now, listen: '127.0.0.1:1', jobs: { running: MARKUP(3), waiting: [] } },
  engine: { address: 'unix:///x', reachable: false, version: null, last_error: MARKUP(4), last_reconcile: null },
  volumes: [
    {
      name: 'data',
      last_snapshot: { id: 'ab'.repeat(32), time: now, age_s: 1 },
      journal: { state: 'clean', trusted: true, dirty: 0, reason: null, last_full_scan: null },
      schedule: '0 * * * *',
      next_run: now,
      rpo_target_s: 3600,
      continuous: false,
      debounce_ms: null,
      running: false,
      last_backup: { time: now, duration_ms: 10, files: 1, examined: 1, bytes_read: 1, bytes_new: 1, bytes_stored: 1, bytes_total: 1, frozen_ms: 0, lag_ms: null },
      last_error: { time: new Date(Date.now() + 1000).toISOString(), message: `cannot read ${MARKUP(5)}`, code: 'LB_ERR_IO' },
    },
  ],
  missing: [MARKUP(6)],
  peers: [
    {
      name: 'b', address: MARKUP(7), id: 'c'.repeat(64), push: true, state: 'retrying', pending: 1, lag_s: 5, recovery_points: null,
      last_attempt: now, last_success: null, last_error: MARKUP(8), failures: 3, next_retry: now, bytes_sent_total: 0, last_push: null,
      replica: { snapshots: 1, newest: now, last_received: now },
    },
  ],
  targets: [],
  drills: { schedule: null, next_run: null, last: [{ source: 'b', at: now, ok: false, duration_ms: 1, result: null, error: MARKUP(9) }], history: { b: [{ at: now, ok: false, duration_ms: 1, error: MARKUP(10) }] } },
  retention: { schedule: '30 3 * * *', next_run: null, policy: null, last_run: null, last_error: null },
  notes: [],
};

let browser: Browser;
let server: http.Server;

describe.skipIf(!CHROMIUM)('the console against hostile strings', () => {
  beforeAll(async () => {
    const endpoints = {
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      health: () => ({ ok: true, reasons: [] }),
      status: () => status,
      history: () => ({ volumes: {} }),
      plan: async () => ({ blockers: [MARKUP(11)], containers: [], volumes: [], images: [], warnings: [MARKUP(12)], at: null }),
    };
    server = await listen('127.0.0.1:0', handler(endpoints, captureLog().log, new Access({ token: undefined })));
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
    if (server) await closeServer(server);
  });

  it('shows markup from names, errors and plans as text, and runs none of it', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://${boundAddress(server)}/`);
    const row = page.locator('tr[data-volume="data"]');
    await row.waitFor();
    expect(await row.textContent()).toContain(`cannot read ${MARKUP(5)}`);
    expect(await page.textContent('#host')).toBe(MARKUP(2));
    expect(await page.textContent('#verdict')).toContain(MARKUP(6));
    expect(await page.locator('tr[data-peer="b"]').textContent()).toContain(MARKUP(8));
    await page.locator('tr[data-source="b"]').getByRole('button', { name: 'Recovery plan' }).click();
    await expect.poll(() => page.textContent('#plan-body')).toContain(MARKUP(11));
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.locator('body script').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(errors).toEqual([]);
  });
});
