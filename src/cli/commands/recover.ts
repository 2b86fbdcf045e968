import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { InterruptedError, NotARepositoryError, PasswordMissingError, RecoveryBlockedError, RecoveryIncompleteError, UsageError } from '../../errors/errors.ts';
import type { RecoveryReport } from '../../recover/recover.ts';
import { RECOVERY_LABEL } from '../../recover/labels.ts';
import { replicaDir } from '../../replicate/replica-path.ts';
import { Repository } from '../../repo/repository.ts';
import { shortId } from '../../repo/snapshot.ts';
import { formatBytes } from '../../util/units.ts';
import type { WorkerPool } from '../../workers/pool.ts';
import { type Context, type GlobalOptions, makeContext, makePool, readPassword } from '../context.ts';
import { type Interrupt, interruptible } from '../interrupt.ts';
import { table } from './snapshots.ts';
import { ProgressLine } from '../progress.ts';

/** What recover and drill take to find the host's snapshots. */
export interface SourceOptions {
  from: string;
  repo?: string;
  passwordFile?: string;
}

interface RecoverCliOptions extends SourceOptions {
  container: string[];
  snapshotTime?: string;
  dryRun?: boolean;
  force?: boolean;
}

export function registerRecover(program: Command): void {
  sourceCommand(program, 'recover', 'bring a lost host\'s containers back on this engine, with their volumes and images')
    .option('--container <name>', 'recover only this container (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--snapshot-time <time>', 'use the newest snapshots at or before this time (ISO 8601) instead of the latest')
    .option('--dry-run', 'check and print the plan with every blocker; change nothing')
    .option('--force', 'replace containers and non-empty volumes here that a recovery did not make')
    .action(async (opts: RecoverCliOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const at = opts.snapshotTime === undefined ? undefined : parseTime(opts.snapshotTime);
      const [{ recover }, { connectEngine }] = await Promise.all([import('../../recover/recover.ts'), import('../../docker/connect.ts')]);
      // Ctrl-C or a stop: nothing more is started, the restore under way is abandoned; a second signal exits at once.
      const again = `run recover again to finish it (what it made carries ${RECOVERY_LABEL.recoveredFrom}=${opts.from} and is kept)`;
      let interrupt: Interrupt | undefined;
      const report = await interruptible({ what: `recovery of host ${opts.from}`, stopped: again, interactive: ctx.interactive }, (i) => {
        interrupt = i;
        i.onAbandon(() => `exiting now, in the middle of the recovery; ${again}`);
        const progress = new ProgressLine(ctx.interactive);
        return withSource(
          ctx,
          opts,
          'recover',
          (repo, pool, onlyHostSnapshots) =>
            recover(connectEngine(ctx.config), repo, opts.from, {
              onProgress: (volume, done, total) => progress.update(done.files, done.bytes, `volume ${volume}: restored`, { count: total.files, bytes: total.bytes }),
              onlyHostSnapshots,
              ...(at ? { at } : {}),
              ...(opts.container.length > 0 ? { containers: opts.container } : {}),
              force: opts.force ?? false,
              dryRun: opts.dryRun ?? false,
              pool: pool(),
              workDir: path.join(ctx.config.agent.state_dir, 'tmp'),
              log: ctx.log,
              startedAt: Math.round(performance.timeOrigin),
              signal: i.signal,
            }).finally(() => progress.done()),
          i,
        );
      });
      ctx.out(report, () => describeRecovery(report));
      if (!report.dry_run) await notifyRecovered(ctx, opts.from, report);
      if (interrupt?.reason) {
        const done = report.containers.filter((c) => c.outcome === 'started' || c.outcome === 'created' || c.outcome === 'kept').length;
        const what = report.dry_run ? 'the dry run is incomplete' : `${done} of ${report.containers.length} containers recovered; ${again}`;
        throw new InterruptedError(`${interrupt.reason.message}: ${what}`);
      }
      if (report.dry_run && report.blockers.length > 0) {
        throw new RecoveryBlockedError(`${report.blockers.length} blocker${report.blockers.length === 1 ? '' : 's'}: not everything of host ${opts.from} can be recovered here`);
      }
      if (!report.complete && !report.dry_run) {
        const missed = report.containers.filter((c) => c.outcome === 'skipped' || c.outcome === 'failed').length;
        const volumes = report.volumes.filter((v) => v.outcome === 'skipped' || v.outcome === 'failed').length;
        throw new RecoveryIncompleteError(
          `recovery of host ${opts.from} is incomplete: ${missed} of ${report.containers.length} containers${volumes > 0 ? ` and ${volumes} volumes` : ''} not recovered`,
        );
      }
    });
}

