// Recovery benchmark: the RTO of a container with a 1 GiB volume of 12,001 files (the repository
// benchmark's tree), recovered on this engine from a repository, and the duration of a DR drill.
//
//   node bench/recover-bench.ts [--size-mib 1024] [--seed S] [--work bench/work] [--lifeboat CMD]
//
// Needs root and a running Docker engine, and dist/ built (npm run build). The container's image
// is one of its own, removed after the backup with the container and the volume, so recovery
// loads the image, restores the volume, recreates and starts the container. Prints a Markdown
// table and writes bench/results/recover-latest.json. A report, not a test: it exits 0 once it
// has printed the report.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { cleanup as cleanupTestObjects, DEFAULT_SOCKET, ensureEngine, removeImage, TEST_LABELS, testSpec } from '../test/docker/harness.ts';
import { importBusyboxImage } from '../test/recover/rootfs.ts';
import { ensureTree } from './gen-tree.ts';
import { diffManifests, hashTree } from './lib/treehash.ts';

const BENCH_DIR = dirname(new URL(import.meta.url).pathname);
const PROJECT_DIR = dirname(BENCH_DIR);
const TARGET_S = 15;

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    seed: { type: 'string', default: 'lifeboat-bench' },
    work: { type: 'string', default: join(BENCH_DIR, 'work') },
    lifeboat: { type: 'string', default: process.env['LIFEBOAT_BIN'] ?? join(PROJECT_DIR, 'bin', 'lifeboat') },
  },
});
const sizeMib = Number(values['size-mib']);
if (!(sizeMib > 0)) throw new Error('--size-mib must be a positive number');

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);

