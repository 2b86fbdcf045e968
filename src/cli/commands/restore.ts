import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { shortId } from '../../repo/snapshot.ts';
import { findSnapshot } from '../../repo/snapshots.ts';
import { restore } from '../../restore/restorer.ts';
import { formatBytes } from '../../util/units.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

interface RestoreOptions extends RepoOptions {
  target?: string;
}

export function registerRestore(program: Command): void {
  repoCommand(program, 'restore', 'restore a snapshot into an empty directory')
    .argument('<snapshot>', 'snapshot id, unique prefix, or "latest"')
    .option('--target <dir>', 'empty or new directory to restore into')
    .action(async (ref: string, opts: RestoreOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!opts.target) throw new UsageError('restore needs --target DIR');
      const target = opts.target;
      const { snapshot, stats } = await withRepo(ctx, opts, async (repo, pool) => {
        const snapshot = findSnapshot(repo, ref);
        const progress = new ProgressLine(ctx.interactive);
        try {
          const stats = await restore(repo, snapshot, {
            target,
            pool: pool(),
            onWarning: (p, err) => {
              progress.done();
              ctx.log.warn({ path: p, err: err.message }, 'could not restore an entry');
            },
            onProgress: (p) => progress.update(p.files, p.bytesWritten, 'restored'),
          });
          return { snapshot, stats };
        } finally {
          progress.done();
        }
      });
      ctx.out({ snapshot: snapshot.id, target, ...stats }, () =>
        `restored snapshot ${shortId(snapshot.id)} to ${target}: ${stats.files} files, ${stats.dirs} dirs, ${formatBytes(stats.bytes_written)} in ${(stats.duration_ms / 1000).toFixed(2)} s`,
      );
      if (stats.errors > 0) {
        process.stderr.write(`lifeboat: ${stats.errors} entries could not be restored [LB_ERR_INCOMPLETE]\n`);
        process.exitCode = 1;
      }
    });
}
