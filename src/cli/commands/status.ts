import type { Command } from 'commander';
import { type AgentAddress, askAgent } from '../agent-client.ts';
import { offlineStatus, type StatusReport } from '../../agent/status.ts';
import { AgentCatalog } from '../../catalog/agent-catalog.ts';
import { describeFailure, UsageError } from '../../errors/errors.ts';
import { Repository } from '../../repo/repository.ts';
import { shortId } from '../../repo/snapshot.ts';
import type { Snapshot } from '../../repo/snapshot.ts';
import { listSnapshots } from '../../repo/snapshots.ts';
import type { PeerStatus } from '../../replicate/replicator.ts';
import type { Config } from '../../config/schema.ts';
import { type Context, type GlobalOptions, makeContext, readPassword, type RepoOptions } from '../context.ts';
import { table } from './snapshots.ts';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('the agent, the engine, each tracked volume\'s last snapshot, journal and next run, and retention (from the running agent, else from the catalog and repository)')
    .option('--password-file <file>', 'without a running agent: the repository password, to read the last snapshots')
    .action(async (opts: Pick<RepoOptions, 'passwordFile'>, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('status needs --config FILE (for the agent\'s address and state directory)');
      const report = await statusReport(ctx, opts);
      ctx.out(report, () => formatStatus(report));
    });
}

async function statusReport(ctx: Context, opts: Pick<RepoOptions, 'passwordFile'>): Promise<StatusReport> {
  const listen = ctx.config.agent.listen;
  if (listen !== '') {
    const asked = await statusOf(ctx.config.agent);
    if ('report' in asked) return asked.report;
    if (asked.refused) return offline(ctx, opts, listen, `agent: running at http://${listen}, but it refused: ${asked.error}`);
    return offline(ctx, opts, listen, `agent: not running (nothing answers at http://${listen}: ${asked.error})`);
  }
  return offline(ctx, opts, null, 'agent: unknown ([agent] listen is "", so the agent has no endpoint to ask)');
}

/** GET /status of the running agent, if one answers. */
export async function statusOf(agent: AgentAddress): Promise<{ report: StatusReport } | { error: string; refused?: true }> {
  const a = await askAgent(agent, 'GET', '/status', 3000);
  if ('unreachable' in a) return { error: a.unreachable };
  // a token it does not take ([agent] token_file differs from the running agent's)
  if (a.status === 401 || a.status === 403) return { error: `${(a.body as { error?: string }).error ?? `HTTP ${a.status}`}`, refused: true };
  const value = a.body as StatusReport | null;
  return a.status === 200 && value && typeof value === 'object' && 'agent' in value ? { report: value } : { error: `HTTP ${a.status}: not a Lifeboat agent's status` };
}

export async function offline(ctx: Context, opts: Pick<RepoOptions, 'passwordFile'>, listen: string | null, why: string): Promise<StatusReport> {
  const config = ctx.config;
  const engine = await probeEngine(ctx);
  const catalog = AgentCatalog.exists(config.agent.state_dir) ? AgentCatalog.open(config.agent.state_dir) : undefined;
  try {
    const all = await readSnapshots(ctx, opts);
    const peers = catalog ? await offlinePeers(config, catalog, 'error' in all ? null : all) : [];
    return offlineStatus({ config, catalog, snapshots: 'error' in all ? all : newestPerVolume(ctx, all), engine, peers, listen, why });
  } finally {
    catalog?.close();
  }
}

/** The peers as the catalog knows them, when no agent runs to ask. */
async function offlinePeers(config: Config, catalog: AgentCatalog, snapshots: readonly Snapshot[] | null): Promise<PeerStatus[]> {
  if (config.peer.length === 0) return [];
  const [{ peerView, replicaOf }, { PeerStateStore }] = await Promise.all([import('../../replicate/replicator.ts'), import('../../replicate/peer-state.ts')]);
  const state = new PeerStateStore(catalog.db);
  return config.peer.map((p) => peerView(p, state, snapshots, replicaOf(config.agent.state_dir, p, null), null));
}

