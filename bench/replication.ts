// Replication benchmark: Lifeboat's push to a peer agent vs rsync (--no-whole-file), side by side
// in one run, both across the same kind of link: the receiving side (agent B; rsync's daemon) runs
// in a network namespace reached over a veth pair. Steps on the repository benchmark's tree:
//   first replication: Lifeboat backs the tree up into agent A's repository and pushes it to B;
//                      rsync copies the tree into an empty directory through its daemon;
//   1% change:         bench/mutate.ts changes the tree in place; Lifeboat backs up and pushes,
//                      rsync copies onto its previous copy;
// then restores the replica on the peer (with A's password) and compares it to the source.
// Needs root (ip netns), iproute2, rsync 3.x and GNU time; bench/replication.sh installs them.
//
//   node bench/replication.ts [--size-mib 1024] [--seed S] [--work bench/work/replication]
//                             [--lifeboat CMD] [--keep]
// Prints Markdown tables and writes bench/results/replication-latest.json. Always exits 0 once it
// has printed the report (a report, not a test).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { makeTestHost, type TestHost } from '../test/lib/netns.ts';
import { ensureTree } from './gen-tree.ts';
import { cpuSeconds, interfaceOf, linkBytes, machineBusyS, peakRssKiB } from './lib/proc.ts';
import {
  type CmdRecord,
  evaluateReplicationTargets,
  type ReplicaCheck,
  type ReplicationStep,
  type ReplicationSteps,
  REPLICATION_STEPS,
  renderReplicationReport,
  type TransferRecord,
} from './lib/replication-report.ts';
import { errorLine } from './lib/report.ts';
import { parseRsyncStats, type RsyncDaemon, startRsyncDaemon } from './lib/rsync.ts';
import { runTimed, type TimedResult } from './lib/timed.ts';
import { diffManifests, hashTree, manifestBytes } from './lib/treehash.ts';
import { mutateTree, type MutationReport } from './mutate.ts';

const BENCH_DIR = dirname(new URL(import.meta.url).pathname);
const PROJECT_DIR = dirname(BENCH_DIR);
/** Ports inside the namespace, where nothing else listens. */
const PORTS = { agentHttp: 9410, replication: 9411, rsync: 8730 };

const log = (msg: string): void => void process.stderr.write(`[bench] ${msg}\n`);
const sync = (): void => void spawnSync('sync');

function parseOptions() {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '1024' },
      seed: { type: 'string', default: 'lifeboat-bench' },
      work: { type: 'string', default: join(BENCH_DIR, 'work', 'replication') },
      lifeboat: { type: 'string', default: process.env['LIFEBOAT_BIN'] ?? join(PROJECT_DIR, 'bin', 'lifeboat') },
      keep: { type: 'boolean', default: false },
    },
  });
  const sizeMib = Number(values['size-mib']);
  if (!(sizeMib > 0)) throw new Error('--size-mib must be a positive number');
  return { sizeMib, seed: values.seed, work: resolve(values.work), lifeboatCmd: values.lifeboat.split(/\s+/).filter(Boolean), keep: values.keep };
}
type Options = ReturnType<typeof parseOptions>;

/** The caller's environment without its Lifeboat settings, with this password. */
function lifeboatEnv(password: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('LIFEBOAT_') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, LIFEBOAT_PASSWORD: password };
}

/**
 * `busyS`: CPU seconds the machine was busy while the command ran; what is
 * left after the command's own (and its receiver's, `alsoOwnS`) is others' work.
 */
function cmdRecord(r: TimedResult, busyS: number, alsoOwnS: number, reported?: Record<string, unknown>): CmdRecord {
  const failed = r.code !== 0;
  return {
    ok: !failed,
    ...(failed ? { error: (r.stderr || r.stdout).trim().split('\n').slice(-20).join('\n') } : {}),
    wallS: r.wallS,
    userS: r.userS,
    sysS: r.sysS,
    maxRssKiB: r.maxRssKiB,
    otherCores: Math.max(0, busyS - r.userS - r.sysS - alsoOwnS) / r.wallS,
    ...(reported ? { reported } : {}),
  };
}

