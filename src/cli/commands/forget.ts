import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { forgetUnusedImages } from '../../backup/image-retention.ts';
import { forget } from '../../repo/forget.ts';
import type { RetentionPolicy } from '../../repo/retention.ts';
import { shortId } from '../../repo/snapshot.ts';
import { parseDuration } from '../../util/units.ts';
import { matches } from '../../repo/snapshots.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { filterOf, type FilterOptions, withFilterOptions } from '../filters.ts';
import { repoCommand } from '../program.ts';
import { describePrune, runPrune } from './prune.ts';

interface ForgetOptions extends RepoOptions, FilterOptions {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepTag?: string[];
  prune?: boolean;
  dryRun?: boolean;
}

const count = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} takes a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
};

const within = (v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined) throw new UsageError(`--keep-within takes a duration such as 30d or 1w2d, got ${JSON.stringify(v)}`);
  return ms;
};

export function registerForget(program: Command): void {
  withFilterOptions(repoCommand(program, 'forget', 'remove snapshots by a retention policy (per host and source)'), 'consider snapshots')
    .option('--keep-last <n>', 'keep the newest n snapshots')
    .option('--keep-hourly <n>', 'keep the newest snapshot of each of the last n hours that have one')
    .option('--keep-daily <n>', 'likewise for days')
    .option('--keep-weekly <n>', 'likewise for ISO weeks')
    .option('--keep-monthly <n>', 'likewise for months')
    .option('--keep-yearly <n>', 'likewise for years')
    .option('--keep-within <duration>', 'keep every snapshot taken within this long of the newest of its source ("30d", "1w2d")')
    .option('--keep-tag <tag>', 'keep every snapshot with this tag (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--prune', 'prune the repository afterwards')
    .option('--dry-run', 'only say what would be removed')
    .action(async (opts: ForgetOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const flags: RetentionPolicy = {
        keep_last: count('--keep-last', opts.keepLast),
        keep_hourly: count('--keep-hourly', opts.keepHourly),
        keep_daily: count('--keep-daily', opts.keepDaily),
        keep_weekly: count('--keep-weekly', opts.keepWeekly),
        keep_monthly: count('--keep-monthly', opts.keepMonthly),
        keep_yearly: count('--keep-yearly', opts.keepYearly),
        keep_within: within(opts.keepWithin),
        keep_tag: opts.keepTag,
      };
      const given = Object.values(flags).some((v) => v !== undefined);
      const policy = given ? flags : ctx.config.retention;
      if (Object.values(policy).every((v) => v === undefined)) {
        throw new UsageError('forget needs a policy: --keep-last N or another --keep-* option, or [retention] in the config');
      }
      const dryRun = opts.dryRun ?? false;
      const result = await withRepo(ctx, opts, async (repo) => {
        const filter = filterOf(opts);
        const decisions = forget(repo, policy, { dryRun, which: (s) => matches(s, filter) });
        const dropped = new Set(decisions.filter((d) => !d.keep).map((d) => d.snapshot.id));
        const images = (await forgetUnusedImages(repo, { dryRun, without: dropped })).map((s) => s.id);
        const removed = [...dropped, ...images];
        return { decisions, removed, images, pruned: opts.prune && !dryRun ? await runPrune(ctx, repo) : undefined };
      });
      const gone = new Set(result.removed);
      ctx.out(
        {
          kept: result.decisions.filter((d) => !gone.has(d.snapshot.id)).map((d) => ({ id: d.snapshot.id, reasons: d.reasons })),
          removed: result.removed,
          unused_images: result.images,
          dry_run: dryRun,
          prune: result.pruned ?? null,
        },
        () =>
          [
            `${dryRun ? 'would remove' : 'removed'} ${result.removed.length} snapshots (${result.images.length} of images no snapshot uses any more), kept ${result.decisions.length - result.removed.length}`,
            ...result.removed.map((id) => `  ${dryRun ? 'would remove' : 'removed'} ${shortId(id)}`),
            ...(result.pruned ? [describePrune(result.pruned)] : []),
          ].join('\n'),
      );
    });
}