async function probeEngine(ctx: Context): Promise<StatusReport['engine']> {
  const { connectEngine, engineAddress } = await import('../../docker/connect.ts');
  const address = engineAddress(ctx.config);
  const engine = connectEngine(ctx.config);
  const timeout = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 3 s')), 3000).unref())]);
  try {
    const info = await timeout(engine.info());
    return { address, reachable: true, version: info.serverVersion, last_error: null, last_reconcile: null };
  } catch (err) {
    return { address, reachable: false, version: null, last_error: describeFailure(err).message, last_reconcile: null };
  }
}

/** The repository's snapshots, or why it could not be read. */
async function readSnapshots(ctx: Context, opts: Pick<RepoOptions, 'passwordFile'>): Promise<Snapshot[] | { error: string }> {
  let repo: Repository;
  try {
    repo = await Repository.open(ctx.config.repository.path, readPassword(ctx, opts));
  } catch (err) {
    return { error: `${describeFailure(err).message}; last snapshots and pending pushes not shown` };
  }
  try {
    return listSnapshots(repo);
  } finally {
    repo.close();
  }
}

/** Newest snapshot per volume of this host. */
function newestPerVolume(ctx: Context, snapshots: readonly Snapshot[]): Map<string, { id: string; time: string }> {
  const newest = new Map<string, { id: string; time: string }>();
  for (const s of snapshots) {
    if (s.host === ctx.config.agent.host && s.volume !== null) newest.set(s.volume, { id: s.id, time: s.time });
  }
  return newest;
}

// ---- text ---------------------------------------------------------------------