/** How long recover waits for the [[notify]] entries to take the news. */
const NOTIFY_WAIT_MS = 30_000;

/**
 * Tells the config's [[notify]] entries (those taking `recovered`) that a
 * host's containers were brought back here. A delivery that fails is logged;
 * it never changes the recovery's outcome.
 */
async function notifyRecovered(ctx: Context, source: string, report: RecoveryReport): Promise<void> {
  if (!ctx.config.notify.some((n) => n.type !== 'heartbeat' && n.events.includes('recovered'))) return;
  const { Notifier } = await import('../../notify/notifier.ts');
  const told = new Map<string, string>();
  const notifier = new Notifier({
    host: ctx.config.agent.host,
    entries: ctx.config.notify,
    store: { get: (k) => told.get(k), set: (k, v) => void told.set(k, v) },
    log: ctx.log,
  });
  const started = report.containers.filter((c) => c.outcome === 'started').length;
  const what = `${started} of ${report.containers.length} containers running, ${report.volumes.length} volumes restored`;
  notifier.recovered(source, `host ${source} recovered on ${ctx.config.agent.host}${report.complete ? '' : ' (incomplete)'}: ${what}${report.rto_ms === null ? '' : `, RTO ${(report.rto_ms / 1000).toFixed(1)} s`}`, {
    source,
    complete: report.complete,
    containers: report.containers.length,
    started,
    volumes: report.volumes.length,
    rto_ms: report.rto_ms,
    snapshot_time: report.at,
  });
  if (!(await notifier.flush(NOTIFY_WAIT_MS))) ctx.log.warn({ source }, `the recovery notification was not delivered within ${NOTIFY_WAIT_MS / 1000} s`);
  await notifier.close();
}

/** A command that reads a host's snapshots: --from, --repo, --password-file. */
export function sourceCommand(program: Command, name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .requiredOption('--from <host>', 'the host to recover: a [[peer]] name (its replica here), or with --repo the host name its snapshots carry')
    .option('--repo <dir>', 'recover from this repository\'s snapshots of HOST instead of the peer\'s replica')
    .option('--password-file <file>', 'the source host\'s repository password (else the peer\'s password_file, else LIFEBOAT_PASSWORD)');
}

/**
 * Opens the source's repository and a worker pool for fn, closing both after.
 * With --repo, that repository's snapshots of HOST; without, the replica of
 * the [[peer]] named HOST, all of whose snapshots are that host's. The
 * password is the source host's: --password-file, the peer's password_file,
 * or LIFEBOAT_PASSWORD (never this host's own repository password).
 */
