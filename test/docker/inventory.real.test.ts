/**
 * Inventory and history against real dockerd: a container recreated with a
 * new image on the shared engine, and a watcher that lives through dockerd
 * being SIGKILLed and restarted on a second engine of its own (the shared one
 * serves the other test files meanwhile).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AgentCatalog, HistoryRow } from '../../src/catalog/agent-catalog.ts';
import { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import type { DockerEngine } from '../../src/docker/engine.ts';
import { reconcile } from '../../src/inventory/sync.ts';
import { duplicates, engineAndCatalog, openCatalog } from '../../src/docker/testing/inventory-fixture.ts';
import { InventoryWatcher, type ReconciledEvent } from '../../src/inventory/events.ts';
import { EngineUnavailableError } from '../../src/errors/errors.ts';
import {
  busyboxImage,
  cleanup,
  DEFAULT_SOCKET,
  ensureEngine,
  importImage,
  type SecondEngine,
  startSecondEngine,
  TEST_LABEL_KEY,
  TEST_LABELS,
  TEST_RUN_ID,
  testSpec,
  uniqueName,
} from './harness.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);
const log = pino({ level: 'silent' });
/** Containers die at once when dockerd stops them (sleep as PID 1 ignores SIGTERM: 10 s each otherwise). */
const quick = { stopSignal: 'SIGKILL' } as const;

