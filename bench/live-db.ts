// Live-database benchmark: PostgreSQL 15 under pgbench on host A (a second dockerd), protected by
// Lifeboat in continuous mode and replicated to a peer agent with a warm standby (this machine's
// engine); A's agent and database are SIGKILLed mid-load and `recover --from a` runs on the peer.
// The scenario is test/lib/pg-failover.ts; this prints its figures against issue 13's goals.
//
//   node bench/live-db.ts [--scale 20] [--clients 4] [--seconds 120] [--rounds N] [--consistency postgres|pause] [--rpo 3s]
//
// The measured phase alternates windows with both agents frozen (SIGSTOP: the baseline) and running,
// `--rounds` of each (default one per minute), frozen first: pgbench's throughput drifts by 10% from
// one minute to the next on this kind of VM, as much as the agents cost, and back-to-back phases
// off then on measured that drift as often as the agents.
//
// Needs root, a running Docker engine, dockerd on PATH, debootstrap (the image is built from
// Debian's packages on first use and cached), and dist/ built (npm run build). Prints a Markdown
// table and writes bench/results/live-db-latest.json. A report, not a test: it exits 0 once it has
// printed the report, whatever the figures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureEngine } from '../test/docker/harness.ts';
import { runFailover } from '../test/lib/pg-failover.ts';

const BENCH_DIR = dirname(new URL(import.meta.url).pathname);

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '20' },
    clients: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '120' },
    rounds: { type: 'string' },
    consistency: { type: 'string', default: 'postgres' },
    rpo: { type: 'string', default: '3s' },
  },
});
const num = (name: 'scale' | 'clients' | 'seconds' | 'rounds'): number => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const consistency = values.consistency;
if (consistency !== 'postgres' && consistency !== 'pause') throw new Error('--consistency must be postgres or pause');

const log = (msg: string): void => void process.stderr.write(`[live-db] ${msg}\n`);

const quantile = (xs: readonly number[], q: number): number => {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
};
const f = (n: number | null, digits = 2): string => (n === null || !Number.isFinite(n) ? '–' : n.toFixed(digits));
const verdict = (ok: boolean): string => (ok ? 'met' : 'missed');

await ensureEngine();
const seconds = num('seconds');
const rounds = values.rounds === undefined ? Math.max(1, Math.round(seconds / 60)) : num('rounds');
const opts = { scale: num('scale'), clients: num('clients'), seconds, rounds, consistency, rpo: values.rpo, log } as const;
const started = new Date();
const r = await runFailover(opts);

const pausedS = r.pausesMs.reduce((s, x) => s + x, 0) / 1000;
const ratio = r.tpsOff === null ? null : r.tpsOn / r.tpsOff;
const ages = { p50: quantile(r.peerAgesS, 0.5), p90: quantile(r.peerAgesS, 0.9), p99: quantile(r.peerAgesS, 0.99) };
const results = {
  date: started.toISOString(),
  machine: `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
  options: opts,
  tps: { off: r.tpsOff, on: r.tpsOn, ratio, rounds: r.rounds },
  on_seconds: r.onSeconds,
  pauses: { count: r.pausesMs.length, p50_ms: quantile(r.pausesMs, 0.5), p99_ms: quantile(r.pausesMs, 0.99), frozen_fraction: pausedS / r.onSeconds },
  peer_age_s: { ...ages, samples: r.peerAgesS.length },
  backups: r.backups,
  agent_cpu_s: r.agentCpuS,
  loss_s: r.lossS,
  rto: r.rto,
  bytes_restored: r.bytesRestored,
  balances: r.balances,
};
mkdirSync(join(BENCH_DIR, 'results'), { recursive: true });
writeFileSync(join(BENCH_DIR, 'results', 'live-db-latest.json'), `${JSON.stringify(results, null, 2)}\n`);

const rows: [string, string, string, string][] = [
  [
    'container frozen per backup',
    r.pausesMs.length === 0 ? 'never' : `${r.pausesMs.length} pauses, p50 ${results.pauses.p50_ms} ms, p99 ${results.pauses.p99_ms} ms, ${f(100 * results.pauses.frozen_fraction, 1)}% of the time`,
    'p99 <= 0.2 s',
    verdict(results.pauses.p99_ms <= 200),
  ],
  [
    'pgbench tps, agents running / frozen',
    `${f(r.tpsOn, 0)} / ${f(r.tpsOff, 0)} = ${f(ratio)}x (by round: ${r.rounds.map(([off, on]) => `${f(on / off)}x`).join(', ')})`,
    '>= 0.95x',
    verdict(ratio !== null && ratio >= 0.95),
  ],
  ['backups during the load (of them base backups)', `${r.backups.total} (${r.backups.base})`, '', ''],
  ['CPU of the agents during the load (A, the peer B)', `${f(r.agentCpuS.a, 1)} s, ${f(r.agentCpuS.b, 1)} s in ${f(r.onSeconds, 0)} s running`, '', ''],
  ['data lost at the kill', `${f(r.lossS)} s`, '<= 5 s', verdict(r.lossS <= 5)],
  ['age of the peer\'s newest snapshot (1/s samples, running)', `median ${f(ages.p50, 1)} s, p90 ${f(ages.p90, 1)} s, p99 ${f(ages.p99, 1)} s (${r.peerAgesS.length})`, 'median <= 3 s, p99 <= 8 s', verdict(ages.p50 <= 3 && ages.p99 <= 8)],
  [
    'RTO: recover start to PostgreSQL answering',
    `${f(r.rto.totalS, 1)} s (recover ${f(r.rto.recoverS, 1)} s: images ${f(r.rto.imagesMs / 1000, 1)} s, volume ${f(r.rto.volumesMs / 1000, 1)} s for ${f(r.bytesRestored / 1e6, 0)} MB)`,
    '<= 15 s',
    verdict(r.rto.totalS <= 15),
  ],
];
const out = [
  `Live database: PostgreSQL 15, pgbench scale ${opts.scale}, ${opts.clients} clients, ${opts.seconds} s of load in ${opts.rounds} rounds of the agents frozen then running, lifeboat.consistency=${consistency}, rpo ${opts.rpo}`,
  `${results.date}, ${results.machine}`,
  '',
  '| measure | result | goal | |',
  '|---|---|---|---|',
  ...rows.map((row) => `| ${row.join(' | ')} |`),
  '',
  `Recovered database: pg_amcheck clean, balances ${r.balances.join(' = ')}.`,
];
process.stdout.write(`${out.join('\n')}\n`);
