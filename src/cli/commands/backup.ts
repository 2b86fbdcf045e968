import type { Command } from 'commander';
import { backup } from '../../backup/archiver.ts';
import { UsageError } from '../../errors/errors.ts';
import { shortId } from '../../repo/snapshot.ts';
import { formatBytes, parseSize } from '../../util/units.ts';
import { compressionLevel, type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

interface BackupOptions extends RepoOptions {
  path?: string;
  host?: string;
  tag: string[];
  blockSize?: string;
  chunker?: string;
}

export function registerBackup(program: Command): void {
  repoCommand(program, 'backup', 'back up a directory into the repository')
    .option('--path <dir>', 'directory to back up')
    .option('--host <name>', 'host name recorded in the snapshot (default: this host)')
    .option('--tag <tag>', 'tag the snapshot (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--block-size <size>', 'block size, e.g. 64KiB (default: the config\'s backup.block_size)')
    .option('--chunker <kind>', 'fixed or cdc (default: the config\'s backup.chunker)')
    .action(async (opts: BackupOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!opts.path) throw new UsageError('backup needs --path DIR');
      const size = opts.blockSize === undefined ? ctx.config.backup.block_size : parseSize(opts.blockSize);
      if (size === undefined || size < 4096 || size > 8 * 1024 * 1024 || (size & (size - 1)) !== 0) {
        throw new UsageError(`--block-size must be a power of two between 4KiB and 8MiB, got ${JSON.stringify(opts.blockSize)}`);
      }
      const kind = opts.chunker ?? ctx.config.backup.chunker;
      if (kind !== 'fixed' && kind !== 'cdc') throw new UsageError(`--chunker must be fixed or cdc, got ${JSON.stringify(kind)}`);
      const source = opts.path;
      const snapshot = await withRepo(ctx, opts, async (repo, pool) => {
        const progress = new ProgressLine(ctx.interactive);
        try {
          return await backup(repo, {
            source,
            host: opts.host ?? ctx.config.agent.host,
            tags: opts.tag,
            splitter: { kind, size },
            packSize: ctx.config.repository.pack_size,
            compressionLevel: compressionLevel(ctx),
            pool: pool(),
            onWarning: (p, err) => {
              progress.done();
              ctx.log.warn({ path: p, err: err.message }, 'skipped an entry it could not read');
            },
            onProgress: (p) => progress.update(p.files, p.bytesRead, 'read'),
          });
        } finally {
          progress.done();
        }
      });
      const s = snapshot.stats;
      ctx.out({ snapshot: snapshot.id, parent: snapshot.parent, ...s }, () =>
        [
          `snapshot ${shortId(snapshot.id)} saved${snapshot.parent ? ` (parent ${shortId(snapshot.parent)})` : ''}`,
          `  files: ${s.files} (${s.files_new} new, ${s.files_changed} changed, ${s.files_unchanged} unchanged), dirs: ${s.dirs}`,
          `  read ${formatBytes(s.bytes_read)}, added ${formatBytes(s.bytes_new)}, stored ${formatBytes(s.bytes_stored)} in ${(s.duration_ms / 1000).toFixed(2)} s`,
        ].join('\n'),
      );
      if (s.errors > 0) {
        process.stderr.write(`lifeboat: snapshot ${shortId(snapshot.id)} saved, but ${s.errors} entries could not be read [LB_ERR_INCOMPLETE]\n`);
        process.exitCode = 1;
      }
    });
}
