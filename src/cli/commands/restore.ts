import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { volumeWorkThroughAgent } from '../agent-client.ts';
import { shortId } from '../../repo/snapshot.ts';
import { findSnapshot } from '../../repo/snapshots.ts';
import { restore, type RestoreOptions as RestoreRun, type RestoreStats } from '../../restore/restorer.ts';
import { formatBytes } from '../../util/units.ts';
import { type Context, type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { filterOf, type FilterOptions, withFilterOptions } from '../filters.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

interface RestoreOptions extends RepoOptions, FilterOptions {
  target?: string;
  toVolume?: string;
  force?: boolean;
  include?: string[];
  exclude?: string[];
}

const collect = (v: string, acc: string[] = []) => [...acc, v];

/** POST /restore on the running agent when it tracks the volume; undefined when no agent answers or it leaves the volume to this command. */
function restoreThroughAgent(ctx: Context, volume: string, snapshot: string, opts: RestoreOptions): Promise<RestoreStats | undefined> {
  const q = new URLSearchParams({ volume, snapshot });
  if (opts.force) q.set('force', '1');
  for (const p of opts.include ?? []) q.append('include', p);
  for (const p of opts.exclude ?? []) q.append('exclude', p);
  return volumeWorkThroughAgent<RestoreStats>(ctx.config.agent, ctx.configFile, `/restore?${q}`);
}

export function registerRestore(program: Command): void {
  withFilterOptions(repoCommand(program, 'restore', 'restore a snapshot into an empty directory or a Docker volume'), 'snapshots')
    .argument('<snapshot>', 'snapshot id, unique prefix, or "latest" (the newest of the one source the filters select)')
    .option('--target <dir>', 'empty or new directory to restore into')
    .option('--to-volume <name>', 'Docker volume to restore into (created if missing; needs --config)')
    .option('--force', 'with --to-volume: replace the contents of a volume that is not empty')
    .option('--include <pattern>', 'restore only what this glob matches (a path from the snapshot\'s root with a /, else a name), and the directories on the way (repeatable)', collect)
    .option('--exclude <pattern>', 'leave out what this glob matches, and what is below it (repeatable)', collect)
    .action(async (ref: string, opts: RestoreOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if ((opts.target === undefined) === (opts.toVolume === undefined)) throw new UsageError('restore needs either --target DIR or --to-volume NAME');
      if (opts.toVolume !== undefined && !ctx.configFile) throw new UsageError('restoring into a Docker volume needs --config FILE');
      if (opts.force && opts.toVolume === undefined) throw new UsageError('--force goes with --to-volume');
      // --force empties the volume first: with a partial restore that would lose what is left out
      if (opts.force && (opts.include?.length || opts.exclude?.length)) throw new UsageError('a partial restore (--include, --exclude) never empties a volume: restore into a new volume, or into a --target directory');
      const progress = new ProgressLine(ctx.interactive);
      const { snapshot, stats, where } = await withRepo(ctx, opts, async (repo, pool) => {
        const snapshot = findSnapshot(repo, ref, filterOf(opts));
        // a volume the running agent tracks is restored by the agent, never beside one of its backups
        const viaAgent = opts.toVolume !== undefined ? await restoreThroughAgent(ctx, opts.toVolume, snapshot.id, opts) : undefined;
        if (viaAgent) return { snapshot, stats: viaAgent, where: `volume ${opts.toVolume} (by the running agent)` };
        const run: Omit<RestoreRun, 'target'> = {
          pool: pool(),
          include: opts.include ?? [],
          exclude: opts.exclude ?? [],
          onWarning: (p, err) => {
            progress.done();
            ctx.log.warn({ path: p, err: err.message }, 'could not restore an entry');
          },
          onProgress: (p) => progress.update(p.files, p.bytesWritten, 'restored', { count: snapshot.stats.files, bytes: snapshot.stats.bytes_total }),
        };
        try {
          if (opts.target !== undefined) {
            const stats: RestoreStats = await restore(repo, snapshot, { ...run, target: opts.target });
            return { snapshot, stats, where: opts.target };
          }
          const [{ restoreToVolume }, { connectEngine }] = await Promise.all([import('../../restore/volume.ts'), import('../../docker/connect.ts')]);
          const r = await restoreToVolume(connectEngine(ctx.config), repo, snapshot, { ...run, volume: opts.toVolume!, force: opts.force ?? false });
          return { snapshot, stats: r.stats, where: `volume ${r.volume.name}${r.created ? ' (created)' : ''}` };
        } finally {
          progress.done();
        }
      });
      ctx.out({ snapshot: snapshot.id, target: opts.target ?? null, volume: opts.toVolume ?? null, ...stats }, () =>
        `restored snapshot ${shortId(snapshot.id)} to ${where}: ${stats.files} files, ${stats.dirs} dirs, ${formatBytes(stats.bytes_written)} in ${(stats.duration_ms / 1000).toFixed(2)} s`,
      );
      if (stats.errors > 0) {
        process.stderr.write(`lifeboat: ${stats.errors} entries could not be restored [LB_ERR_INCOMPLETE]\n`);
        process.exitCode = 1;
      }
    });
}
