import type { Command } from 'commander';
import { stringify } from 'smol-toml';
import { loadConfig } from '../../config/load.ts';
import { UsageError } from '../../errors/errors.ts';
import { configFileOf, type GlobalOptions } from '../context.ts';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('inspect the agent configuration');
  config
    .command('check')
    .description('validate the configuration file and print it as it takes effect, defaults filled in')
    .action((_opts: unknown, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const file = configFileOf(globals);
      if (!file) throw new UsageError('config check needs --config FILE (or LIFEBOAT_CONFIG, or a config at the default path)');
      const parsed = loadConfig(file);
      process.stdout.write(
        globals.json
          ? `${JSON.stringify(parsed)}\n`
          : `${file}: ok\n# as it takes effect, defaults filled in (durations in milliseconds, sizes in bytes)\n${stringify(parsed)}\n`,
      );
    });
}
