import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { backup, type BackupOptions as ArchiveOptions } from '../../backup/archiver.ts';
import { AgentJobError, UsageError } from '../../errors/errors.ts';
import { askAgent, volumeWorkThroughAgent } from '../agent-client.ts';
import type { Snapshot } from '../../repo/snapshot.ts';
import { shortId } from '../../repo/snapshot.ts';
import type { SplitterSpec } from '../../repo/splitter-spec.ts';
import { formatBytes, parseSize } from '../../util/units.ts';
import { type Context, type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { interruptible } from '../interrupt.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';
import { compressionLevel } from '../../config/schema.ts';
import { cacheDir, FingerprintCache } from '../../catalog/fingerprints.ts';
import type { Repository } from '../../repo/repository.ts';

/** What a volume backup adds to the result. */
interface VolumeExtra {
  containers?: readonly { container: string; action: string; ms: number }[];
  warnings?: readonly string[];
  images?: readonly unknown[];
}

interface BackupOptions extends RepoOptions {
  path?: string;
  host?: string;
  tag: string[];
  blockSize?: string;
  chunker?: string;
  exclude: string[];
  excludeFile: string[];
}

/** --exclude patterns, and those of each --exclude-file: one a line, blank lines and # comments skipped. */
function excludesOf(opts: BackupOptions): string[] {
  const fromFiles = opts.excludeFile.flatMap((file) => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read --exclude-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  });
  return [...opts.exclude, ...fromFiles];
}

export function registerBackup(program: Command): void {
  repoCommand(program, 'backup', 'back up a Docker volume (with a config) or a directory (--path) into the repository')
    .argument('[volume]', 'Docker volume to back up, with its containers made consistent as their labels ask')
    .option('--path <dir>', 'directory to back up')
    .option('--host <name>', 'host name recorded in the snapshot (default: this host)')
    .option('--tag <tag>', 'tag the snapshot (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--block-size <size>', 'block size, e.g. 64KiB (default: the config\'s backup.block_size)')
    .option('--chunker <kind>', 'fixed or cdc (default: the config\'s backup.chunker)')
    .option('--exclude <pattern>', 'leave out what this glob matches (a path from the backed-up root with a /, else a name) and what is below it (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--exclude-file <file>', 'read --exclude patterns from a file, one a line (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .action(async (volume: string | undefined, opts: BackupOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if ((volume === undefined) === (opts.path === undefined)) throw new UsageError('backup needs either a VOLUME or --path DIR');
      if (volume !== undefined && !ctx.configFile) throw new UsageError('backing up a Docker volume needs --config FILE');
      const splitter = splitterOf(ctx, opts);
      const exclude = excludesOf(opts);
      // A volume the running agent tracks is backed up by the agent: one backup of a volume at a
      // time (its containers paused by one backup only), and its status and metrics see it.
      const viaAgent = volume !== undefined ? await throughAgent(ctx, volume, opts) : undefined;
      if (viaAgent) {
        ctx.out({ snapshot: viaAgent.id, parent: viaAgent.parent, volume: viaAgent.volume, ...viaAgent.stats, through_agent: true }, () => `${describe(viaAgent, {})}
  (backed up by the running agent)`);
        if (viaAgent.stats.errors > 0) {
          process.stderr.write(`lifeboat: snapshot ${shortId(viaAgent.id)} saved, but ${viaAgent.stats.errors} entries could not be read [LB_ERR_INCOMPLETE]\n`);
          process.exitCode = 3;
        }
        return;
      }
      const progress = new ProgressLine(ctx.interactive);
      // Ctrl-C or a stop: the backup is abandoned, its containers returned to their state and the lock released first.
      const interrupted = {
        what: volume === undefined ? `backup of ${path.resolve(opts.path!)}` : `backup of volume ${volume}`,
        stopped: volume === undefined ? 'no snapshot was saved' : 'no snapshot of it was saved, and its containers are back as they were',
        interactive: ctx.interactive,
      };
      const { snapshot, extra } = await interruptible(interrupted, (interrupt) => withRepo(ctx, opts, async (repo, pool): Promise<{ snapshot: Snapshot; extra: VolumeExtra }> => {
        const archive: Omit<ArchiveOptions, 'source'> = {
          host: opts.host ?? ctx.config.agent.host,
          tags: opts.tag,
          exclude,
          splitter,
          packSize: ctx.config.repository.pack_size,
          compressionLevel: compressionLevel(ctx.config),
          pool: pool(),
          onWarning: (p, err) => {
            progress.done();
            ctx.log.warn({ path: p, err: err.message }, 'skipped an entry it could not read');
          },
          onDamage: (message) => {
            progress.done();
            process.stderr.write(`lifeboat: warning: the repository is damaged: ${message}\n`);
          },
          onProgress: (p) => progress.update(p.files, p.bytesRead, 'read'),
        };
        try {
          if (volume === undefined) return { snapshot: await backupDirectory(ctx, repo, { ...archive, source: opts.path! }), extra: {} };
          // Docker's modules load only for a volume backup
          const [{ backupVolume, configuredVolumeBackup }, { AgentCatalog }, { connectEngine }, { quiescedByThisProcess }] = await Promise.all([
            import('../../backup/volume.ts'),
            import('../../catalog/agent-catalog.ts'),
            import('../../docker/connect.ts'),
            import('../../docker/consistency.ts'),
          ]);
          // The agent's catalog, shared with a running agent: its quiesce journal outlives this process.
          const catalog = AgentCatalog.open(ctx.config.agent.state_dir);
          // A second signal exits without returning them: say which, and how they come back.
          interrupt.onAbandon(() => {
            const left = quiescedByThisProcess(catalog);
            if (left.length === 0) return undefined;
            const names = left.map((r) => `container ${r.name} (${r.action})`).join(', ');
            return `exiting without putting back ${names}; the next volume backup or the agent puts them back, or docker unpause / docker start them`;
          });
          try {
            const r = await backupVolume(connectEngine(ctx.config), repo, {
              ...configuredVolumeBackup(ctx.config, catalog, volume),
              ...archive,
              volume,
              log: ctx.log,
              signal: interrupt.signal,
            });
            return { snapshot: r.snapshot, extra: { containers: r.report.actions, warnings: r.report.warnings, images: r.images } };
          } finally {
            catalog.close();
          }
        } finally {
          progress.done();
        }
      }, { interrupt, open: { reserve: 'keep' } }));
      ctx.out({ snapshot: snapshot.id, parent: snapshot.parent, volume: snapshot.volume, ...snapshot.stats, ...extra }, () => describe(snapshot, extra));
      for (const w of extra.warnings ?? []) process.stderr.write(`lifeboat: warning: ${w}\n`);
      const s = snapshot.stats;
      if (s.errors > 0) {
        process.stderr.write(`lifeboat: snapshot ${shortId(snapshot.id)} saved, but ${s.errors} entries could not be read [LB_ERR_INCOMPLETE]\n`);
        // restic's convention: 3 is "a snapshot was saved, but not of everything", distinct from a failure
        process.exitCode = 3;
      }
    });
}

