import path from 'node:path';
import type { Command } from 'commander';
import { defaultConfigPath, installService, realHost, type ServiceResult, uninstallService } from '../../agent/service.ts';
import type { GlobalOptions } from '../context.ts';

interface ServiceOptions {
  unitDir?: string;
  start?: boolean;
  dryRun?: boolean;
  winsw?: string;
}

export function registerService(program: Command): void {
  const service = program
    .command('service')
    .description('install or remove the agent as a system service (systemd; WinSW on Windows)');
  service
    .command('install')
    .description(`write and register the service for this install, running \`run --config FILE\` (default ${defaultConfigPath()}); creates the config from config.example.toml when absent`)
    .option('--unit-dir <dir>', 'where the unit goes (default /etc/systemd/system; on Windows, where WinSW and its xml go)')
    .option('--no-start', 'register the service but do not enable or start it')
    .option('--dry-run', 'print what would be written and run, change nothing (needs no root)')
    .option('--winsw <exe>', 'Windows: the WinSW executable to install the service with')
    .action(async (opts: ServiceOptions, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const res = await installService(realHost(), {
        ...(globals.config === undefined ? {} : { config: path.resolve(globals.config) }),
        ...(opts.unitDir === undefined ? {} : { unitDir: path.resolve(opts.unitDir) }),
        ...(opts.winsw === undefined ? {} : { winsw: path.resolve(opts.winsw) }),
        start: opts.start !== false,
        dryRun: opts.dryRun === true,
      });
      print(res, globals.json === true);
    });
  service
    .command('uninstall')
    .description('stop, disable and remove the service; keeps the config and the state directory')
    .option('--unit-dir <dir>', 'where the unit is (default /etc/systemd/system)')
    .option('--dry-run', 'print what would be run and removed, change nothing')
    .action(async (opts: ServiceOptions, cmd: Command) => {
      const globals = cmd.optsWithGlobals<GlobalOptions>();
      const res = await uninstallService(realHost(), {
        ...(globals.config === undefined ? {} : { config: path.resolve(globals.config) }),
        ...(opts.unitDir === undefined ? {} : { unitDir: path.resolve(opts.unitDir) }),
        dryRun: opts.dryRun === true,
      });
      print(res, globals.json === true);
    });
}

function print(res: ServiceResult, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return;
  }
  const lines = [...res.done];
  if (res.dry_run && res.unit_content !== undefined) {
    lines.push('', `${res.unit}:`, ...res.unit_content.trimEnd().split('\n').map((l) => `  ${l}`), '');
  }
  lines.push(...res.notes);
  process.stdout.write(`${lines.join('\n')}\n`);
}
