import fs from 'node:fs';
import { loadConfig, parseConfig } from '../config/load.ts';
import { passwordFromCommand, readPasswordFile } from '../config/password.ts';
import { type Config, poolSettings } from '../config/schema.ts';
import { PasswordMissingError, UsageError } from '../errors/errors.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { defaultConfigPath } from '../agent/service.ts';
import { openRepoWorkers } from '../agent/workers.ts';
import { Repository } from '../repo/repository.ts';
import type { OpenOptions } from '../repo/store.ts';
import type { WorkerPool } from '../workers/pool.ts';
import type { Interrupt } from './interrupt.ts';
import { promptHidden } from './prompt.ts';

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
  logLevel?: string;
  logFormat?: string;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The log settings: --log-level and --log-format, else LIFEBOAT_LOG_LEVEL and LIFEBOAT_LOG_FORMAT, else the config's level. */
export function logSettings(opts: GlobalOptions, config: Config, env: NodeJS.ProcessEnv = process.env): { level: string; format: 'json' | 'pretty' | undefined } {
  const level = opts.logLevel ?? env.LIFEBOAT_LOG_LEVEL ?? config.agent.log_level;
  if (!LEVELS.includes(level)) throw new UsageError(`log level must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const format = opts.logFormat ?? env.LIFEBOAT_LOG_FORMAT;
  if (format !== undefined && format !== 'json' && format !== 'pretty') throw new UsageError(`log format must be json or pretty, got ${JSON.stringify(format)}`);
  return { level, format };
}

/**
 * The config file a command reads: --config, else LIFEBOAT_CONFIG, else the
 * default path (/etc/lifeboat/lifeboat.toml, C:\\ProgramData\\Lifeboat\\lifeboat.toml)
 * when a file is there; none means the defaults.
 */
export function configFileOf(opts: GlobalOptions, env: NodeJS.ProcessEnv = process.env, exists: (file: string) => boolean = fs.existsSync): string | undefined {
  if (opts.config) return opts.config;
  if (env.LIFEBOAT_CONFIG) return env.LIFEBOAT_CONFIG;
  const fallback = defaultConfigPath();
  return exists(fallback) ? fallback : undefined;
}

export function makeContext(opts: GlobalOptions): Context {
  const configFile = configFileOf(opts);
  const config = configFile ? loadConfig(configFile) : parseConfig('', '<defaults>');
  const logs = logSettings(opts, config);
  const json = opts.json ?? false;
  return {
    json,
    config,
    configFile,
    // A one-shot command reports through its result; at the default level its log carries only
    // warnings, so a successful run prints nothing on stderr. debug and trace still show.
    log: createLogger({ ...logs, level: logs.level === 'info' ? 'warn' : logs.level, destination: 2 }),
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

/**
 * The repository password, restic's way: --password-file, then
 * LIFEBOAT_PASSWORD_FILE, LIFEBOAT_PASSWORD_COMMAND (its output's first line),
 * LIFEBOAT_PASSWORD, and last the config's password_file. The first line of a file counts.
 */
export function readPassword(ctx: Context, opts: RepoOptions, env: NodeJS.ProcessEnv = process.env): string {
  const file = opts.passwordFile ?? (env.LIFEBOAT_PASSWORD_FILE || undefined);
  if (file !== undefined) return readPasswordFile(file);
  if (env.LIFEBOAT_PASSWORD_COMMAND) return passwordFromCommand(env.LIFEBOAT_PASSWORD_COMMAND);
  if (env.LIFEBOAT_PASSWORD) return env.LIFEBOAT_PASSWORD;
  if (ctx.config.repository.password_file !== undefined) return readPasswordFile(ctx.config.repository.password_file);
  throw new PasswordMissingError();
}

/**
 * The password as readPassword finds it, else, for a person at a terminal,
 * asked for (twice with `confirm`: a new repository's password mistyped once
 * would lock its data away). Scripts and services never see a prompt.
 */
export async function obtainPassword(ctx: Context, opts: RepoOptions, prompt: { repo: string; confirm?: boolean }): Promise<string> {
  try {
    return readPassword(ctx, opts);
  } catch (err) {
    if (!(err instanceof PasswordMissingError) || !process.stdin.isTTY || !process.stderr.isTTY) throw err;
  }
  const first = await promptHidden(`${prompt.confirm ? 'new password' : 'password'} for repository ${prompt.repo}: `);
  if (first === '') throw new UsageError('an empty password');
  if (prompt.confirm && (await promptHidden('the same password again: ')) !== first) throw new UsageError('the two passwords differ');
  return first;
}

export function repoPath(ctx: Context, opts: RepoOptions, env: NodeJS.ProcessEnv = process.env): string {
  if (opts.repo) return opts.repo;
  if (env.LIFEBOAT_REPOSITORY) return env.LIFEBOAT_REPOSITORY;
  if (ctx.configFile) return ctx.config.repository.path;
  throw new UsageError('no repository: pass --repo DIR, set LIFEBOAT_REPOSITORY, or pass --config FILE');
}

export async function openRepo(ctx: Context, opts: RepoOptions, open: OpenOptions = {}): Promise<Repository> {
  const dir = repoPath(ctx, opts);
  return Repository.open(dir, await obtainPassword(ctx, opts, { repo: dir }), open);
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
