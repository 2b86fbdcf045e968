import type { Command } from 'commander';
import { verify } from '../../repo/verify.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

interface VerifyOptions extends RepoOptions {
  readData?: boolean;
}

export function registerVerify(program: Command): void {
  repoCommand(program, 'verify', 'check the repository\'s structure, and with --read-data every blob')
    .alias('check')
    .option('--read-data', 'decrypt and re-hash every stored blob')
    .action(async (opts: VerifyOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const progress = new ProgressLine(ctx.interactive);
      const report = await withRepo(ctx, opts, (repo, pool) =>
        verify(repo, pool(), { readData: opts.readData ?? false, onProgress: (done, total) => progress.update(done.packs, done.bytes, 'read', { count: total.packs, bytes: total.bytes }, 'packs') }).finally(() => progress.done()),
      );
      ctx.out({ ok: report.problems.length === 0, ...report }, () => {
        const lines = [
          `checked ${report.snapshots} snapshots, ${report.trees} trees, ${report.blobs} block references, ${report.packs} packs` +
            (opts.readData ? `; read and authenticated ${report.blobs_read} blobs` : ''),
        ];
        if (report.unreferenced_packs > 0) lines.push(`${report.unreferenced_packs} pack files are unreferenced (left by an interrupted write; prune removes them)`);
        for (const p of report.problems) {
          lines.push(`error: ${p.message}`);
          for (const a of p.affects ?? []) lines.push(`  used by snapshot ${a.snapshot}: ${a.path}`);
        }
        lines.push(report.problems.length === 0 ? 'no errors' : `${report.problems.length} errors`);
        return lines.join('\n');
      });
      if (report.problems.length > 0) {
        process.stderr.write(`lifeboat: repository has ${report.problems.length} errors [LB_ERR_VERIFY_FAILED]\n`);
        process.exitCode = 1;
      }
    });
}