function parseJson(stdout: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch {
    return undefined;
  }
}

// --- the two agents ----------------------------------------------------------------------------

interface Agent {
  readonly name: string;
  readonly state: string;
  readonly repo: string;
  readonly config: string;
  readonly password: string;
  readonly id: string;
}

function configText(a: Omit<Agent, 'id'>, lines: readonly string[]): string {
  return [
    '[agent]',
    `host = ${JSON.stringify(a.name)}`,
    `state_dir = ${JSON.stringify(a.state)}`,
    ...lines,
    '[repository]',
    `path = ${JSON.stringify(a.repo)}`,
    '',
  ].join('\n');
}

/** An agent's directories, repository and id; its config is written again once the peers are known. */
function makeAgent(opts: Options, name: string): Agent {
  const dir = join(opts.work, name);
  const a = { name, state: join(dir, 'state'), repo: join(dir, 'repo'), config: join(dir, 'lifeboat.toml'), password: `bench password of ${name}` };
  mkdirSync(dir, { recursive: true });
  writeFileSync(a.config, configText(a, ['listen = ""']));
  const env = lifeboatEnv(a.password);
  const init = spawnSync(opts.lifeboatCmd[0]!, [...opts.lifeboatCmd.slice(1), 'init', '--repo', a.repo], { env, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`lifeboat init ${a.repo}: ${init.stderr}`);
  const id = spawnSync(opts.lifeboatCmd[0]!, [...opts.lifeboatCmd.slice(1), '--config', a.config, '--json', 'id'], { env, encoding: 'utf8' });
  const parsed = parseJson(id.stdout) as { id?: string } | undefined;
  if (id.status !== 0 || typeof parsed?.id !== 'string') throw new Error(`lifeboat id: ${id.stderr || id.stdout}`);
  return { ...a, id: parsed.id };
}

const peerLines = (p: Agent, address: string, push: boolean): string[] => [
  '[[peer]]',
  `name = ${JSON.stringify(p.name)}`,
  `address = ${JSON.stringify(address)}`,
  `id = ${JSON.stringify(p.id)}`,
  `push = ${push}`,
];

interface PeerAgent {
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts `lifeboat run` for B inside the namespace and waits for its health endpoint. */
async function startPeer(opts: Options, b: Agent, host: TestHost): Promise<PeerAgent> {
  const out = openSync(join(dirname(b.config), 'agent.log'), 'a');
  // `ip netns exec` execs in place, and bin/lifeboat execs node: the pid is the agent's
  const child: ChildProcess = spawn('ip', ['netns', 'exec', host.netns, ...opts.lifeboatCmd, 'run', '--config', b.config], {
    env: lifeboatEnv(b.password),
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://${host.address}:${PORTS.agentHttp}/healthz`;
  const deadline = Date.now() + 60_000;
  while (!(await healthy(url))) {
    if (child.exitCode !== null) throw new Error(`agent b exited with ${child.exitCode}; see ${join(dirname(b.config), 'agent.log')}`);
    if (Date.now() > deadline) throw new Error(`agent b did not answer ${url} within 60 s`);
    await sleep(100);
  }
  return {
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

// --- measured steps ----------------------------------------------------------------------------

interface Transfer {
  readonly run: () => TimedResult;
  /** Sent and received bytes, and the tool's own report, from a successful run; undefined when unreadable. */
  readonly counts: (r: TimedResult) => { sent: number; received: number; reported: Record<string, unknown> } | undefined;
  /** CPU seconds the receiving side has used so far. */
  readonly receiverCpuS: () => Promise<number>;
  readonly receiverPeakRssKiB?: () => number;
}

async function measureTransfer(t: Transfer, iface: string): Promise<TransferRecord> {
  sync();
  const cpu0 = await t.receiverCpuS();
  const link0 = linkBytes(iface);
  const busy0 = machineBusyS();
  const r = t.run();
  const busyS = machineBusyS() - busy0;
  const cpu1 = await t.receiverCpuS();
  const link1 = linkBytes(iface);
  const counts = r.code === 0 ? t.counts(r) : undefined;
  const base = cmdRecord(r, busyS, cpu1 - cpu0, counts?.reported);
  const unreadable = r.code === 0 && counts === undefined;
  return {
    ...base,
    ...(unreadable ? { ok: false, error: `unexpected output: ${r.stdout.slice(0, 500)}` } : {}),
    sentBytes: counts?.sent ?? NaN,
    receivedBytes: counts?.received ?? NaN,
    linkSentBytes: link1.tx - link0.tx,
    linkReceivedBytes: link1.rx - link0.rx,
    receiverCpuS: cpu1 - cpu0,
    ...(t.receiverPeakRssKiB ? { receiverPeakRssKiB: t.receiverPeakRssKiB() } : {}),
  };
}

interface Bench {
  readonly opts: Options;
  readonly tree: string;
  readonly a: Agent;
  readonly b: Agent;
  readonly peer: PeerAgent;
  readonly rsyncd: RsyncDaemon;
  readonly iface: string;
}

function lifeboatBackup(x: Bench): CmdRecord {
  sync();
  const busy0 = machineBusyS();
  const r = runTimed([...x.opts.lifeboatCmd, '--json', 'backup', '--repo', x.a.repo, '--path', x.tree], { env: lifeboatEnv(x.a.password) });
  const busyS = machineBusyS() - busy0;
  const out = parseJson(r.stdout);
  return cmdRecord(r, busyS, 0, out && typeof out === 'object' ? (out as Record<string, unknown>) : undefined);
}

function lifeboatPush(x: Bench): Promise<TransferRecord> {
  return measureTransfer(
    {
      run: () => runTimed([...x.opts.lifeboatCmd, '--config', x.a.config, '--json', 'replicate', x.b.name], { env: lifeboatEnv(x.a.password) }),
      counts: (r) => {
        const outcomes = parseJson(r.stdout) as { ok?: boolean; report?: Record<string, unknown> }[] | undefined;
        const report = Array.isArray(outcomes) ? outcomes[0]?.report : undefined;
        if (!report || typeof report['wire_bytes_sent'] !== 'number' || typeof report['wire_bytes_received'] !== 'number') return undefined;
        return { sent: report['wire_bytes_sent'], received: report['wire_bytes_received'], reported: report };
      },
      receiverCpuS: async () => cpuSeconds(x.peer.pid).self,
      receiverPeakRssKiB: () => peakRssKiB(x.peer.pid),
    },
    x.iface,
  );
}

function rsyncCopy(x: Bench): Promise<TransferRecord> {
  return measureTransfer(
    {
      run: () => runTimed(['rsync', '--no-whole-file', '-a', '--stats', `${x.tree}/`, x.rsyncd.url]),
      counts: (r) => {
        const s = parseRsyncStats(r.stdout);
        return s && { sent: s.sentBytes, received: s.receivedBytes, reported: { ...s } };
      },
      receiverCpuS: () => x.rsyncd.servedCpuS(),
    },
    x.iface,
  );
}

async function runStep(x: Bench, name: string, lifeboatFirst: boolean): Promise<ReplicationStep> {
  let step: ReplicationStep = {};
  const lifeboat = async () => {
    log(`${name}: lifeboat backup…`);
    const backup = lifeboatBackup(x);
    log(`${name}: lifeboat backup ${backup.ok ? `${backup.wallS}s` : `FAILED: ${errorLine(backup.error ?? '')}`}`);
    step = { ...step, backup };
    if (!backup.ok) return;
    log(`${name}: lifeboat push…`);
    const push = await lifeboatPush(x);
    const snapshots = push.reported?.['snapshots'];
    log(`${name}: lifeboat push ${push.ok ? `${push.wallS}s, ${push.sentBytes + push.receivedBytes} bytes, ${String(snapshots)} snapshot(s)` : `FAILED: ${errorLine(push.error ?? '')}`}`);
    if (push.ok && snapshots !== 1) log(`${name}: WARNING: the push committed ${String(snapshots)} snapshots, expected 1`);
    step = { ...step, push };
  };
  const rsync = async () => {
    log(`${name}: rsync…`);
    const r = await rsyncCopy(x);
    log(`${name}: rsync ${r.ok ? `${r.wallS}s, ${r.sentBytes + r.receivedBytes} bytes` : `FAILED: ${errorLine(r.error ?? '')}`}`);
    step = { ...step, rsync: r };
  };
  for (const f of lifeboatFirst ? [lifeboat, rsync] : [rsync, lifeboat]) await f();
  return step;
}

// --- main --------------------------------------------------------------------------------------

function machine() {
  const cpu = cpus();
  const df = spawnSync('df', ['-h', '--output=size,used,avail', PROJECT_DIR], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)?.trim();
  return { cpus: cpu.length, model: cpu[0]?.model ?? 'cpu', memBytes: totalmem(), kernel: release(), loadavg: loadavg(), disk: df ?? '?' };
}

function version(argv: readonly string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: env ?? process.env });
  return r.status === 0 ? (r.stdout || r.stderr).trim().split('\n')[0]!.replace(/\s+/g, ' ') : 'unavailable';
}

async function main(): Promise<void> {
  const opts = parseOptions();
  if (process.getuid?.() !== 0) throw new Error('needs root (ip netns, a veth pair)');
  const atStart = machine();
  const versions = {
    lifeboat: version([...opts.lifeboatCmd, '--version'], lifeboatEnv('')),
    rsync: version(['rsync', '--version']),
    node: process.version,
  };
  if (!/version 3\./.test(versions.rsync)) throw new Error(`rsync 3.x needed, found: ${versions.rsync}`);
  log(`lifeboat ${versions.lifeboat}; ${versions.rsync}; node ${versions.node}; disk (size used avail) ${atStart.disk}; load ${atStart.loadavg.map((l) => l.toFixed(2)).join(' ')}`);

  const tree = join(opts.work, 'tree');
  mkdirSync(opts.work, { recursive: true });
  const t0 = performance.now();
  const { layout, reused } = ensureTree(tree, { sizeMib: opts.sizeMib, seed: opts.seed });
  log(`${reused ? 'reused' : 'generated'} tree ${tree}: ${layout.fileCount} files, ${layout.totalBytes} bytes (${((performance.now() - t0) / 1000).toFixed(1)}s)`);

  // Fresh agents, replica and rsync copy every run.
  for (const d of ['a', 'b', 'rsync', 'restore']) rmSync(join(opts.work, d), { recursive: true, force: true });

  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((err: unknown) => log(`cleanup: ${String(err)}`));
    cleanups.length = 0;
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const steps: ReplicationSteps = {};
  let check: ReplicaCheck = {};
  let mutation: MutationReport | undefined;
  let iface = '';
  let host: TestHost | undefined;
  try {
    host = makeTestHost();
    const h = host;
    cleanups.push(() => h.remove());
    iface = interfaceOf(h.hostAddress);
    log(`namespace ${h.netns}: ${h.hostAddress} (${iface}) <-> ${h.address}`);

    const a = makeAgent(opts, 'a');
    const b = makeAgent(opts, 'b');
    writeFileSync(a.config, configText(a, ['listen = ""']) + peerLines(b, `${h.address}:${PORTS.replication}`, true).join('\n') + '\n');
    // B only receives; A listens nowhere, the address is never dialled
    writeFileSync(
      b.config,
      configText(b, [`listen = ${JSON.stringify(`${h.address}:${PORTS.agentHttp}`)}`]) +
        ['[volumes]', 'track = "listed"', '[replication]', `listen = ${JSON.stringify(`${h.address}:${PORTS.replication}`)}`, ...peerLines(a, `${h.hostAddress}:${PORTS.replication}`, false)].join('\n') +
        '\n',
    );
    const peer = await startPeer(opts, b, h);
    cleanups.push(() => peer.stop());
    const rsyncd = await startRsyncDaemon({ netns: h.netns, address: h.address, port: PORTS.rsync, dir: join(opts.work, 'rsync'), dest: join(opts.work, 'rsync', 'copy') });
    cleanups.push(() => rsyncd.stop());
    log(`agent b (pid ${peer.pid}) and rsync --daemon (pid ${rsyncd.pid}) listening in ${h.netns}`);
    const x: Bench = { opts, tree, a, b, peer, rsyncd, iface };

    // Warm-up: read the whole tree once so both tools start from a warm page cache.
    sync();
    let source = hashTree(tree);
    log(`warm-up read: ${source.size} files, ${manifestBytes(source)} bytes`);

    for (const [k, name] of REPLICATION_STEPS.entries()) {
      if (name === 'incremental') {
        mutation = mutateTree(tree, { sizeMib: opts.sizeMib, seed: opts.seed });
        log(`mutated: ${mutation.changedBytes} bytes truly changed (${mutation.changedPercent.toFixed(2)}%)`);
        source = hashTree(tree);
      }
      // each step in the other order, so neither tool always runs first
      steps[name] = await runStep(x, name, k % 2 === 0);
    }

    log('restoring the replica on the peer…');
    const target = join(opts.work, 'restore');
    const replicaDir = join(b.state, 'replicas', a.id);
    sync();
    const r = runTimed([...opts.lifeboatCmd, 'restore', 'latest', '--repo', replicaDir, '--target', target], { env: lifeboatEnv(a.password) });
    const replica =
      r.code === 0
        ? { ok: true, wallS: r.wallS, diffs: diffManifests(source, hashTree(target)) }
        : { ok: false, wallS: r.wallS, diffs: [], error: (r.stderr || r.stdout).trim() };
    if (!opts.keep) rmSync(target, { recursive: true, force: true });
    const rsyncCopy = { diffs: diffManifests(source, hashTree(join(opts.work, 'rsync', 'copy'))) };
    check = { replica, rsyncCopy };
    log(`replica restored: ${replica.ok ? (replica.diffs.length === 0 ? 'identical' : replica.diffs.join('; ')) : 'FAILED'}; rsync copy: ${rsyncCopy.diffs.length === 0 ? 'identical' : rsyncCopy.diffs.join('; ')}`);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!opts.keep) for (const d of ['a', 'b', 'rsync']) rmSync(join(opts.work, d), { recursive: true, force: true });
  }

  const changedBytes = mutation?.changedBytes ?? NaN;
  const targets = evaluateReplicationTargets(steps, changedBytes, check);
  const atEnd = machine();
  const gib = (n: number) => (n / 2 ** 30).toFixed(0);
  const header =
    `## Replication benchmark — ${layout.fileCount} files, ${(layout.totalBytes / 2 ** 20).toFixed(0)} MiB (--size-mib ${opts.sizeMib}), ` +
    `${atStart.cpus} × ${atStart.model}, ${gib(atStart.memBytes)} GiB RAM, Linux ${atStart.kernel}\n\n` +
    `- lifeboat ${versions.lifeboat} (node ${versions.node}); ${versions.rsync}, \`rsync --no-whole-file -a --stats\` to \`rsync --daemon\`\n` +
    `- receiving side in a network namespace over a veth pair; Lifeboat over mutual TLS 1.3, rsync's daemon protocol in clear\n` +
    `- order: Lifeboat first in the first replication, rsync first after the change; page cache warm, \`sync\` before each command\n` +
    `- load average (1/5/15 min) at start ${atStart.loadavg.map((l) => l.toFixed(2)).join(' / ')}, at end ${atEnd.loadavg.map((l) => l.toFixed(2)).join(' / ')}; disk (size used avail) ${atEnd.disk}\n`;
  console.log(`${header}\n${renderReplicationReport(steps, changedBytes, check, targets, atStart.cpus)}`);

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const out = join(resultsDir, 'replication-latest.json');
  writeFileSync(
    out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        host: { ...atStart, loadavgAtEnd: atEnd.loadavg },
        options: { sizeMib: opts.sizeMib, seed: opts.seed },
        versions,
        link: { interface: iface, netns: host?.netns ?? null },
        tree: { path: tree, files: layout.fileCount, bytes: layout.totalBytes, dirs: layout.dirs.length },
        mutation: mutation ?? null,
        steps,
        check,
        targets,
      },
      null,
      2,
    ),
  );
  log(`wrote ${out}`);
}

try {
  await main();
} catch (err) {
  console.error(err);
  console.log('benchmark aborted before completion (see error above)');
}
process.exit(0);
