import type { Command } from 'commander';
import type { SnapshotFilter } from '../repo/snapshots.ts';

/** restic's snapshot filters, as options on a command. */
export interface FilterOptions {
  host?: string;
  volume?: string;
  path?: string;
  tag: string[];
}

/** Adds --host, --volume, --path and --tag (repeatable; a snapshot must carry every one). */
export function withFilterOptions(cmd: Command, what: string): Command {
  return cmd
    .option('--host <name>', `only ${what} of this host`)
    .option('--volume <name>', `only ${what} of this Docker volume`)
    .option('--path <dir>', `only ${what} of this backed-up directory`)
    .option('--tag <tag>', `only ${what} with this tag (repeatable: all of them)`, (v: string, acc: string[]) => [...acc, v], [] as string[]);
}

export function filterOf(opts: FilterOptions): SnapshotFilter {
  return { host: opts.host, volume: opts.volume, path: opts.path, tags: opts.tag };
}
