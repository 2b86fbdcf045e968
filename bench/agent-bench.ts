// Agent benchmark: idle footprint with 50 containers and 20 volumes, and the continuous-mode
// delay from a write in a volume to that write being in a committed snapshot.
//
//   node bench/agent-bench.ts [--volumes 20] [--containers 50] [--samples 5] [--idle-s 20]
//
// Needs a running Docker engine (as root). Prints a Markdown table and writes
// bench/results/agent-latest.json. A report, not a test: it always exits 0 after printing.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { busyboxImage, cleanup, ensureEngine, TEST_LABELS, testSpec } from '../test/docker/harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    volumes: { type: 'string', default: '20' },
    containers: { type: 'string', default: '50' },
    samples: { type: 'string', default: '5' },
    'idle-s': { type: 'string', default: '20' },
    debounce: { type: 'string', default: '1s' },
  },
});
const VOLUMES = Number(values.volumes);
const CONTAINERS = Number(values.containers);
const SAMPLES = Number(values.samples);
const IDLE_S = Number(values['idle-s']);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** RSS (KiB) and CPU ticks (user+system) of a process, from /proc. */
function sample(pid: number): { rssKiB: number; ticks: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKiB, ticks: Number(fields[11]) + Number(fields[12]) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const engine = await ensureEngine();
  const image = await busyboxImage();
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'lifeboat-agent-bench-'));
  const volumes: { name: string; mountpoint: string }[] = [];
  const tag = `${process.pid}`;
  let agent: ReturnType<typeof spawn> | undefined;
  try {
    console.error(`[bench] creating ${VOLUMES} volumes and ${CONTAINERS} containers`);
    for (let v = 0; v < VOLUMES; v++) {
      const vol = await engine.createVolume(`lbb-${tag}-v${v}`, { labels: { ...TEST_LABELS } });
      for (let f = 0; f < 200; f++) fs.writeFileSync(path.join(vol.mountpoint, `f${f}`), `volume ${v} file ${f}\n`.repeat(20));
      volumes.push({ name: vol.name, mountpoint: vol.mountpoint });
    }
    for (let c = 0; c < CONTAINERS; c++) {
      const vol = volumes[c % VOLUMES]!;
      const id = await engine.createContainer(
        testSpec({ name: `lbb-${tag}-c${c}`, image, cmd: ['sleep', '3600'], stopSignal: 'SIGKILL', mounts: [{ type: 'volume', name: vol.name, source: '', destination: '/data', readOnly: false }] }),
      );
      await engine.start(id);
    }

    const port = await freePort();
    const repo = path.join(work, 'repo');
    const config = path.join(work, 'lifeboat.toml');
    const continuous = volumes[0]!;
    await fsp.writeFile(
      config,
      [
        '[agent]',
        `state_dir = ${JSON.stringify(path.join(work, 'state'))}`,
        `listen = "127.0.0.1:${port}"`,
        '[repository]',
        `path = ${JSON.stringify(repo)}`,
        '[schedule]',
        'backup = "0 0 1 1 *"',
        '[volumes]',
        'track = "listed"',
        ...volumes.flatMap((v, i) => ['[[volume]]', `name = ${JSON.stringify(v.name)}`, ...(i === 0 ? ['continuous = true', `debounce = ${JSON.stringify(values.debounce)}`] : [])]),
      ].join('\n'),
    );
    const env = { ...process.env, LIFEBOAT_PASSWORD: 'bench' };
    await new Promise<void>((resolve, reject) =>
      spawn(path.join(ROOT, 'bin', 'lifeboat'), ['init', '--repo', repo], { env, stdio: 'ignore' }).on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`init exited ${c}`)))),
    );
    agent = spawn(path.join(ROOT, 'bin', 'lifeboat'), ['run', '--config', config], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const pid = agent.pid!;
    const status = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/status`);
      return (await res.json()) as { volumes: { name: string; journal: { state: string }; last_snapshot: { time: string } | null; last_backup: { lag_ms: number | null } | null }[] };
    };
    await until('the agent to watch every volume', async () => {
      const s = await status();
      return s.volumes.length === VOLUMES && s.volumes.every((v) => v.journal.state !== 'off') ? s : undefined;
    }, 120_000);

    // Idle before any backup (the continuous volume's start-up backup runs first: wait it out).
    await until('the start-up backup', async () => ((await status()).volumes.find((v) => v.name === continuous.name)!.last_snapshot ? true : undefined), 120_000);
    await sleep(20_000);
    const beforeBackups = sample(pid).rssKiB / 1024;

    // One write first: the continuous volume's first backup is a full scan (the journal starts untrusted).
    const snapshotOf = async () => (await status()).volumes.find((v) => v.name === continuous.name)!;
    fs.writeFileSync(path.join(continuous.mountpoint, 'warm-up'), 'x');
    await until('the first continuous snapshot', async () => ((await snapshotOf()).last_snapshot ? true : undefined), 120_000);

    // Idle means after the start-up backups, once the worker pool has closed (15 s without a job).
    console.error(`[bench] settling 20 s, then idle for ${IDLE_S} s`);
    await sleep(20_000);
    const first = sample(pid);
    const rss: number[] = [];
    for (let i = 0; i < IDLE_S; i++) {
      await sleep(1_000);
      rss.push(sample(pid).rssKiB);
    }
    const last = sample(pid);
    const hz = 100;
    const idleCpuPercent = ((last.ticks - first.ticks) / hz / (IDLE_S + 0)) * 100;

    console.error(`[bench] ${SAMPLES} writes in continuous mode (debounce ${values.debounce})`);
    const delays: number[] = [];
    const lags: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const before = (await snapshotOf()).last_snapshot!.time;
      const t0 = Date.now();
      fs.writeFileSync(path.join(continuous.mountpoint, `write-${i}`), `sample ${i} at ${t0}\n`);
      const v = await until('a snapshot of the write', async () => {
        const s = await snapshotOf();
        return s.last_snapshot && s.last_snapshot.time !== before ? s : undefined;
      });
      delays.push(Date.parse(v.last_snapshot!.time) - t0);
      if (v.last_backup?.lag_ms != null) lags.push(v.last_backup.lag_ms);
      await sleep(500);
    }

    const result = {
      date: new Date().toISOString(),
      host: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? '' },
      setup: { volumes: VOLUMES, containers: CONTAINERS, filesPerVolume: 200, debounce: values.debounce },
      idle: { rssMiBAfterStart: beforeBackups, rssMiBMean: rss.reduce((a, b) => a + b, 0) / rss.length / 1024, rssMiBMax: Math.max(...rss) / 1024, cpuPercent: idleCpuPercent },
      writeToSnapshotMs: { samples: delays, median: median(delays), max: Math.max(...delays), agentLagMs: lags },
    };
    console.log(`## Agent benchmark — ${VOLUMES} volumes, ${CONTAINERS} containers, ${os.availableParallelism()} cores\n`);
    console.log('| measure | value | target |');
    console.log('| --- | ---: | --- |');
    console.log(`| idle RSS after start (one start-up backup) | ${result.idle.rssMiBAfterStart.toFixed(1)} MiB | under 60 MB |`);
    console.log(`| idle RSS after further backups, mean over ${IDLE_S} s | ${result.idle.rssMiBMean.toFixed(1)} MiB | under 60 MB |`);
    console.log(`| idle RSS, max | ${result.idle.rssMiBMax.toFixed(1)} MiB | |`);
    console.log(`| idle CPU | ${result.idle.cpuPercent.toFixed(2)} % of one core | near zero |`);
    console.log(`| write → committed snapshot, median of ${SAMPLES} | ${(result.writeToSnapshotMs.median / 1000).toFixed(2)} s | debounce (${values.debounce}) + a few seconds |`);
    console.log(`| write → committed snapshot, max | ${(result.writeToSnapshotMs.max / 1000).toFixed(2)} s | |`);
    await fsp.mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
    await fsp.writeFile(path.join(ROOT, 'bench', 'results', 'agent-latest.json'), JSON.stringify(result, null, 2));
  } finally {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
    }
    await cleanup();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`[bench] failed: ${(err as Error).message}`);
  process.exitCode = 0;
});
