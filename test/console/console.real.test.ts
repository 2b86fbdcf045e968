/**
 * The console in a real browser (Debian's headless Chromium, driven by
 * playwright-core) against real agents on the real engine: host a (behind a
 * token) backs a volume up and pushes to peer b, which holds a's replica.
 * A person signs in, reads the volume, its RPO and the peer, backs up now
 * and sees the new snapshot; b's console shows the replica, its recovery
 * plan and a drill; a page of another origin cannot make a back up.
 * With LIFEBOAT_SCREENSHOTS=DIR the pages are saved there (the README's).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import { type Daemon, until } from '../agent/daemon.ts';
import { cleanup as cleanupDirs } from '../cli/run.ts';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec, uniqueName } from '../docker/harness.ts';
import { type AgentSetup, Fleet, makeAgent, status, type TestAgent, writeConfig } from '../replicate/agents.ts';

const CHROMIUM = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TOKEN = 'console-test-token-4f1c9a';
const SHOTS = process.env.LIFEBOAT_SCREENSHOTS;

let engine: DockerodeEngine;
let browser: Browser;
let a: TestAgent & { setup: AgentSetup };
let b: TestAgent & { setup: AgentSetup };
let agentA: Daemon;
let agentB: Daemon;
const volume = uniqueName('console');
const fleet = new Fleet();

async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  await fsp.mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

describe('the console', () => {
  it('has Chromium to run in when CI runs', () => {
    if (process.env.CI) expect(CHROMIUM, 'CI must install Debian\'s chromium').toBeDefined();
  });
});

describe.skipIf(!CHROMIUM)('the console in Chromium, against real agents', () => {
  beforeAll(async () => {
    engine = await ensureEngine();
    await engine.createVolume(volume, { labels: { ...TEST_LABELS } });
    const id = await engine.createContainer(
      testSpec({
        name: uniqueName('console-app'),
        image: await busyboxImage(),
        cmd: ['sh', '-c', 'head -c 3000000 /dev/urandom > /data/app.bin; trap "exit 0" TERM; sleep 600 & wait'],
        mounts: [{ type: 'volume', name: volume, source: '', destination: '/data', readOnly: false }],
      }),
    );
    await engine.start(id);
    a = await makeAgent('a', { token: TOKEN, extra: `[[volume]]\nname = ${JSON.stringify(volume)}\nschedule = "0 * * * *"` });
    b = await makeAgent('b');
    const aPassword = path.join(b.dir, 'a.password');
    await fsp.writeFile(aPassword, a.password, { mode: 0o600 });
    await writeConfig(a, [{ agent: b }]);
    await writeConfig(b, [{ agent: a, push: false, passwordFile: aPassword }]);
    agentA = fleet.start(a);
    agentB = fleet.start(b);
    await until('agent a tracking the volume', async () => (await status(agentA)).volumes.some((v) => v.name === volume), { daemon: agentA });
    await until('agent b answering', () => status(agentB), { daemon: agentB });
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: FLAGS });
  });

  afterAll(async () => {
    await browser?.close();
    await fleet.stopAll();
    await cleanup();
    await cleanupDirs();
  });

  it('signs in, shows the volume with its RPO and the peer, backs up now on confirmation and shows the new snapshot', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://${a.http}/`);
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    await page.fill('#token', 'not the token');
    await page.click('#sign-in button[type=submit]');
    await expect.poll(() => page.textContent('#sign-in-error')).toBe('Wrong token');
    await page.fill('#token', TOKEN);
    await page.click('#sign-in button[type=submit]');

    const row = page.locator(`tr[data-volume="${volume}"]`);
    await row.waitFor();
    expect(await row.locator('[data-rpo]').getAttribute('data-rpo')).toBe('grey');
    expect(await row.locator('[data-rpo]').textContent()).toBe('none yet / 60 min');
    const peerRow = page.locator('tr[data-peer="b"]');
    await peerRow.waitFor();
    expect(await peerRow.textContent()).toContain(b.replication);

    // cancelling asks nothing of the agent
    await row.getByRole('button', { name: 'Back up now' }).click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    expect(await page.textContent('#confirm-text')).toBe(`Back up volume ${volume} now?`);
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect((await status(agentA)).volumes.find((v) => v.name === volume)!.last_snapshot).toBeNull();

    await row.getByRole('button', { name: 'Back up now' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    const toast = page.locator('.toast', { hasText: `Volume ${volume} backed up` });
    await toast.waitFor({ timeout: 60_000 });
    const snapshot = (await status(agentA)).volumes.find((v) => v.name === volume)!.last_snapshot!;
    expect(snapshot).not.toBeNull();
    expect(await toast.textContent()).toContain(snapshot.id.slice(0, 8));
    await expect.poll(() => row.locator('[data-rpo]').getAttribute('data-rpo')).toBe('green');
    expect(await row.textContent()).toContain(snapshot.id.slice(0, 8));
    expect(await row.textContent()).toContain('2.86 MiB');
    await expect.poll(() => page.textContent('#verdict')).toBe('All 1 volume within their RPO target');

    // the push that follows the backup reaches the peer: its lag and last success show it
    await until('the push to b', async () => (await status(agentA)).peers[0]!.last_success !== null, { daemon: agentA, timeoutMs: 60_000 });
    await expect.poll(() => peerRow.locator('td').nth(5).textContent(), { timeout: 10_000 }).toMatch(/ago$/);
    // nothing new to send: the push says so
    await peerRow.getByRole('button', { name: 'Replicate now' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.locator('.toast', { hasText: 'Replicated to b: 0 new snapshots' }).waitFor({ timeout: 60_000 });
    await page.locator(`figure[data-chart="${volume}"] polyline`).waitFor({ timeout: 40_000 });
    await shot(page, 'console.png');
    await page.close();
  });

  it('on the peer: the replica held there, its recovery plan and a drill on confirmation', async () => {
    await until('a\'s replica on b', async () => (await status(agentB)).peers.find((p) => p.name === 'a')?.replica?.snapshots, { daemon: agentB, timeoutMs: 60_000 });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://${b.http}/`);
    const row = page.locator('tr[data-source="a"]');
    await row.waitFor();
    expect(await row.textContent()).toContain('never drilled');
    await row.getByRole('button', { name: 'Recovery plan' }).click();
    await expect.poll(() => page.textContent('#plan-body'), { timeout: 60_000 }).toMatch(/container .* → |blocker/);
    expect(await page.textContent('#plan-body')).toContain(`volume ${volume}`);
    await row.getByRole('button', { name: 'Run drill' }).click();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.locator('.toast', { hasText: 'Drill of a:' }).waitFor({ timeout: 110_000 });
    await expect.poll(() => row.locator('.chip').count()).toBe(1);
    await shot(page, 'console-peer.png');
    await page.close();
  }, 240_000);

  it('a page of another origin cannot make the agent back up, signed in or not', async () => {
    const before = (await status(agentA)).volumes.find((v) => v.name === volume)!.last_snapshot!.id;
    const target = `http://${a.http}/backup?volume=${encodeURIComponent(volume)}`;
    // the attacker's page: a form posted to the agent, and a fetch without CORS
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<form id=f method=POST action="${target}"></form>
        <script>fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'X-Lifeboat-Request': '1' } }).finally(() => document.getElementById('f').submit());</script>`);
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    try {
      const context = await browser.newContext();
      const page = await context.newPage();
      // signed in first, so the browser holds a session cookie for the agent
      await page.goto(`http://${a.http}/`);
      await page.fill('#token', TOKEN);
      await page.click('#sign-in button[type=submit]');
      await page.locator(`tr[data-volume="${volume}"]`).waitFor();
      const answered = page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
      await page.goto(`http://127.0.0.1:${(evil.address() as { port: number }).port}/`);
      const response = await answered;
      expect(response.status()).toBe(403);
      await context.close();
    } finally {
      evil.close();
    }
    const s = await status(agentA);
    expect(s.volumes.find((v) => v.name === volume)!.last_snapshot!.id).toBe(before);
    expect(s.agent.jobs).toEqual({ running: null, waiting: [] });
  });
});
