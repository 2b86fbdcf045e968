import type { Command } from 'commander';
import { shortId } from '../../repo/snapshot.ts';
import { filterSnapshots } from '../../repo/snapshots.ts';
import { formatBytes } from '../../util/units.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { filterOf, type FilterOptions, withFilterOptions } from '../filters.ts';
import { repoCommand } from '../program.ts';

export function registerSnapshots(program: Command): void {
  withFilterOptions(repoCommand(program, 'snapshots', 'list snapshots, oldest first'), 'snapshots').action(async (opts: RepoOptions & FilterOptions, cmd: Command) => {
    const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
    const snapshots = await withRepo(ctx, opts, async (repo) => filterSnapshots(repo, filterOf(opts)));
    ctx.out(
      snapshots.map((s) => ({ ...s, tree: s.tree.toString('hex'), short_id: shortId(s.id) })),
      () => {
        if (snapshots.length === 0) return 'no snapshots';
        const rows = snapshots.map((s) => [
          shortId(s.id),
          s.time.replace('T', ' ').slice(0, 19),
          s.host,
          s.volume ?? s.source,
          formatBytes(s.stats.bytes_total),
          s.tags.join(','),
        ]);
        return table(['ID', 'Time (UTC)', 'Host', 'Source', 'Size', 'Tags'], rows);
      },
    );
  });
}

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}
