import type { Command } from 'commander';
import { loadConfig } from '../../config/load.ts';
import { UsageError } from '../../errors/errors.ts';
import type { GlobalOptions } from '../context.ts';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('inspect the agent configuration');
  config
    .command('check')
    .description('validate the configuration file and print it with defaults filled in')
    .action((_opts: unknown, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      if (!globals.config) throw new UsageError('config check needs --config FILE');
      const parsed = loadConfig(globals.config);
      process.stdout.write(globals.json ? `${JSON.stringify(parsed)}\n` : `${globals.config}: ok\n`);
    });
}
