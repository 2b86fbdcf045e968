import type { Command } from 'commander';
import type { Agent } from '../../agent/agent.ts';
import { lineOf } from '../../config/load.ts';
import { ConfigError, NotARepositoryError, UsageError } from '../../errors/errors.ts';
import { createLogger, type Logger } from '../../log/logger.ts';
import { type GlobalOptions, logSettings, makeContext, readPassword, type RepoOptions } from '../context.ts';
import pkg from '../../../package.json' with { type: 'json' };

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run the agent in the foreground: inventory watch, change journal, schedules, continuous mode, retention, metrics and health endpoint')
    .option('--password-file <file>', 'read the repository password from this file (else LIFEBOAT_PASSWORD_FILE, LIFEBOAT_PASSWORD_COMMAND, LIFEBOAT_PASSWORD, the config\'s repository.password_file)')
    .action(async (opts: Pick<RepoOptions, 'passwordFile'>, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      if (!ctx.configFile) throw new UsageError('run needs --config FILE (or LIFEBOAT_CONFIG, or a config at the default path)');
      const password = readPassword(ctx, opts);
      // the daemon's log is its output: JSON lines on stdout (pretty at a terminal)
      const log = createLogger({ ...logSettings(cmd.optsWithGlobals<GlobalOptions>(), ctx.config), destination: 1 });
      const [{ Agent }, { lowerPriority }] = await Promise.all([import('../../agent/agent.ts'), import('../../agent/priority.ts')]);
      // before any worker starts, so that each inherits it
      lowerPriority(ctx.config.agent.nice);
      const agent = await Agent.start({ config: ctx.config, password, log, version: pkg.version, configFile: ctx.configFile }).catch((err: unknown) => {
        // The agent does not create its repository: a wrong path must not silently start an empty one.
        // A configuration error (exit 2): a service manager that restarts on failure should not retry it forever.
        if (!(err instanceof NotARepositoryError)) throw err;
        const file = ctx.configFile!;
        throw new ConfigError(file, lineOf(file, ['repository', 'path']), 'repository.path', `${err.message}; create it with: lifeboat --config ${file} init`);
      });
      await untilStopped(agent, log);
      // everything is closed; should a library still hold a handle, do not hang on it
      setTimeout(() => process.exit(0), 2000).unref();
    });
}

/**
 * SIGTERM or SIGINT: stop taking jobs, let a backup in flight finish (up to
 * the grace period, then it is abandoned), close everything; resolves then.
 * A second signal abandons the backup in flight at once: it fails at its next
 * block write, and that failure still returns its containers to their state.
 * A third exits immediately, and then nothing is restored: a container the
 * backup had paused or stopped stays so (docker unpause / start it).
 */
function untilStopped(agent: Agent, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        log.info({ signal }, 'stopping: no new jobs; a backup under way may finish (signal again to abandon it)');
        agent.stop().then(
          () => {
            process.off('SIGTERM', onSignal);
            process.off('SIGINT', onSignal);
            resolve();
          },
          (err: unknown) => {
            log.error({ err }, 'stopping the agent failed');
            process.exitCode = 1;
            resolve();
          },
        );
      } else if (signals === 2) {
        log.warn({ signal }, 'second signal: abandoning the backup under way (its containers are returned to their state); a third exits at once');
        agent.abandon();
      } else {
        log.error({ signal }, 'third signal: exiting now; a container the backup paused or stopped may be left so');
        process.exit(1);
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