export async function withSource<T>(
  ctx: Context,
  opts: SourceOptions,
  command: string,
  fn: (repo: Repository, pool: () => WorkerPool, onlyHostSnapshots: boolean) => Promise<T>,
  interrupt?: Interrupt,
): Promise<T> {
  if (!ctx.configFile) throw new UsageError(`${command} needs --config FILE (for the Docker engine and the state directory)`);
  const peer = ctx.config.peer.find((p) => p.name === opts.from);
  let dir: string;
  if (opts.repo !== undefined) {
    dir = opts.repo;
  } else {
    if (!peer) throw new UsageError(`no [[peer]] named ${JSON.stringify(opts.from)} in ${ctx.configFile}; pass --repo DIR to use a repository`);
    dir = replicaDir(ctx.config.agent.state_dir, peer.id);
    if (!fs.existsSync(dir)) throw new NotARepositoryError(dir, `no replica of peer ${peer.name} has been received here`);
  }
  const file = opts.passwordFile ?? peer?.password_file;
  let password: string;
  if (file !== undefined) password = readPassword(ctx, { passwordFile: file });
  else if (process.env.LIFEBOAT_PASSWORD) password = process.env.LIFEBOAT_PASSWORD;
  else throw new PasswordMissingError();
  const repo = await Repository.open(dir, password);
  let pool: WorkerPool | undefined;
  try {
    return await fn(repo, () => (pool ??= makePool(ctx, repo, interrupt)), opts.repo !== undefined);
  } finally {
    await pool?.close();
    repo.close();
  }
}

function parseTime(text: string): Date {
  const ms = Date.parse(text);
  if (!/^\d{4}-\d\d-\d\d/.test(text.trim()) || !Number.isFinite(ms)) {
    throw new UsageError(`--snapshot-time must be a time such as 2026-05-01T12:00:00Z, got ${JSON.stringify(text)}`);
  }
  return new Date(ms);
}

const seconds = (ms: number | null) => (ms === null ? '' : `${(ms / 1000).toFixed(2)} s`);
const did = (action: string, outcome: string | null) => (outcome === null ? action : `${action} -> ${outcome}`);

function describeRecovery(r: RecoveryReport): string {
  const when = r.at ? `snapshots at or before ${r.at}` : 'latest snapshots';
  const lines = [`${r.dry_run ? 'plan for the recovery' : 'recovery'} of host ${r.host} on ${r.engine.name} (${r.engine.os}/${r.engine.architecture}), ${when}`, ''];
  lines.push(
    table(
      ['VOLUME', 'SNAPSHOT', 'TIME', 'ACTION', 'RESTORED'],
      r.volumes.map((v) => [v.target, shortId(v.snapshot), v.time, v.blockers.length > 0 ? 'BLOCKED' : did(v.action, v.outcome), v.bytes === null ? '' : `${v.files} files, ${formatBytes(v.bytes)}`]),
    ),
    '',
    table(
      ['IMAGE', 'PLATFORM', 'SOURCE', 'RESULT'],
      r.images.map((i) => [i.tags[0] ?? i.id.slice(7, 19), i.platform, i.blockers.length > 0 ? 'BLOCKED' : i.source, i.outcome ?? '']),
    ),
    '',
    table(
      ['CONTAINER', 'AT BACKUP', 'ACTION', 'RTO'],
      r.containers.map((c) => [c.target, c.state_at_backup, c.blockers.length > 0 ? 'BLOCKED' : did(c.action, c.outcome), seconds(c.rto_ms)]),
    ),
  );
  const created = r.networks.filter((n) => n.action === 'create');
  if (created.length > 0) lines.push('', `networks to create: ${created.map((n) => (n.outcome ? `${n.name} (${n.outcome})` : n.name)).join(', ')}`);
  const skipped = r.containers.filter((c) => c.reason !== null);
  if (skipped.length > 0) lines.push('', 'not recovered:', ...skipped.map((c) => `  ${c.target}: ${c.reason}`));
  if (r.dry_run && r.blockers.length > 0) lines.push('', 'blockers:', ...r.blockers.map((b) => `  ${b}`));
  if (r.warnings.length > 0) lines.push('', 'warnings:', ...r.warnings.map((w) => `  ${w}`));
  if (!r.dry_run) lines.push('', `RTO ${r.rto_ms === null ? 'n/a (nothing started)' : seconds(r.rto_ms)}; ${seconds(r.duration_ms)} in all`);
  return lines.join('\n');
}
