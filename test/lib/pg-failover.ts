/**
 * A PostgreSQL host lost under load and recovered on its peer, measured: the
 * scenario of the live-database integration test and of bench/live-db.ts.
 *
 * Host A is a second dockerd running PostgreSQL 15 (test/lib/postgres-image.ts)
 * under pgbench, with a heartbeat client committing a timestamp every 100 ms;
 * its agent backs the data volume up continuously and pushes to B, the
 * machine's engine, whose agent keeps a warm standby of A. Measured: pgbench's
 * throughput without and with the agents, every pause of the database (the
 * engine's pause and unpause events), the age of B's newest snapshot of the
 * volume once a second (A's lifeboat_rpo_seconds), then, with A's agent and
 * database SIGKILLed mid-load, the data lost (kill time minus the newest
 * heartbeat the recovered database holds) and the time from `recover --from a`
 * on B until PostgreSQL there answers a query. The recovered database must
 * pass pg_amcheck and keep pgbench's balance invariants.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Daemon, until } from '../agent/daemon.ts';
import { lifeboat } from '../cli/run.ts';
import { DEFAULT_SOCKET, type SecondEngine, startSecondEngine, TEST_LABEL, uniqueName } from '../docker/harness.ts';
import { Fleet, makeAgent, writeConfig } from '../replicate/agents.ts';
import { dockerAt } from './docker-cli.ts';
import { ensurePostgresImage, POSTGRES_DATA_DIR } from './postgres-image.ts';

export interface FailoverOptions {
  /** pgbench's scale (about 15 MB of data each). */
  readonly scale: number;
  readonly clients: number;
  /** Length of the measured load phase, in seconds. */
  readonly seconds: number;
  /** The volume's lifeboat.consistency label: postgres (its backup protocol) or pause (the container frozen for the capture). */
  readonly consistency: 'postgres' | 'pause';
  /** [[volume]] rpo. */
  readonly rpo: string;
  /**
   * Measures pgbench without the agents too: the measured phase alternates
   * this many windows with both agents frozen (SIGSTOP) and as many running,
   * frozen first, so the database's own drift from minute to minute (as large
   * as the agents' cost) falls on both alike. 0: the agents run throughout.
   */
  readonly rounds: number;
  readonly log: (msg: string) => void;
}

export interface FailoverResult {
  /** pgbench's mean tps over the measured phase's windows without and with the agents. */
  readonly tpsOff: number | null;
  readonly tpsOn: number;
  /** The mean tps of each window, [off, on] by round. */
  readonly rounds: readonly (readonly [number, number])[];
  /** Seconds of the measured phase the agents ran. */
  readonly onSeconds: number;
  /** Each pause of the database during the measured phase, in ms. */
  readonly pausesMs: readonly number[];
  /** Backups A made during the measured phase, and how many of them were base backups (the rest read only the WAL). */
  readonly backups: { readonly total: number; readonly base: number };
  /** CPU seconds (user + system) A's and B's agents spent during the measured phase (while they ran). */
  readonly agentCpuS: { readonly a: number; readonly b: number };
  /** The age of B's newest snapshot of the volume, sampled once a second while the agents ran. */
  readonly peerAgesS: readonly number[];
  /** Kill time minus the newest heartbeat in the recovered database. */
  readonly lossS: number;
  /** From `recover` until PostgreSQL on B answered a query, and recover's own account of its time. */
  readonly rto: { readonly totalS: number; readonly recoverS: number; readonly imagesMs: number; readonly volumesMs: number; readonly startedMs: number | null };
  /** The recovered volume's size. */
  readonly bytesRestored: number;
  /** sum(tbalance), sum(bbalance), sum(abalance), sum(delta): equal when every transaction is whole or absent. */
  readonly balances: readonly number[];
}

const BALANCES =
  'select (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), ' +
  '(select sum(abalance) from pgbench_accounts), (select sum(delta) from pgbench_history)';

/** pgbench's `-P 1` lines: "progress: 5.0 s, 812.3 tps, lat ...". */
const PROGRESS = /^progress: ([\d.]+) s, ([\d.]+) tps/;

