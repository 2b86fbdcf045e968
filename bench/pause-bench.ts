// How long a container labelled lifeboat.pause-during-backup stays frozen per backup, while it
// keeps rewriting 64 KiB blocks of a large file in place (as a database does its table files).
//
//   node bench/pause-bench.ts [--size-mib 1024] [--backups 10] [--fs ext4|xfs] [--lifeboat bin/lifeboat]
//
// --fs xfs makes a loop-mounted XFS (reflink=1) under /tmp, runs a second dockerd whose data root is
// there, and points [backup] capture_dir at it, so the copies are reflinks. --lifeboat runs another
// build (an older checkout, for a before/after in one sitting). Needs root and a running Docker
// engine for ext4. A report, not a test: it prints a table and exits 0.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { busyboxImage, cleanup, DEFAULT_SOCKET, ensureEngine, startSecondEngine, TEST_LABELS, testSpec, uniqueName } from '../test/docker/harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    backups: { type: 'string', default: '10' },
    fs: { type: 'string', default: 'ext4' },
    lifeboat: { type: 'string', default: path.join(ROOT, 'bin', 'lifeboat') },
  },
});
const SIZE = Number(values['size-mib']) * 1024 * 1024;
const BACKUPS = Number(values.backups);
const BLOCKS = SIZE / 65536;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lifeboat-pause-'));
const teardown: (() => Promise<void> | void)[] = [];

async function engineSocket(): Promise<{ socket: string; captureDir?: string }> {
  if (values.fs !== 'xfs') return { socket: DEFAULT_SOCKET };
  const image = path.join(work, 'xfs.img');
  const mnt = path.join(work, 'xfs');
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', `${Math.ceil((SIZE * 3) / 2 ** 30) + 2}G`, image]);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
  execFileSync('mount', ['-o', 'loop', image, mnt]);
  teardown.push(() => void spawnSync('umount', ['-l', mnt]));
  const engine = await startSecondEngine(path.join(mnt, 'engine'));
  teardown.push(() => engine.stop());
  const captureDir = path.join(mnt, 'capture');
  fs.mkdirSync(captureDir);
  return { socket: engine.socket, captureDir };
}

function lifeboat(config: string, ...args: string[]): Record<string, unknown> {
  const r = spawnSync(values.lifeboat!, ['--config', config, '--json', ...args], { encoding: 'utf8', env: { ...process.env, LIFEBOAT_PASSWORD: 'bench' } });
  if (r.status !== 0) throw new Error(`lifeboat ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const quantile = (xs: readonly number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};

async function main(): Promise<void> {
  const { socket, captureDir } = await engineSocket();
  const engine = await ensureEngine(socket);
  const image = await busyboxImage(socket);
  const name = uniqueName('pause');
  const { mountpoint } = await engine.createVolume(name, { labels: { ...TEST_LABELS } });
  const fd = fs.openSync(path.join(mountpoint, 'big'), 'w');
  for (let at = 0; at < SIZE; at += 16 << 20) fs.writeSync(fd, crypto.randomBytes(Math.min(16 << 20, SIZE - at)));
  fs.closeSync(fd);
  fs.writeFileSync(path.join(mountpoint, 'small'), 'a small file');
  // a write of one block every 50 ms, spread over the file, as a database's checkpoints do
  const writer = `i=0; while true; do dd if=/dev/urandom of=/data/big bs=65536 count=1 seek=$(( (i * 7919) % ${BLOCKS} )) conv=notrunc 2>/dev/null; i=$((i+1)); sleep 0.05; done`;
  const id = await engine.createContainer(
    testSpec({ name, image, cmd: ['sh', '-c', writer], mounts: [{ type: 'volume', name, source: '', destination: '/data', readOnly: false }], labels: { 'lifeboat.pause-during-backup': 'true' } }),
  );
  await engine.start(id);
  teardown.push(() => cleanup(socket));

  const config = path.join(work, 'lifeboat.toml');
  const toml = [
    '[agent]',
    `state_dir = ${JSON.stringify(path.join(work, 'state'))}`,
    '[repository]',
    `path = ${JSON.stringify(path.join(work, 'repo'))}`,
    '[docker]',
    `host = ${JSON.stringify(`unix://${socket}`)}`,
    ...(captureDir ? ['[backup]', `capture_dir = ${JSON.stringify(captureDir)}`] : []),
  ];
  fs.writeFileSync(config, `${toml.join('\n')}\n`);
  lifeboat(config, 'init');

  const rows: { pause: number; seconds: number; read: number }[] = [];
  for (let i = 0; i <= BACKUPS; i++) {
    const r = lifeboat(config, 'backup', name);
    const containers = r.containers as { ms: number }[];
    rows.push({ pause: containers[0]!.ms, seconds: (r.duration_ms as number) / 1000, read: r.bytes_read as number });
  }
  const [first, ...rest] = rows;
  const pauses = rest.map((r) => r.pause);
  const cpu = execFileSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], { encoding: 'utf8' }).trim();
  const version = spawnSync(values.lifeboat!, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`\npause-during-backup, ${values['size-mib']} MiB file rewritten in place (a 64 KiB block every 50 ms), ${values.fs}, lifeboat ${version} (${values.lifeboat}), ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} x ${cpu}\n`);
  console.log('| backup | paused (ms) | backup (s) | read (MiB) |');
  console.log('|---|---:|---:|---:|');
  console.log(`| first (the whole file) | ${first!.pause} | ${first!.seconds.toFixed(2)} | ${(first!.read / 2 ** 20).toFixed(1)} |`);
  const med = (f: (r: (typeof rows)[number]) => number) => quantile(rest.map(f), 0.5);
  console.log(`| next ${rest.length}: median | ${med((r) => r.pause)} | ${med((r) => r.seconds).toFixed(2)} | ${(med((r) => r.read) / 2 ** 20).toFixed(1)} |`);
  console.log(`| next ${rest.length}: p99 / max pause | ${quantile(pauses, 0.99)} / ${Math.max(...pauses)} | | |`);
}

try {
  await main();
} finally {
  for (const f of teardown.reverse()) await Promise.resolve(f()).catch((err: unknown) => console.error(`teardown: ${(err as Error).message}`));
  fs.rmSync(work, { recursive: true, force: true });
}
