/**
 * Helpers for tests against a real dockerd. Nothing here pulls: the test image
 * is imported from a root filesystem of the host's static busybox.
 *
 * Everything a test creates carries TEST_LABEL ("lifeboat.test=<run id>");
 * cleanup() removes this run's objects and those of earlier runs whose process
 * is gone. Containers run with network none.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DockerodeEngine } from '../../src/docker/dockerode-engine.ts';
import type { ContainerSpec } from '../../src/docker/engine.ts';
import { ENGINE_DEFAULTS } from '../../src/docker/runtime.ts';

export const DEFAULT_SOCKET = '/var/run/docker.sock';
export const TEST_LABEL_KEY = 'lifeboat.test';
/** pid-random: the pid lets cleanup() recognise leftovers of dead runs. */
export const TEST_RUN_ID = `${process.pid}-${randomBytes(4).toString('hex')}`;
export const TEST_LABEL = `${TEST_LABEL_KEY}=${TEST_RUN_ID}`;
export const TEST_LABELS: Readonly<Record<string, string>> = { [TEST_LABEL_KEY]: TEST_RUN_ID };

export const BUSYBOX_TAG = 'lifeboat-test/busybox:1';
const BUSYBOX_APPLETS = ['sh', 'sleep', 'echo', 'cat', 'mkdir', 'touch', 'dd', 'sync', 'true', 'false', 'ls', 'rm', 'wc', 'head', 'date'];
/**
 * Our busybox image's Comment (the import message) names its applets, so an
 * older build under the same tag is replaced. Not a label: containers inherit
 * image labels, and the conformance suite compares them exactly.
 */
const BUSYBOX_MARK = `lifeboat test busybox: ${BUSYBOX_APPLETS.join(',')}`;

/** A connected engine; fails the test with a clear message when no dockerd answers. */
export async function ensureEngine(socket = DEFAULT_SOCKET): Promise<DockerodeEngine> {
  const engine = new DockerodeEngine({ endpoint: { kind: 'unix', path: socket } });
  try {
    await engine.ping();
  } catch (err) {
    throw new Error(
      `These tests need a running Docker engine at unix://${socket} and none answered (${(err as Error).message}). ` +
        `Start one as root: nohup /usr/sbin/dockerd >/tmp/dockerd.log 2>&1 &  (.ci/run does this).`,
    );
  }
  return engine;
}

/** A container spec with test defaults: busybox, network none, the test label. */
export function testSpec(over: Partial<ContainerSpec> & { name: string }): ContainerSpec {
  return {
    image: BUSYBOX_TAG,
    env: [],
    cmd: ['sleep', '600'],
    entrypoint: null,
    workingDir: '',
    user: '',
    hostname: '',
    exposedPorts: [],
    portBindings: [],
    mounts: [],
    restartPolicy: { name: 'no', maximumRetryCount: 0 },
    networkMode: 'none',
    networks: [],
    links: [],
    stopSignal: null,
    healthcheck: null,
    runtime: ENGINE_DEFAULTS,
    ...over,
    labels: { ...over.labels, ...TEST_LABELS },
  };
}

/** A name unique to this run, for containers and volumes. */
export function uniqueName(prefix: string): string {
  return `lbt-${prefix}-${randomBytes(4).toString('hex')}`;
}

// ---- raw Engine API over the socket (for what DockerEngine does not offer) ---

export interface ApiResponse {
  readonly status: number;
  readonly body: string;
}

export function api(socket: string, method: string, urlPath: string, body?: Readable | string | object): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const isStream = typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function';
    const payload = body === undefined || isStream ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(
      {
        socketPath: socket,
        method,
        path: urlPath,
        headers: isStream
          ? { 'Content-Type': 'application/x-tar' }
          : payload !== undefined
            ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }
            : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (isStream) (body as Readable).pipe(req);
    else req.end(payload);
  });
}

async function apiOk(socket: string, method: string, urlPath: string, body?: Readable | string | object): Promise<string> {
  const res = await api(socket, method, urlPath, body);
  if (res.status >= 300) throw new Error(`${method} ${urlPath}: HTTP ${res.status}: ${res.body.trim()}`);
  // Streamed answers (import) report errors inside the body.
  for (const line of res.body.split('\n')) {
    if (line.includes('"errorDetail"')) throw new Error(`${method} ${urlPath}: ${line}`);
  }
  return res.body;
}

