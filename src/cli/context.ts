import { loadConfig, parseConfig } from '../config/load.ts';
import { readPasswordFile } from '../config/password.ts';
import { type Config, poolSettings } from '../config/schema.ts';
import { PasswordMissingError, UsageError } from '../errors/errors.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { openRepoWorkers } from '../agent/workers.ts';
import { Repository } from '../repo/repository.ts';
import type { OpenOptions } from '../repo/store.ts';
import type { WorkerPool } from '../workers/pool.ts';
import type { Interrupt } from './interrupt.ts';

/** What every command receives: parsed global options, the config (or its defaults), output helpers. */
export interface Context {
  readonly json: boolean;
  readonly config: Config;
  readonly configFile: string | undefined;
  readonly log: Logger;
  /** Prints a command's result: the JSON value with --json, the text otherwise. */
  out(value: unknown, text: () => string): void;
  /** Progress lines only for a person at a terminal, never with --json. */
  readonly interactive: boolean;
}

export interface GlobalOptions {
  config?: string;
  json?: boolean;
}

export function makeContext(opts: GlobalOptions): Context {
  const config = opts.config ? loadConfig(opts.config) : parseConfig('', '<defaults>');
  const json = opts.json ?? false;
  return {
    json,
    config,
    configFile: opts.config,
    // A one-shot command reports through its result; at the default level its log carries only
    // warnings, so a successful run prints nothing on stderr. debug and trace still show.
    log: createLogger({ level: config.agent.log_level === 'info' ? 'warn' : config.agent.log_level, destination: 2 }),
    interactive: !json && process.stderr.isTTY === true,
    out(value, text) {
      process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${text()}\n`);
    },
  };
}

export interface RepoOptions {
  repo?: string;
  passwordFile?: string;
}

/** --password-file, then LIFEBOAT_PASSWORD, then the config's password_file; the first line of a file counts. */
export function readPassword(ctx: Context, opts: RepoOptions): string {
  const file = opts.passwordFile ?? (process.env.LIFEBOAT_PASSWORD === undefined ? ctx.config.repository.password_file : undefined);
  if (file !== undefined) return readPasswordFile(file);
  const env = process.env.LIFEBOAT_PASSWORD;
  if (env === undefined || env === '') throw new PasswordMissingError();
  return env;
}

export function repoPath(ctx: Context, opts: RepoOptions): string {
  if (opts.repo) return opts.repo;
  if (ctx.configFile) return ctx.config.repository.path;
  throw new UsageError('no repository: pass --repo DIR or --config FILE');
}

export async function openRepo(ctx: Context, opts: RepoOptions, open: OpenOptions = {}): Promise<Repository> {
  return Repository.open(repoPath(ctx, opts), readPassword(ctx, opts), open);
}

/**
 * The command's worker pool. Under an Interrupt, the first signal abandons it
 * as the agent abandons a backup: every job in flight and to come fails, so
 * the work fails at once and its cleanup runs (see WorkerPool.abort).
 */
export function makePool(ctx: Context, repo: Repository, interrupt?: Interrupt): WorkerPool {
  const pool = openRepoWorkers(repo, poolSettings(ctx.config));
  interrupt?.onInterrupt((reason) => void pool.abort(reason));
  return pool;
}

/**
 * Runs fn with an open repository and a worker pool (abandoned on an
 * interrupt, when given), closing both whatever happens. A command that
 * writes data (a backup) keeps the repository's reserve of free space.
 */
export async function withRepo<T>(
  ctx: Context,
  opts: RepoOptions,
  fn: (repo: Repository, pool: () => WorkerPool) => Promise<T>,
  run: { interrupt?: Interrupt; open?: OpenOptions } = {},
): Promise<T> {
  const { interrupt } = run;
  const repo = await openRepo(ctx, opts, run.open);
  let pool: WorkerPool | undefined;
  try {
    return await fn(repo, () => (pool ??= makePool(ctx, repo, interrupt)));
  } finally {
    await pool?.close();
    repo.close();
  }
}