export async function runFailover(o: FailoverOptions): Promise<FailoverResult> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'lbt-pg-failover-'));
  const fleet = new Fleet();
  const volume = uniqueName('pgdata');
  const container = uniqueName('pg');
  let second: SecondEngine | undefined;
  const dockerB = dockerAt(DEFAULT_SOCKET);
  try {
    second = await startSecondEngine(path.join(dir, 'engine-a'));
    const dockerA = dockerAt(second.socket);
    const psqlOn = (docker: typeof dockerA) => (sql: string) => docker('exec', container, 'psql', '-v', 'ON_ERROR_STOP=1', '-XAtq', '-c', sql).then((s) => s.trim());
    o.log('loading the PostgreSQL image into engine A');
    const image = await ensurePostgresImage(second.socket);
    await dockerA(
      'run', '-d', '--name', container, '--label', TEST_LABEL, '--label', `lifeboat.consistency=${o.consistency}`,
      '--network', 'none', '-v', `${volume}:${POSTGRES_DATA_DIR}`, image,
    );
    await until('PostgreSQL on A', () => dockerA('exec', container, 'pg_isready', '-q').then(() => true), { timeoutMs: 120_000 });
    o.log(`pgbench -i -s ${o.scale}`);
    await dockerA('exec', container, 'pgbench', '-q', '-i', '-s', String(o.scale));
    await psqlOn(dockerA)('create table lb_heartbeat (at timestamptz not null)');

    const pgbench = (seconds: number) => load(second!.socket, container, ['pgbench', '-n', '-P', '1', '-T', String(seconds), '-c', String(o.clients), '-j', String(o.clients)]);
    const heartbeat = load(second.socket, container, ['sh', '-c', 'while :; do echo "insert into lb_heartbeat values (clock_timestamp());"; sleep 0.1; done | psql -XAtq -v ON_ERROR_STOP=1']);

    const a = await makeAgent('a', {
      docker: `unix://${second.socket}`,
      extra: ['[[volume]]', `name = ${JSON.stringify(volume)}`, 'continuous = true', 'debounce = "1s"', `rpo = ${JSON.stringify(o.rpo)}`].join('\n'),
    });
    const b = await makeAgent('b');
    const passwordOfA = path.join(b.dir, 'a.password');
    await fsp.writeFile(passwordOfA, `${a.password}\n`, { mode: 0o600 });
    await writeConfig(a, [{ agent: b }]);
    await writeConfig(b, [{ agent: a, push: false }]);
    await fsp.appendFile(b.config, `password_file = ${JSON.stringify(passwordOfA)}\nstandby = true\n`);
    const da = fleet.start(a);
    const db = fleet.start(b);
    o.log('agents started; waiting for the first replication');
    await until('the volume replicated to B', async () => (await rpoAtPeer(da, volume)) !== undefined, { daemon: da, timeoutMs: 300_000 });

    const events = load(second.socket, null, ['events', '--filter', `container=${container}`, '--filter', 'event=pause', '--filter', 'event=unpause', '--format', '{{.Action}} {{.TimeNano}}']);
    o.log(`measured phase: pgbench for ${o.seconds} s, ${o.rounds > 0 ? `${o.rounds} rounds of the agents frozen, then running` : 'the agents running'}`);
    const run = pgbench(o.seconds + 600);
    const runStart = Date.now();
    const peerAgesS: number[] = [];
    const cpuBefore = { a: cpuSeconds(da), b: cpuSeconds(db) };
    const logsBefore = da.logs.length;
    const windowMs = (o.seconds * 1000) / Math.max(1, 2 * o.rounds);
    const windows: { on: boolean; from: number; to: number }[] = [];
    for (let i = o.rounds > 0 ? 0 : 1; i < Math.max(2, 2 * o.rounds); i++) {
      const on = i % 2 === 1;
      const set = (run: boolean) => {
        for (const d of [da, db]) d.child.kill(run ? 'SIGCONT' : 'SIGSTOP');
      };
      set(on);
      // never frozen with the database paused for a capture: that would be no baseline
      while (!on && (await dockerA('inspect', '-f', '{{.State.Paused}}', container)).trim() === 'true') {
        set(true);
        await sleep(50);
        set(false);
      }
      const from = Date.now();
      // ages from before a snapshot taken since the thaw reached B measure the freeze, not the agents
      let caughtUp = false;
      while (Date.now() < from + windowMs) {
        if (on) {
          const age = await rpoAtPeer(da, volume);
          caughtUp ||= age !== undefined && age < (Date.now() - from) / 1000;
          if (caughtUp && age !== undefined) peerAgesS.push(age);
        }
        await sleep(Math.min(1000, Math.max(0, from + windowMs - Date.now())));
      }
      windows.push({ on, from: (from - runStart) / 1000, to: (Date.now() - runStart) / 1000 });
    }
    // the disaster: host A's agent and database die at once, the agents running
    const agentCpuS = { a: cpuSeconds(da) - cpuBefore.a, b: cpuSeconds(db) - cpuBefore.b };
    const phaseLogs = da.logs.slice(logsBefore);
    const backups = {
      total: phaseLogs.filter((l) => l.msg === `volume ${volume} backed up`).length,
      base: phaseLogs.filter((l) => l.msg === 'PostgreSQL: a base backup').length,
    };
    const killedAt = Date.now();
    da.child.kill('SIGKILL');
    await dockerA('kill', container);
    // each window's first seconds settle (a catch-up backup after a thaw)
    const tpsOf = (w: (typeof windows)[number]) => meanTps(run.progress(), w.from + 3, w.to);
    const byRound = windows.filter((w) => !w.on).map((off, i) => [tpsOf(off), tpsOf(windows.filter((w) => w.on)[i]!)] as const);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const tpsOn = mean(windows.filter((w) => w.on).map(tpsOf));
    const tpsOff = byRound.length === 0 ? null : mean(byRound.map(([off]) => off));
    const onSeconds = windows.filter((w) => w.on).reduce((n, w) => n + w.to - w.from, 0);
    for (const p of [run, heartbeat, events]) p.stop();
    await da.exited;
    const pausesMs = pauses(events.lines());
    await second.stop();
    second = undefined;

    o.log('recovering on B');
    const started = Date.now();
    const r = await lifeboat(['--config', b.config, '--json', 'recover', '--from', 'a'], { password: null, timeoutMs: 600_000 });
    const recoverS = (Date.now() - started) / 1000;
    if (r.code !== 0) throw new Error(`recover --from a failed (${r.code}): ${r.stderr}`);
    const psqlB = psqlOn(dockerB);
    const newest = await until('PostgreSQL on B answering', () => psqlB('select extract(epoch from max(at)) from lb_heartbeat'), { timeoutMs: 300_000, intervalMs: 50 });
    const totalS = (Date.now() - started) / 1000;
    const report = r.json<{ images: { ms: number | null }[]; volumes: { ms: number | null; bytes: number | null }[]; containers: { rtoMs: number | null }[] }>();
    db.child.kill('SIGTERM');
    await db.exited;

    const balances = (await psqlB(BALANCES)).split('|').map(Number);
    await dockerB('exec', container, 'pg_amcheck', '--all', '--install-missing', '--heapallindexed');
    const sum = (xs: (number | null)[]) => xs.reduce<number>((s, x) => s + (x ?? 0), 0);
    return {
      tpsOff,
      tpsOn,
      rounds: byRound,
      onSeconds,
      pausesMs,
      backups,
      agentCpuS,
      peerAgesS,
      lossS: (killedAt - Number(newest) * 1000) / 1000,
      rto: {
        totalS,
        recoverS,
        imagesMs: sum(report.images.map((i) => i.ms)),
        volumesMs: sum(report.volumes.map((v) => v.ms)),
        startedMs: report.containers[0]?.rtoMs ?? null,
      },
      bytesRestored: sum(report.volumes.map((v) => v.bytes)),
      balances,
    };
  } finally {
    await fleet.stopAll();
    await second?.stop();
    await dockerB('rm', '-f', '-v', container).catch(() => '');
    await dockerB('volume', 'rm', '-f', volume).catch(() => '');
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

interface Load {
  readonly ended: Promise<void>;
  /** Its output so far, stdout and stderr, as lines. */
  lines(): string[];
  /** pgbench's progress lines so far: [seconds since its start, tps]. */
  progress(): [number, number][];
  stop(): void;
}

/** `docker exec CONTAINER ...command` (or `docker ...command` when container is null) on the engine at `socket`, running in the background. */
function load(socket: string, container: string | null, command: string[]): Load {
  const args = container === null ? ['-H', `unix://${socket}`, ...command] : ['-H', `unix://${socket}`, 'exec', container, ...command];
  const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr.on('data', (b: Buffer) => (text += b.toString()));
  const ended = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const lines = () => text.split('\n').filter((l) => l !== '');
  return {
    ended,
    lines,
    progress: () => lines().flatMap((l) => {
      const m = PROGRESS.exec(l);
      return m ? [[Number(m[1]), Number(m[2])] as [number, number]] : [];
    }),
    stop: () => void child.kill('SIGKILL'),
  };
}

/** The mean tps of the progress lines from `from` to `to` seconds (the first seconds warm up). */
function meanTps(progress: [number, number][], from: number, to: number): number {
  const window = progress.filter(([t]) => t > from && t <= to).map(([, tps]) => tps);
  if (window.length === 0) throw new Error(`pgbench printed no progress between ${from} and ${to} s`);
  return window.reduce((s, x) => s + x, 0) / window.length;
}

/** Pause durations from `docker events` lines "pause NANOS" / "unpause NANOS"; one still open at the end counts until then. */
function pauses(lines: string[]): number[] {
  const out: number[] = [];
  let since: bigint | undefined;
  for (const line of lines) {
    const [action, nanos] = line.split(' ');
    if (!nanos || !/^\d+$/.test(nanos)) continue;
    if (action === 'pause') since = BigInt(nanos);
    else if (action === 'unpause' && since !== undefined) {
      out.push(Number((BigInt(nanos) - since) / 1_000_000n));
      since = undefined;
    }
  }
  if (since !== undefined) out.push(Number((BigInt(Date.now()) * 1_000_000n - since) / 1_000_000n));
  return out;
}

/** User plus system CPU seconds of a running agent (its workers are threads of its process). */
function cpuSeconds(d: Daemon): number {
  // after the command name in parentheses: utime and stime are the 12th and 13th fields, in clock ticks
  const stat = fs.readFileSync(`/proc/${d.child.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A's lifeboat_rpo_seconds for the volume at peer b, once B holds a snapshot of it. */
async function rpoAtPeer(d: Daemon, volume: string): Promise<number | undefined> {
  const body = (await d.get('/metrics')).body;
  const m = new RegExp(`\\nlifeboat_rpo_seconds\\{volume="${volume}",peer="b"\\} ([\\d.e+-]+)\\n`).exec(body);
  return m ? Number(m[1]) : undefined;
}