/** "3d 4h", "2h 5m", "4m 10s", "12s". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const units: [number, string][] = [[86_400, 'd'], [3600, 'h'], [60, 'm'], [1, 's']];
  for (let i = 0; i < units.length; i++) {
    const [size, unit] = units[i]!;
    if (s >= size || size === 1) {
      const major = Math.floor(s / size);
      const next = units[i + 1];
      const minor = next ? Math.floor((s % size) / next[0]) : 0;
      return next && minor > 0 ? `${major}${unit} ${minor}${next[1]}` : `${major}${unit}`;
    }
  }
  return `${s}s`;
}

const when = (iso: string | null) => (iso === null ? '-' : `${iso.replace('T', ' ').slice(0, 19)}`);

/** The text `lifeboat status` prints. */
export function formatStatus(r: StatusReport, now = Date.now()): string {
  const a = r.agent;
  const lines: string[] = [];
  lines.push(
    a.running
      ? `agent      running: pid ${a.pid}, up ${formatAge(a.uptime_s ?? 0)}, version ${a.version}, host ${a.host}${a.listen ? `, endpoint http://${a.listen}` : ''}`
      : `agent      not running (host ${a.host})`,
  );
  if (a.jobs?.running) lines.push(`           now: ${a.jobs.running}${a.jobs.waiting.length ? `; waiting: ${a.jobs.waiting.join(', ')}` : ''}`);
  const e = r.engine;
  lines.push(
    e.reachable === true
      ? `engine     reachable at ${e.address}${e.version ? `, Docker ${e.version}` : ''}${e.last_reconcile ? `, inventory synced ${when(e.last_reconcile)} UTC` : ''}`
      : e.reachable === false
        ? `engine     UNREACHABLE at ${e.address}${e.last_error ? `: ${e.last_error}` : ''}`
        : `engine     ${e.address} (not asked)`,
  );
  lines.push(`volumes    ${r.volumes.length} tracked${r.missing.length ? `; listed in [[volume]] but not on the engine: ${r.missing.join(', ')}` : ''}`);
  if (r.volumes.length > 0) {
    const rows = r.volumes.map((v) => {
      const snap = v.last_snapshot ? `${shortId(v.last_snapshot.id)} ${when(v.last_snapshot.time)}` : 'none';
      const age = v.last_snapshot ? formatAge((now - Date.parse(v.last_snapshot.time)) / 1000) : '-';
      const j = v.journal;
      const journal = j.state === 'dirty' ? `dirty (${j.dirty})` : j.state === 'full-scan' ? `full scan${j.reason ? `: ${j.reason}` : ''}` : j.state;
      const mode = v.continuous ? `yes (${formatAge((v.debounce_ms ?? 0) / 1000)})` : 'no';
      const next = v.running ? 'running now' : when(v.next_run);
      const lag = v.last_backup?.lag_ms != null ? formatLag(v.last_backup.lag_ms) : '-';
      const error = v.last_error ? `${when(v.last_error.time)}: ${v.last_error.message}` : '-';
      return ['  ' + v.name, snap, age, journal, next, mode, lag, error];
    });
    lines.push(table(['  VOLUME', 'LAST SNAPSHOT (UTC)', 'AGE', 'JOURNAL', 'NEXT RUN (UTC)', 'CONTINUOUS', 'LAG', 'LAST ERROR'], rows));
  }
  lines.push(`peers      ${r.peers.length === 0 ? 'none' : r.peers.length}`);
  if (r.peers.length > 0) lines.push(formatPeers(r.peers, now));
  if (r.targets.length > 0) {
    const rows = r.targets.map((t) => ['  ' + t.name, t.location, t.state, t.last_success ? when(t.last_success) : '-', t.last_error ?? '-']);
    lines.push(`targets    ${r.targets.length}`, table(['  TARGET', 'LOCATION', 'STATE', 'LAST PUSH (UTC)', 'LAST ERROR'], rows));
  }
  if (r.drills.schedule !== null || r.drills.last.length > 0) {
    const last = r.drills.last.map((d) => `${d.source} ${d.ok ? 'passed' : 'FAILED'} ${when(d.at)}${d.error ? ` (${d.error})` : ''}`).join('; ');
    lines.push(`drills     ${r.drills.schedule ? `next ${when(r.drills.next_run)} UTC (${r.drills.schedule})` : 'not scheduled'}${last ? `; last: ${last}` : ''}`);
  }
  const t = r.retention;
  const policy = t.policy ? Object.entries(t.policy).map(([k, v]) => `${k}=${v}`).join(' ') : 'no keep_* rule: nothing is forgotten';
  lines.push(`retention  next ${when(t.next_run)} UTC (${t.schedule}); ${policy}${t.last_error ? `; last run failed: ${t.last_error}` : ''}`);
  for (const n of r.notes) lines.push(`note       ${n}`);
  return lines.join('\n');
}

/** The peers table of `status` and `peers`. */
export function formatPeers(peers: readonly PeerStatus[], now = Date.now()): string {
  const rows = peers.map((p) => [
    '  ' + p.name,
    p.address,
    p.state,
    p.pending === null ? '?' : String(p.pending),
    p.lag_s === null ? '?' : formatAge(p.lag_s),
    p.last_success ? `${formatAge((now - Date.parse(p.last_success)) / 1000)} ago` : 'never',
    p.replica ? `${p.replica.snapshots} snapshots${p.replica.newest ? `, newest ${when(p.replica.newest)}` : ''}` : '-',
    p.last_error && p.failures > 0 ? p.last_error : '-',
  ]);
  const out = [table(['  PEER', 'ADDRESS', 'PUSH', 'PENDING', 'LAG', 'LAST PUSH', 'ITS REPLICA HERE', 'LAST ERROR'], rows)];
  // what a disaster here would lose, per volume, given what each peer holds
  const points = peers.flatMap((p) => Object.entries(p.recovery_points ?? {}).map(([volume, time]) => [`  ${p.name}`, volume, `${formatAge((now - Date.parse(time)) / 1000)} (${when(time)})`]));
  if (points.length > 0) out.push('', table(['  ON PEER', 'VOLUME', 'RECOVERY POINT AGE'], points));
  return out.join('\n');
}

function formatLag(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : formatAge(ms / 1000);
}