/**
 * Backs a directory up with this host's fingerprint cache of the repository,
 * or without one where it cannot be kept (a home that cannot be written):
 * then every changed large file is hashed whole, nothing else differs.
 */
async function backupDirectory(ctx: Context, repo: Repository, opts: ArchiveOptions): Promise<Snapshot> {
  let cache: FingerprintCache | undefined;
  try {
    cache = FingerprintCache.open(cacheDir(), repo.id);
  } catch (err) {
    ctx.log.debug({ err: (err as Error).message, dir: cacheDir() }, 'no fingerprint cache: changed files are hashed whole');
  }
  try {
    return await backup(repo, { ...opts, ...(cache ? { fingerprints: cache.of(opts.host, path.resolve(opts.source)) } : {}) });
  } finally {
    cache?.close();
  }
}

/**
 * POST /backup on the running agent, when one answers at [agent] listen and
 * tracks the volume; undefined when none answers (the command does the work).
 */
async function throughAgent(ctx: Context, volume: string, opts: BackupOptions): Promise<Snapshot | undefined> {
  const listen = ctx.config.agent.listen;
  if (!ctx.configFile || listen === '') return undefined;
  const own = [opts.host && '--host', opts.blockSize && '--block-size', opts.chunker && '--chunker', opts.tag.length > 0 && '--tag', (opts.exclude.length > 0 || opts.excludeFile.length > 0) && '--exclude'].filter(Boolean);
  if (own.length > 0) {
    // the agent backs its volumes up with its config's settings: these cannot be honoured there
    if ('unreachable' in (await askAgent(ctx.config.agent, 'GET', '/healthz', 5000))) return undefined;
    throw new UsageError(`the running agent backs volume ${volume} up with its config's settings; ${own.join(', ')} apply only when no agent runs`);
  }
  const r = await volumeWorkThroughAgent<{ outcome: string; snapshot?: Snapshot; error?: { message: string; code: string } }>(ctx.config.agent, ctx.configFile, `/backup?volume=${encodeURIComponent(volume)}`);
  if (!r) return undefined;
  if (r.outcome === 'failure') throw new AgentJobError(r.error?.message ?? 'the backup failed', r.error?.code ?? 'LB_ERR_INTERNAL');
  if (r.outcome !== 'success' || !r.snapshot) throw new AgentJobError(`the backup was ${r.outcome} (the agent is stopping)`, 'LB_ERR_INTERRUPTED');
  return r.snapshot;
}

function splitterOf(ctx: Context, opts: BackupOptions): SplitterSpec {
  const size = opts.blockSize === undefined ? ctx.config.backup.block_size : parseSize(opts.blockSize);
  if (size === undefined || size < 4096 || size > 8 * 1024 * 1024 || (size & (size - 1)) !== 0) {
    throw new UsageError(`--block-size must be a power of two between 4KiB and 8MiB, got ${JSON.stringify(opts.blockSize)}`);
  }
  const kind = opts.chunker ?? ctx.config.backup.chunker;
  if (kind !== 'fixed' && kind !== 'cdc') throw new UsageError(`--chunker must be fixed or cdc, got ${JSON.stringify(kind)}`);
  return { kind, size };
}

function describe(snapshot: Snapshot, extra: VolumeExtra): string {
  const s = snapshot.stats;
  return [
    `snapshot ${shortId(snapshot.id)} saved${snapshot.volume ? ` of volume ${snapshot.volume}` : ''}${snapshot.parent ? ` (parent ${shortId(snapshot.parent)})` : ''}`,
    `  files: ${s.files} (${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged), dirs: ${s.dirs}`,
    `  read ${formatBytes(s.bytes_read)}, added ${formatBytes(s.bytes_new)}, stored ${formatBytes(s.bytes_stored)} in ${(s.duration_ms / 1000).toFixed(2)} s`,
    ...(extra.containers ?? []).map((a) => `  container ${a.container} was ${a.action} for ${(a.ms / 1000).toFixed(2)} s`),
  ].join('\n');
}
