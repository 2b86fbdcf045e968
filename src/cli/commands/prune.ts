import type { Command } from 'commander';
import { prune, type PruneReport, REPACK_UNUSED } from '../../repo/prune.ts';
import type { Repository } from '../../repo/repository.ts';
import { formatBytes } from '../../util/units.ts';
import { type Context, type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';
import { ProgressLine } from '../progress.ts';

export function registerPrune(program: Command): void {
  repoCommand(program, 'prune', 'remove data no snapshot references and repack sparse packs').action(async (opts: RepoOptions, cmd: Command) => {
    const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
    const report = await withRepo(ctx, opts, (repo) => runPrune(ctx, repo));
    ctx.out(report, () => describePrune(report));
  });
}

const UNITS: Record<string, string> = { scanned: 'packs', walked: 'snapshots', repacked: 'packs' };

export async function runPrune(ctx: Context, repo: Repository): Promise<PruneReport> {
  const progress = new ProgressLine(ctx.interactive);
  try {
    return await prune(repo, { maxUnused: REPACK_UNUSED, packSize: ctx.config.repository.pack_size, onProgress: (phase, done, total) => progress.step(phase, done, total, UNITS[phase] ?? 'items') });
  } finally {
    progress.done();
  }
}

export function describePrune(r: PruneReport): string {
  return `pruned: ${r.packs_deleted} packs deleted, ${r.packs_repacked} repacked into ${r.packs_written}, ${r.blobs_removed} blobs removed, ${r.orphans_removed} orphan files removed, ${formatBytes(r.bytes_freed)} freed`;
}
