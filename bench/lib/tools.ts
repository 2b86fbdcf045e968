// The three backup tools behind one interface; every operation runs under GNU time.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { runTimed, type TimedResult } from './timed.ts';

export type ToolName = 'lifeboat' | 'restic' | 'borg';
export const TOOL_NAMES: readonly ToolName[] = ['lifeboat', 'restic', 'borg'];

export interface Tool {
  readonly name: ToolName;
  readonly repo: string;
  /** Version string, or undefined when the tool is not installed. */
  version(): string | undefined;
  init(): TimedResult;
  /** Back up `path` (absolute); `label` names the backup (borg archive name). */
  backup(label: string, path: string): TimedResult;
  /** Restore the latest backup into the empty directory `target`. */
  restore(target: string): TimedResult;
  /** Lifeboat only: `--json snapshots`, for a sanity check of the snapshot list. */
  snapshots?(): TimedResult;
}

export interface ToolSetup {
  readonly workDir: string;
  readonly password: string;
  /** Command (argv prefix) that runs the Lifeboat CLI. */
  readonly lifeboatCmd: readonly string[];
  /** borg --compression value; undefined keeps borg's default (lz4). */
  readonly borgCompression?: string;
}

function probe(argv: readonly string[], env?: NodeJS.ProcessEnv): string | undefined {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: env ?? process.env });
  if (r.error || r.status !== 0) return undefined;
  return (r.stdout || r.stderr).trim().split('\n')[0];
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function lifeboat(s: ToolSetup): Tool {
  const repo = join(s.workDir, 'repos', 'lifeboat');
  const env = { ...process.env, LIFEBOAT_PASSWORD: s.password };
  const cmd = s.lifeboatCmd;
  const run = (args: readonly string[]): TimedResult => runTimed([...cmd, ...args], { env });
  return {
    name: 'lifeboat',
    repo,
    version: () => {
      if (cmd[0]!.includes('/') && !isExecutable(cmd[0]!)) return undefined;
      return probe([...cmd, '--version'], env) ?? 'version unknown';
    },
    init: () => run(['init', '--repo', repo]),
    backup: (_label, path) => run(['--json', 'backup', '--repo', repo, '--path', path]),
    restore: (target) => run(['restore', 'latest', '--repo', repo, '--target', target]),
    snapshots: () => run(['--json', 'snapshots', '--repo', repo]),
  };
}

function restic(s: ToolSetup): Tool {
  const repo = join(s.workDir, 'repos', 'restic');
  const cache = join(s.workDir, 'cache', 'restic');
  const env = { ...process.env, RESTIC_PASSWORD: s.password };
  const run = (args: readonly string[]): TimedResult =>
    runTimed(['restic', '--repo', repo, '--cache-dir', cache, ...args], { env });
  return {
    name: 'restic',
    repo,
    version: () => probe(['restic', 'version'], env),
    init: () => run(['init']),
    backup: (_label, path) => run(['backup', '--quiet', path]),
    restore: (target) => run(['restore', 'latest', '--target', target]),
  };
}

function borg(s: ToolSetup): Tool {
  const repo = join(s.workDir, 'repos', 'borg');
  const home = join(s.workDir, 'cache', 'borg');
  const env = {
    ...process.env,
    BORG_PASSPHRASE: s.password,
    BORG_BASE_DIR: home,
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  let last = '';
  const compression = s.borgCompression ? ['--compression', s.borgCompression] : [];
  return {
    name: 'borg',
    repo,
    version: () => probe(['borg', '--version'], env),
    init: () => {
      mkdirSync(home, { recursive: true });
      return runTimed(['borg', 'init', '--encryption=repokey', repo], { env });
    },
    backup: (label, path) => {
      last = label;
      return runTimed(['borg', 'create', ...compression, `${repo}::${label}`, path], { env });
    },
    // borg extracts into the working directory.
    restore: (target) => runTimed(['borg', 'extract', `${repo}::${last}`], { env, cwd: target }),
  };
}

export function makeTools(s: ToolSetup, names: readonly ToolName[]): Tool[] {
  const all: Record<ToolName, (s: ToolSetup) => Tool> = { lifeboat, restic, borg };
  return names.map((n) => all[n](s));
}