interface Run {
  readonly code: number | null;
  readonly wallS: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI; wall time from spawn to exit. */
function lifeboat(args: readonly string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(values.lifeboat, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ code, wallS: (performance.now() - started) / 1000, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

function json<T>(what: string, r: Run): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`${what} printed no JSON (exit ${r.code}): ${r.stderr.trim()}`);
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(PROJECT_DIR, 'dist', 'cli', 'main.js'))) throw new Error('build the CLI first: npm run build');
  const engine = await ensureEngine(DEFAULT_SOCKET);
  const tree = join(values.work, 'tree');
  log(`tree ${tree} (${sizeMib} MiB)`);
  const { layout } = ensureTree(tree, { sizeMib, seed: values.seed });
  const expected = hashTree(tree);

  const id = randomBytes(4).toString('hex');
  const dir = join(values.work, `recover-${id}`);
  mkdirSync(dir, { recursive: true });
  const host = `bench-source-${id}`;
  const tag = `lifeboat-bench/recover-${id}:1`;
  const volume = `lbbench-recover-${id}`;
  const name = `lbbench-app-${id}`;
  const config = join(dir, 'lifeboat.toml');
  const repo = join(dir, 'repo');
  writeFileSync(config, `[agent]\nhost = "${host}"\nstate_dir = "${join(dir, 'state')}"\n`);
  const env = { LIFEBOAT_PASSWORD: 'bench' };
  const cli = (args: readonly string[]) => lifeboat(['--config', config, ...args, '--repo', repo, '--json'], env);

  try {
    const imageId = await importBusyboxImage(DEFAULT_SOCKET, tag, ['CMD ["/bin/sh"]']);
    const mountpoint = (await engine.createVolume(volume, { labels: { ...TEST_LABELS } })).mountpoint;
    log(`copying the tree into volume ${volume}`);
    if (spawnSync('cp', ['-a', `${tree}/.`, mountpoint]).status !== 0) throw new Error(`cp into ${mountpoint} failed`);
    const container = await engine.createContainer(
      testSpec({
        name,
        image: tag,
        cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'],
        mounts: [{ type: 'volume', name: volume, source: '', destination: '/data', readOnly: false }],
        healthcheck: { test: ['CMD-SHELL', 'test -s /data/db/data.db'], intervalNs: 1_000_000_000, timeoutNs: 5_000_000_000, retries: 3, startPeriodNs: 0 },
      }),
    );
    await engine.start(container);

    if ((await lifeboat(['init', '--repo', repo], env)).code !== 0) throw new Error('init failed');
    log('backing the volume up');
    const backup = await cli(['backup', volume]);
    if (backup.code !== 0) throw new Error(`backup failed: ${backup.stderr.trim()}`);

    // The same snapshot restored into a directory: what the volume restore alone costs on this machine now.
    log('restoring the snapshot into a directory, for comparison');
    const { snapshot } = json<{ snapshot: string }>('backup', backup);
    const plain = await lifeboat(['restore', snapshot, '--repo', repo, '--target', join(dir, 'plain'), '--json'], env);
    if (plain.code !== 0) throw new Error(`restore failed: ${plain.stderr.trim()}`);
    rmSync(join(dir, 'plain'), { recursive: true, force: true });

    log('losing the container, its volume and its image');
    await engine.removeContainer(container, { force: true });
    await engine.removeVolume(volume);
    await engine.removeImage(imageId);
    spawnSync('sync');

    log('recovering');
    const recovery = await cli(['recover', '--from', host]);
    const report = json<{ complete: boolean; rto_ms: number | null; duration_ms: number; volumes: { ms: number | null }[]; images: { ms: number | null }[] }>(
      'recover',
      recovery,
    );
    if (recovery.code !== 0 || !report.complete) throw new Error(`recover failed: ${recovery.stderr.trim()}`);
    const recovered = (await engine.inspectVolume(volume))!.mountpoint;
    const diffs = diffManifests(expected, hashTree(recovered));
    const running = (await engine.inspectContainer(name))?.state === 'running';

    log('drilling');
    const drilled = await cli(['drill', '--from', host]);
    const drill = json<{ ok: boolean; duration_ms: number; containers: { came_up: boolean | null; healthy: boolean | null; data_matched: boolean | null; up_ms: number | null }[] }>('drill', drilled);

    const rtoS = (report.rto_ms ?? Number.NaN) / 1000;
    const results = {
      date: new Date().toISOString(),
      machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
      tree: { sizeMib, files: layout.fileCount, bytes: layout.totalBytes },
      backup_s: backup.wallS,
      plain_restore_s: plain.wallS,
      recover: {
        rto_s: rtoS,
        wall_s: recovery.wallS,
        volume_restore_s: (report.volumes[0]?.ms ?? Number.NaN) / 1000,
        image_load_s: (report.images[0]?.ms ?? Number.NaN) / 1000,
        verified: diffs.length === 0,
        running,
      },
      drill: { wall_s: drilled.wallS, duration_s: drill.duration_ms / 1000, ok: drill.ok, container: drill.containers[0] },
    };
    mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
    writeFileSync(join(BENCH_DIR, 'results', 'recover-latest.json'), `${JSON.stringify(results, null, 2)}\n`);
    const c = drill.containers[0];
    const s = (n: number) => n.toFixed(2);
    process.stdout.write(
      [
        `Recovery of one container with a ${sizeMib} MiB volume of ${layout.fileCount.toLocaleString('en')} files (${results.machine})`,
        '',
        '| measure | value |',
        '| --- | ---: |',
        `| backup of the volume (for scale) | ${s(backup.wallS)} s |`,
        `| \`restore --target\` of the same snapshot (for scale) | ${s(plain.wallS)} s |`,
        `| RTO: command start to container running (image load, volume restore, create, start) | ${s(rtoS)} s |`,
        `| of which: volume restore / image load (in parallel) | ${s(results.recover.volume_restore_s)} s / ${s(results.recover.image_load_s)} s |`,
        `| recover command, wall time | ${s(recovery.wallS)} s |`,
        `| recovered data equals the source (per-file SHA-256) | ${diffs.length === 0 ? 'yes' : `NO: ${diffs.slice(0, 3).join('; ')}`} |`,
        `| drill, wall time (restore, block-for-block check, start, healthy, clean up) | ${s(drilled.wallS)} s |`,
        `| drill: came up / healthy / data matched | ${c?.came_up} / ${c?.healthy} / ${c?.data_matched} (ok: ${drill.ok}) |`,
        `| target: RTO under ${TARGET_S} s | ${rtoS < TARGET_S ? 'met' : 'missed'} |`,
        '',
      ].join('\n'),
    );
  } finally {
    await engine.removeContainer(name, { force: true }).catch(() => undefined);
    await engine.removeVolume(volume).catch(() => undefined);
    await removeImage(DEFAULT_SOCKET, tag, true).catch(() => undefined);
    await cleanupTestObjects(DEFAULT_SOCKET);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