/**
 * `docker import` through the Engine API: the tree under rootDir becomes a
 * one-layer image tagged `tag`, with Dockerfile-style `changes` (CMD, LABEL...).
 * Returns the image id.
 */
export async function importImage(
  socket: string,
  rootDir: string,
  tag: string,
  changes: readonly string[] = [],
  message = '',
): Promise<string> {
  const [repo, t] = [tag.slice(0, tag.lastIndexOf(':')), tag.slice(tag.lastIndexOf(':') + 1)];
  const q = new URLSearchParams({ fromSrc: '-', repo, tag: t, message });
  for (const c of changes) q.append('changes', c);
  const tar = spawn('tar', ['-C', rootDir, '--numeric-owner', '--owner=0', '--group=0', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number>((resolve) => tar.on('close', (code) => resolve(code ?? -1)));
  await apiOk(socket, 'POST', `/images/create?${q}`, tar.stdout);
  if ((await exited) !== 0) throw new Error(`tar of ${rootDir} failed`);
  const info = JSON.parse(await apiOk(socket, 'GET', `/images/${encodeURIComponent(tag)}/json`)) as { Id: string };
  return info.Id;
}

/** `docker rmi` (force removes it even when tagged several times). */
export async function removeImage(socket: string, ref: string, force = false): Promise<void> {
  await apiOk(socket, 'DELETE', `/images/${encodeURIComponent(ref)}?force=${force ? 1 : 0}`);
}

/** A small image of its own (one file), labelled for cleanup; returns its id. */
export async function makeTinyImage(socket: string, tag: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-img-'));
  try {
    await fsp.writeFile(path.join(dir, 'hello.txt'), `made for ${tag}\n`);
    return await importImage(socket, dir, tag, [`LABEL ${TEST_LABEL_KEY}=${TEST_RUN_ID}`]);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

let busyboxBuilt: Promise<string> | undefined;

/**
 * The test image lifeboat-test/busybox:1 (built once per engine and kept
 * between runs): /bin/busybox with its applets linked, CMD /bin/sh. Returns
 * the tag. Not labelled with TEST_LABEL, so cleanup() keeps it.
 */
export function busyboxImage(socket = DEFAULT_SOCKET): Promise<string> {
  if (socket === DEFAULT_SOCKET) return (busyboxBuilt ??= buildBusybox(socket));
  return buildBusybox(socket);
}

async function busyboxCurrent(socket: string): Promise<{ ok: boolean; oldId?: string }> {
  const current = await api(socket, 'GET', `/images/${encodeURIComponent(BUSYBOX_TAG)}/json`);
  if (current.status !== 200) return { ok: false };
  const info = JSON.parse(current.body) as { Id: string; Comment?: string };
  return info.Comment === BUSYBOX_MARK ? { ok: true } : { ok: false, oldId: info.Id };
}

async function buildBusybox(socket: string): Promise<string> {
  if ((await busyboxCurrent(socket)).ok) return BUSYBOX_TAG;
  // Test files run in parallel processes: one builds, the others wait for it.
  return withLock(`lifeboat-test-busybox-${createHash('sha256').update(socket).digest('hex').slice(0, 12)}.lock`, async () => {
    const current = await busyboxCurrent(socket);
    if (!current.ok) await importBusybox(socket, current.oldId);
    return BUSYBOX_TAG;
  });
}

async function importBusybox(socket: string, oldId: string | undefined): Promise<void> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
  if (!busybox) throw new Error('the real-engine tests need a static busybox at /bin/busybox (Debian package busybox-static)');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-busybox-'));
  try {
    for (const d of ['bin', 'tmp', 'etc', 'data']) await fsp.mkdir(path.join(dir, d));
    await fsp.chmod(path.join(dir, 'tmp'), 0o1777);
    await fsp.copyFile(busybox, path.join(dir, 'bin', 'busybox'));
    await fsp.chmod(path.join(dir, 'bin', 'busybox'), 0o755);
    for (const applet of BUSYBOX_APPLETS) await fsp.symlink('busybox', path.join(dir, 'bin', applet));
    await fsp.writeFile(path.join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n');
    await fsp.writeFile(path.join(dir, 'etc', 'group'), 'root:x:0:\n');
    await importImage(socket, dir, BUSYBOX_TAG, ['CMD ["/bin/sh"]'], BUSYBOX_MARK);
    // The older build, now untagged: remove it unless something still uses it.
    if (oldId) await api(socket, 'DELETE', `/images/${oldId}`).catch(() => undefined);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** A lock between processes: a directory in the temp dir (taken over when older than a minute). */
async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(os.tmpdir(), name);
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 60_000) fs.rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

// ---- cleanup ----------------------------------------------------------------

function isOurs(runId: string | undefined): boolean {
  if (runId === undefined) return false;
  if (runId === TEST_RUN_ID) return true;
  // Leftovers of a run whose process is gone.
  const pid = Number(runId.split('-')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Removes containers, volumes and images labelled by this run (or by dead runs). */
export async function cleanup(socket = DEFAULT_SOCKET): Promise<void> {
  const filter = encodeURIComponent(JSON.stringify({ label: [TEST_LABEL_KEY] }));
  const containers = JSON.parse(await apiOk(socket, 'GET', `/containers/json?all=1&filters=${filter}`)) as { Id: string; Labels: Record<string, string> }[];
  for (const c of containers) {
    if (isOurs(c.Labels[TEST_LABEL_KEY])) await api(socket, 'DELETE', `/containers/${c.Id}?force=1&v=1`);
  }
  const volumes = JSON.parse(await apiOk(socket, 'GET', `/volumes?filters=${filter}`)) as { Volumes: { Name: string; Labels: Record<string, string> | null }[] | null };
  for (const v of volumes.Volumes ?? []) {
    if (isOurs(v.Labels?.[TEST_LABEL_KEY])) await api(socket, 'DELETE', `/volumes/${encodeURIComponent(v.Name)}?force=1`);
  }
  const images = JSON.parse(await apiOk(socket, 'GET', `/images/json?filters=${filter}`)) as { Id: string; Labels: Record<string, string> | null }[];
  for (const i of images) {
    if (isOurs(i.Labels?.[TEST_LABEL_KEY])) await api(socket, 'DELETE', `/images/${i.Id}?force=1`);
  }
}

// ---- a second engine --------------------------------------------------------

export interface SecondEngine {
  readonly socket: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts another dockerd with its state under `dir` (data-root, exec-root,
 * pidfile, socket), no bridge and no iptables, and waits until it answers.
 * Calling it again on the same directory restarts that engine with its state.
 * stop() takes as long as the daemon takes to stop its running containers
 * (each container's stop timeout, 10 s by default): give test containers a
 * TERM trap, or stop them first.
 */
export async function startSecondEngine(dir: string, opts: { timeoutMs?: number; extraArgs?: readonly string[] } = {}): Promise<SecondEngine> {
  const root = path.resolve(dir);
  await fsp.mkdir(root, { recursive: true });
  const socket = path.join(root, 'docker.sock');
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => fs.existsSync(p)) ?? 'dockerd';
  const log = fs.openSync(path.join(root, 'dockerd.log'), 'a');
  const child = spawn(
    dockerd,
    [
      '--data-root', path.join(root, 'data'),
      '--exec-root', path.join(root, 'exec'),
      '--pidfile', path.join(root, 'docker.pid'),
      '-H', `unix://${socket}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      ...(opts.extraArgs ?? []),
    ],
    { stdio: ['ignore', log, log], detached: true },
  );
  fs.closeSync(log);
  let exitCode: number | null = null;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exitCode = code ?? -1;
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (exitCode !== null || child.pid === undefined) return;
    child.kill('SIGTERM');
    const gone = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!gone) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      await exited;
    }
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (exitCode !== null) {
      throw new Error(`the second dockerd exited with ${exitCode}; see ${path.join(root, 'dockerd.log')}:\n${tailOf(path.join(root, 'dockerd.log'))}`);
    }
    const res = await api(socket, 'GET', '/_ping').catch(() => undefined);
    if (res?.status === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the second dockerd did not answer within ${opts.timeoutMs ?? 30_000} ms:\n${tailOf(path.join(root, 'dockerd.log'))}`);
    }
    await sleep(100);
  }
  return { socket, pid: child.pid!, stop };
}

function tailOf(file: string): string {
  try {
    return execFileSync('tail', ['-n', '20', file], { encoding: 'utf8' });
  } catch {
    return '';
  }
}
