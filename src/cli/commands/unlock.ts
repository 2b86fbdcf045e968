import type { Command } from 'commander';
import type { LockDescription, UnlockReport } from '../../repo/lock.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { repoCommand } from '../program.ts';

interface UnlockOptions extends RepoOptions {
  removeAll?: boolean;
}

export function registerUnlock(program: Command): void {
  repoCommand(program, 'unlock', 'remove stale locks; with --remove-all, every lock')
    .option('--remove-all', 'remove every lock, live and damaged ones too (when no other Lifeboat process uses the repository)')
    .action(async (opts: UnlockOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      const all = opts.removeAll ?? false;
      const report = await withRepo(ctx, opts, async (repo) => repo.removeLocks(all ? 'all' : 'stale'));
      ctx.out(report, () => describeUnlock(report, all));
    });
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

export function describeUnlock(r: UnlockReport, all: boolean): string {
  const lines = r.removed.map((l) => `removed ${describeLock(l)}`);
  const summary = `removed ${plural(r.removed.length, all ? 'lock' : 'stale lock')}`;
  lines.push(r.remaining > 0 ? `${summary}; ${plural(r.remaining, 'live lock')} left` : summary);
  return lines.join('\n');
}

function describeLock(l: LockDescription): string {
  if (l.damaged !== null) return `a damaged lock row${typeof l.id === 'string' && l.id !== '' && !l.damaged.startsWith('has id') ? ` (id ${JSON.stringify(l.id)})` : ''}: it ${l.damaged}`;
  return `${l.exclusive === 1 ? 'an exclusive' : 'a shared'} lock of pid ${l.pid} on ${l.host} since ${l.created}`;
}
