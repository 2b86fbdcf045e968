import { Command } from 'commander';
import { registerBackup } from './commands/backup.ts';
import { registerBrowse, registerCompare } from './commands/browse.ts';
import { registerConfig } from './commands/config.ts';
import { registerDrill } from './commands/drill.ts';
import { registerForget } from './commands/forget.ts';
import { registerId } from './commands/id.ts';
import { registerInit } from './commands/init.ts';
import { registerInventory } from './commands/inventory.ts';
import { registerKey } from './commands/key.ts';
import { registerPeers } from './commands/peers.ts';
import { registerPrune } from './commands/prune.ts';
import { registerRecover } from './commands/recover.ts';
import { registerRepair } from './commands/repair.ts';
import { registerReplicate } from './commands/replicate.ts';
import { registerRestore } from './commands/restore.ts';
import { registerRun } from './commands/run.ts';
import { registerService } from './commands/service.ts';
import { registerSnapshots } from './commands/snapshots.ts';
import { registerTarget } from './commands/target.ts';
import { registerStats } from './commands/stats.ts';
import { registerStatus } from './commands/status.ts';
import { registerUnlock } from './commands/unlock.ts';
import { registerVerify } from './commands/verify.ts';
import pkg from '../../package.json' with { type: 'json' };

export function buildProgram(): Command {
  const program = new Command('lifeboat')
    .description('Disaster-recovery agent for Docker hosts')
    .version(pkg.version)
    .option('--config <file>', 'agent configuration (TOML; default: LIFEBOAT_CONFIG, else /etc/lifeboat/lifeboat.toml when it exists)')
    .option('--json', 'print results as JSON')
    .option('--log-level <level>', 'trace, debug, info, warn or error (default: LIFEBOAT_LOG_LEVEL, else the config\'s agent.log_level)')
    .option('--log-format <format>', 'json or pretty (default: LIFEBOAT_LOG_FORMAT, else pretty at a terminal, json otherwise)')
    .exitOverride()
    .showHelpAfterError(false)
    // Usage errors follow the one-line contract too: commander's "(Did you mean ...?)" joins the line, and the code ends it.
    .configureOutput({
      outputError: (str, write) => write(`lifeboat: ${str.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')} [LB_ERR_USAGE]\n`),
    });
  for (const register of [registerInit, registerBackup, registerSnapshots, registerStats, registerBrowse, registerCompare, registerRestore, registerVerify, registerForget, registerPrune, registerUnlock, registerKey, registerConfig, registerInventory, registerRun, registerStatus, registerReplicate, registerPeers, registerRepair, registerId, registerService, registerRecover, registerDrill, registerTarget]) {
    register(program);
  }
  // Subcommands inherit exitOverride only if set before they are added; set it on each now.
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** Adds the options every repository command takes. */
export function repoCommand(parent: Command, name: string, description: string): Command {
  return parent
    .command(name)
    .description(description)
    .option('--repo <dir>', 'repository directory (default: LIFEBOAT_REPOSITORY, else the config\'s repository.path)')
    .option('--password-file <file>', 'read the repository password from this file (else LIFEBOAT_PASSWORD_FILE, LIFEBOAT_PASSWORD_COMMAND, LIFEBOAT_PASSWORD, the config\'s repository.password_file)');
}
