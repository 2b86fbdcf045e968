import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { identityDir, loadOrCreateIdentity } from '../../replicate/identity.ts';
import { type GlobalOptions, makeContext } from '../context.ts';

export function registerId(program: Command): void {
  program
    .command('id')
    .description("print this agent's id (its certificate's SHA-256), made on first use; peers pin it in their [[peer]] entries")
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('id needs --config FILE (the identity lives in its state_dir)');
      const identity = await loadOrCreateIdentity(ctx.config.agent.state_dir);
      ctx.out({ id: identity.id, host: ctx.config.agent.host, dir: identityDir(ctx.config.agent.state_dir) }, () => identity.id);
    });
}
