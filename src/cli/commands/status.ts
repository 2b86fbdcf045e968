import type { Command } from 'commander';
import { nodeHttp, parseListen } from '../../agent/http.ts';
import { offlineStatus, type StatusReport } from '../../agent/status.ts';
import { AgentCatalog } from '../../catalog/agent-catalog.ts';
import { connectEngine, engineAddress } from '../../docker/connect.ts';
import { describeFailure, UsageError } from '../../errors/errors.ts';
import { Repository } from '../../repo/repository.ts';
import { shortId } from '../../repo/snapshot.ts';
import { listSnapshots } from '../../repo/snapshots.ts';
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
    const asked = await askAgent(listen);
    if ('report' in asked) return asked.report;
    return offline(ctx, opts, listen, `agent: not running (nothing answers at http://${listen}: ${asked.error})`);
  }
  return offline(ctx, opts, null, 'agent: unknown ([agent] listen is "", so the agent has no endpoint to ask)');
}

/** GET /status of the agent at a listen address; an unspecified address (0.0.0.0, ::) is asked on loopback. */
function askAgent(listen: string, timeoutMs = 3000): Promise<{ report: StatusReport } | { error: string }> {
  const { host, port } = parseListen(listen);
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve) => {
    const req = nodeHttp().get({ host: target, port, path: '/status', timeout: timeoutMs, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        try {
          const value = JSON.parse(body) as StatusReport;
          if (res.statusCode === 200 && value && typeof value === 'object' && 'agent' in value) resolve({ report: value });
          else resolve({ error: `HTTP ${res.statusCode}: not a Lifeboat agent's status` });
        } catch {
          resolve({ error: `HTTP ${res.statusCode}: not a Lifeboat agent's status` });
        }
      });
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code === 'ECONNREFUSED' ? 'connection refused' : err.message }));
  });
}

async function offline(ctx: Context, opts: Pick<RepoOptions, 'passwordFile'>, listen: string | null, why: string): Promise<StatusReport> {
  const config = ctx.config;
  const engine = await probeEngine(ctx);
  const catalog = AgentCatalog.exists(config.agent.state_dir) ? AgentCatalog.open(config.agent.state_dir) : undefined;
  try {
    return offlineStatus({ config, catalog, snapshots: await lastSnapshots(ctx, opts), engine, listen, why });
  } finally {
    catalog?.close();
  }
}

async function probeEngine(ctx: Context): Promise<StatusReport['engine']> {
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

/** Newest snapshot per volume of this host, or why the repository could not be read. */
async function lastSnapshots(ctx: Context, opts: Pick<RepoOptions, 'passwordFile'>): Promise<Map<string, { id: string; time: string }> | { error: string }> {
  let repo: Repository;
  try {
    repo = await Repository.open(ctx.config.repository.path, readPassword(ctx, opts));
  } catch (err) {
    return { error: `${describeFailure(err).message}; last snapshots not shown` };
  }
  try {
    const newest = new Map<string, { id: string; time: string }>();
    for (const s of listSnapshots(repo)) {
      if (s.host === ctx.config.agent.host && s.volume !== null) newest.set(s.volume, { id: s.id, time: s.time });
    }
    return newest;
  } finally {
    repo.close();
  }
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
  const t = r.retention;
  const policy = t.policy ? Object.entries(t.policy).map(([k, v]) => `${k}=${v}`).join(' ') : 'no keep_* rule: nothing is forgotten';
  lines.push(`retention  next ${when(t.next_run)} UTC (${t.schedule}); ${policy}${t.last_error ? `; last run failed: ${t.last_error}` : ''}`);
  for (const n of r.notes) lines.push(`note       ${n}`);
  return lines.join('\n');
}

function formatLag(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : formatAge(ms / 1000);
}
