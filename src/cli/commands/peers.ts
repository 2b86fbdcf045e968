import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { type GlobalOptions, makeContext, type RepoOptions } from '../context.ts';
import { formatPeers, offline, statusOf } from './status.ts';

export function registerPeers(program: Command): void {
  program
    .command('peers')
    .description('each [[peer]]: pushes to it (state, pending snapshots, lag, last success and error) and its replica held here')
    .option('--password-file <file>', 'without a running agent: the repository password, to count pending snapshots')
    .action(async (opts: Pick<RepoOptions, 'passwordFile'>, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('peers needs --config FILE (its [[peer]] entries and state directory)');
      const listen = ctx.config.agent.listen;
      const asked = listen === '' ? { error: 'no endpoint' } : await statusOf(ctx.config.agent);
      const report = 'report' in asked ? asked.report : await offline(ctx, opts, null, 'agent: not running');
      ctx.out(report.peers, () => (report.peers.length === 0 ? 'no [[peer]] in the config' : formatPeers(report.peers)));
    });
}