/** A busybox image of our own, labelled for cleanup, with a CMD of its own so its id differs from the shared one. */
async function importBusybox(socket: string, tag: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-inv-img-'));
  try {
    const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
    if (!busybox) throw new Error('needs a static busybox at /bin/busybox (Debian package busybox-static)');
    await fsp.mkdir(path.join(dir, 'bin'));
    await fsp.copyFile(busybox, path.join(dir, 'bin', 'busybox'));
    await fsp.chmod(path.join(dir, 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'sleep']) await fsp.symlink('busybox', path.join(dir, 'bin', applet));
    return await importImage(socket, dir, tag, ['CMD ["/bin/sleep", "600"]', 'ENV PATH=/bin', `LABEL ${TEST_LABEL_KEY}=${TEST_RUN_ID}`]);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

function nextReconcile(w: InventoryWatcher, reason: string): Promise<ReconciledEvent> {
  return new Promise((resolve) => {
    const on = (r: ReconciledEvent) => {
      if (r.full && r.reason === reason) {
        w.off('reconciled', on);
        resolve(r);
      }
    };
    w.on('reconciled', on);
  });
}

const actionsOf = (rows: readonly HistoryRow[], object: string) => rows.filter((r) => r.object === object).map((r) => r.action);

describe('inventory on the shared dockerd', () => {
  let engine: DockerodeEngine;
  let tmp: string;
  let catalog: AgentCatalog;

  beforeAll(async () => {
    engine = await ensureEngine(DEFAULT_SOCKET);
    await busyboxImage(DEFAULT_SOCKET);
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-inv-'));
    catalog = openCatalog(tmp);
  });

  afterAll(async () => {
    catalog?.close();
    await cleanup(DEFAULT_SOCKET);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('records nothing when a file is written into a volume (the local driver moves its CreatedAt)', async () => {
    const volume = uniqueName('written');
    await reconcile(engine, catalog);
    const v = await engine.createVolume(volume, { labels: { ...TEST_LABELS } });
    await reconcile(engine, catalog);
    const before = (await engine.inspectVolume(volume))!.created;
    // CreatedAt has one-second resolution: write until it moves (it is the _data directory's mtime)
    for (let i = 0; (await engine.inspectVolume(volume))!.created === before; i++) {
      fs.writeFileSync(path.join(v.mountpoint, `f${i}`), 'x');
      await new Promise((r) => setTimeout(r, 250));
    }
    await reconcile(engine, catalog);
    expect(actionsOf(catalog.history({ kind: 'volume' }), volume)).toEqual(['created']);
    await engine.removeVolume(volume);
  });

  it('records a container recreated with a new image, with both image ids, once; the CLI shows it', async () => {
    const oldImage = (await engine.inspectImage(testSpec({ name: 'x' }).image))!.id;
    const tag = `lifeboat-test/inv-${uniqueName('img').slice(4)}:2`;
    const newImage = await importBusybox(DEFAULT_SOCKET, tag);
    expect(newImage).not.toBe(oldImage);
    const name = uniqueName('web');
    const volume = uniqueName('data');
    const mounts = [{ type: 'volume' as const, name: volume, source: '', destination: '/data', readOnly: false }];

    await reconcile(engine, catalog);
    await engine.createVolume(volume, { labels: { ...TEST_LABELS } });
    const v1 = await engine.createContainer(testSpec({ name, mounts, ...quick }));
    await engine.start(v1);
    await reconcile(engine, catalog);
    // docker compose up with a new image: the old container goes, a new one takes its name
    await engine.removeContainer(v1, { force: true });
    const v2 = await engine.createContainer(testSpec({ name, image: tag, mounts, ...quick }));
    await engine.start(v2);
    await reconcile(engine, catalog);
    // other test files share this engine: nothing of ours may be recorded twice by later looks
    await reconcile(engine, catalog);

    const history = catalog.history({ kind: 'container' });
    expect(actionsOf(history, v1)).toEqual(['created', 'removed']);
    expect(actionsOf(history, v2)).toEqual(['recreated']);
    const recreated = history.find((h) => h.object === v2)!;
    expect(recreated).toMatchObject({
      name,
      detail: { previous_id: v1, previous_image_id: oldImage, image_id: newImage, image: tag, image_changed: true },
    });
    const volumeHistory = catalog.history({ kind: 'volume', object: volume }).map((h) => `${h.action} ${String(h.detail.container_id ?? '')}`);
    expect(volumeHistory).toEqual(['created ', `mounted-by ${v1}`, `unmounted-by ${v1}`, `mounted-by ${v2}`]);
    expect(catalog.container(v2)).toMatchObject({ state: 'running', imageId: newImage });
    expect(catalog.volume(volume)?.mountpoint).toBe((await engine.inspectVolume(volume))!.mountpoint);

    // lifeboat inventory containers --history --json, through the CLI on the same catalog
    const config = path.join(tmp, 'lifeboat.toml');
    await fsp.writeFile(config, `[agent]\nstate_dir = ${JSON.stringify(path.join(tmp, 'state'))}\n[docker]\nhost = "unix://${DEFAULT_SOCKET}"\n`);
    const { stdout } = await run(path.join(ROOT, 'bin/lifeboat'), ['--config', config, '--json', 'inventory', 'containers', '--history']);
    const rows = (JSON.parse(stdout) as HistoryRow[]).filter((h) => h.name === name);
    expect(rows.map((h) => h.action)).toEqual(['created', 'removed', 'recreated']);
    expect(rows[2]!.detail).toMatchObject({ previous_image_id: oldImage, image_id: newImage });
    const text = (await run(path.join(ROOT, 'bin/lifeboat'), ['--config', config, 'inventory', 'containers', '--history'])).stdout;
    expect(text).toMatch(new RegExp(`${name}\\s+recreated\\s+image .*\\(${oldImage.slice(7, 19)}\\) -> ${tag} \\(${newImage.slice(7, 19)}\\)`));
  });
});

describe('a watcher through dockerd being killed and restarted', () => {
  let dir: string;
  let engines: SecondEngine[] = [];
  let catalog: AgentCatalog | undefined;
  let watcher: InventoryWatcher | undefined;

  afterAll(async () => {
    await watcher?.stop();
    catalog?.close();
    for (const e of engines.reverse()) await e.stop();
    if (dir) {
      // a SIGKILLed dockerd leaves its data-root mount behind
      for (let i = 0; i < 5; i++) {
        if (!fs.readFileSync('/proc/self/mounts', 'utf8').includes(` ${path.join(dir, 'data')} `)) break;
        await run('umount', [path.join(dir, 'data')]).catch(() => undefined);
      }
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  });

  /** SIGKILL the daemon (its pid from the pidfile) and wait until it is gone; then start it again on the same state. */
  async function killDockerd(): Promise<void> {
    const pid = Number(fs.readFileSync(path.join(dir, 'docker.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const gone = () => !fs.existsSync(`/proc/${pid}`) || /\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    await vi.waitFor(() => expect(gone()).toBe(true), { timeout: 10_000, interval: 20 });
    // its containerd died with it but may linger as a zombie whose pid a new dockerd would wait on
    fs.rmSync(path.join(dir, 'exec', 'containerd', 'containerd.pid'), { force: true });
  }

  it('loses no change and records none twice', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-inv-engine-'));
    engines.push(await startSecondEngine(dir));
    const socket = engines[0]!.socket;
    await busyboxImage(socket);
    const real = new DockerodeEngine({ endpoint: { kind: 'unix', path: socket } });

    // the watcher reaches the engine through a gate, so the test can keep it away for a moment
    let held = false;
    const gated = new Proxy(real, {
      get(target, prop) {
        if (prop === 'ping') {
          return async () => {
            if (held) throw new EngineUnavailableError('held by the test');
            return target.ping();
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as DockerEngine;

    const volA = uniqueName('va');
    const volB = uniqueName('vb');
    await real.createVolume(volA, { labels: { ...TEST_LABELS } });
    const mounts = [{ type: 'volume' as const, name: volA, source: '', destination: '/data', readOnly: false }];
    const plain = await real.createContainer(testSpec({ name: uniqueName('plain'), mounts, ...quick }));
    const always = await real.createContainer(testSpec({ name: uniqueName('always'), restartPolicy: { name: 'always', maximumRetryCount: 0 }, ...quick }));
    const doomed = await real.createContainer(testSpec({ name: uniqueName('doomed'), ...quick }));
    for (const id of [plain, always, doomed]) await real.start(id);

    catalog = openCatalog(dir);
    watcher = new InventoryWatcher({ engine: gated, catalog, log, backoff: { initialMs: 100, maxMs: 400 } });
    const started = nextReconcile(watcher, 'start');
    watcher.start();
    await started;
    const cat = catalog;
    const w = watcher;

    // 1. dockerd is killed; it comes back, and before the watcher gets through, things change
    held = true;
    await killDockerd();
    await vi.waitFor(() => expect(w.state.connected).toBe(false), { timeout: 10_000 });
    engines.push(await startSecondEngine(dir));
    await real.removeContainer(doomed, { force: true });
    const fresh = await real.createContainer(testSpec({ name: uniqueName('fresh'), ...quick }));
    await real.start(fresh);
    await real.createVolume(volB, { labels: { ...TEST_LABELS } });
    const reconnected = nextReconcile(w, 'reconnect');
    held = false;
    const r1 = await reconnected;
    const changed1 = r1.changes.map((c) => `${c.action} ${c.object}`);
    expect(changed1).toEqual(
      expect.arrayContaining([`removed ${doomed}`, `created ${fresh}`, `created ${volB}`, `state-changed ${plain}`]),
    );
    // the restart stopped `plain` (no restart policy) and restarted `always`
    expect(cat.container(plain)?.state).toBe('exited');
    expect(cat.container(always)?.state).toBe('running');

    // 2. killed again; this time the watcher races the changes made right after the restart
    await killDockerd();
    await vi.waitFor(() => expect(w.state.connected).toBe(false), { timeout: 10_000 });
    engines.push(await startSecondEngine(dir));
    await real.removeContainer(fresh, { force: true });
    await real.removeVolume(volB);
    const late = await real.createContainer(testSpec({ name: uniqueName('late'), mounts, ...quick }));
    await vi.waitFor(() => expect(w.state.connected).toBe(true), { timeout: 10_000 });
    await vi.waitFor(() => expect(cat.container(late)).toBeDefined(), { timeout: 10_000 });
    await vi.waitFor(() => expect(cat.volume(volB)?.removedAt).not.toBeNull(), { timeout: 10_000 });

    // the catalog is the engine's state, and every change is there exactly once
    await w.reconcileNow();
    const { engine: e, catalog: k } = await engineAndCatalog(real, cat);
    expect(k).toEqual(e);
    const history = cat.history();
    expect(duplicates(history)).toEqual([]);
    expect(actionsOf(history, doomed)).toEqual(['discovered', 'removed']);
    // whether the watcher saw `fresh` stopped by the restart before it was removed depends on who was first
    expect(actionsOf(history, fresh).filter((a) => a !== 'state-changed')).toEqual(['created', 'removed']);
    expect(actionsOf(history, fresh).filter((a) => a === 'state-changed').length).toBeLessThanOrEqual(1);
    expect(actionsOf(history, late)).toEqual(['created']);
    expect(actionsOf(history, volB)).toEqual(['created', 'removed']);
    expect(actionsOf(history, plain).filter((a) => a === 'state-changed')).toHaveLength(1);
    expect(history.filter((h) => h.kind === 'volume' && h.object === volA && h.detail.container_id === late).map((h) => h.action)).toEqual(['mounted-by']);
    expect(w.state.reconnects).toBe(2);
    expect((await reconcile(real, cat)).changes).toEqual([]);
  });
});
