import type { Command } from 'commander';
import { filterSnapshots, repositoryTotals } from '../../repo/snapshots.ts';
import { formatBytes } from '../../util/units.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { filterOf, type FilterOptions, withFilterOptions } from '../filters.ts';
import { repoCommand } from '../program.ts';

/**
 * restic's two views in one: what the selected snapshots hold when restored
 * (their own totals, no tree walked), and what the repository stores for all
 * of them (from the index), deduplicated and compressed.
 */
export function registerStats(program: Command): void {
  withFilterOptions(repoCommand(program, 'stats', 'what the selected snapshots hold restored, and what the whole repository stores (deduplicated, compressed)'), 'count snapshots').action(
    async (opts: RepoOptions & FilterOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const r = await withRepo(ctx, opts, async (repo) => {
        const selected = filterSnapshots(repo, filterOf(opts));
        const restoreSize = selected.reduce((n, s) => n + s.stats.bytes_total, 0);
        const files = selected.reduce((n, s) => n + s.stats.files, 0);
        return { snapshots: selected.length, files, restore_bytes: restoreSize, repository: repositoryTotals(repo) };
      });
      const t = r.repository;
      ctx.out(r, () =>
        [
          `${r.snapshots} snapshots: ${r.files} files, ${formatBytes(r.restore_bytes)} when restored`,
          `repository: ${t.snapshots} snapshots, ${t.blobs} blobs of ${formatBytes(t.raw_bytes)}, stored in ${formatBytes(t.stored_bytes)} (${t.raw_bytes > 0 ? ((t.stored_bytes / t.raw_bytes) * 100).toFixed(1) : '0.0'}% after compression) in ${t.packs} packs of ${formatBytes(t.pack_bytes)}`,
          r.restore_bytes > 0 ? `restored, these snapshots would be ${(r.restore_bytes / Math.max(1, t.raw_bytes)).toFixed(2)}x the repository's unique data` : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
    },
  );
}
