import type { Command } from 'commander';
import { UsageError } from '../../errors/errors.ts';
import { diffSnapshots, type Entry, fileBlocks, findEntry, matchesPattern, walkEntries } from '../../repo/browse.ts';
import { shortId } from '../../repo/snapshot.ts';
import { filterSnapshots, findSnapshot } from '../../repo/snapshots.ts';
import type { TreeNode } from '../../repo/tree.ts';
import { type GlobalOptions, makeContext, type RepoOptions, withRepo } from '../context.ts';
import { filterOf, type FilterOptions, withFilterOptions } from '../filters.ts';
import { repoCommand } from '../program.ts';

/** Writes to stdout, waiting when its buffer is full: a listing or a file of any size passes through bounded memory. */
async function write(chunk: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(chunk)) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
}

const TYPE_CHAR: Record<TreeNode['type'], string> = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', chardev: 'c', blockdev: 'b', socket: 's' };

function modeString(node: TreeNode): string {
  const rwx = 'rwxrwxrwx';
  let s = TYPE_CHAR[node.type];
  for (let i = 0; i < 9; i++) s += node.mode & (0o400 >> i) ? rwx[i] : '-';
  return s;
}

const mtimeIso = (ns: string) => new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();

function jsonEntry(e: Entry): Record<string, unknown> {
  const n = e.node!;
  return { path: e.path, type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, size: n.size, mtime: mtimeIso(n.mtime), ...(n.target !== undefined ? { target: n.target } : {}) };
}

function longLine(e: Entry): string {
  const n = e.node!;
  const link = n.type === 'symlink' ? ` -> ${n.target}` : '';
  return `${modeString(n)} ${String(n.uid).padStart(5)} ${String(n.gid).padStart(5)} ${String(n.size).padStart(12)} ${mtimeIso(n.mtime).slice(0, 19).replace('T', ' ')} ${e.path}${link}`;
}

export function registerBrowse(program: Command): void {
  withFilterOptions(repoCommand(program, 'ls', 'list the entries of a snapshot under PATH (default: all of it), depth first'), 'snapshots')
    .argument('<snapshot>', 'snapshot id, unique prefix, or "latest"')
    .argument('[path]', 'a directory or file in the snapshot, from its root', '/')
    .option('-l, --long', 'mode, owner, size and modification time too')
    .action(async (ref: string, at: string, opts: RepoOptions & FilterOptions & { long?: boolean }, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      await withRepo(ctx, opts, async (repo) => {
        const snapshot = findSnapshot(repo, ref, filterOf(opts));
        // --json: one array, written as it is walked
        let first = true;
        if (ctx.json) await write('[');
        for await (const e of walkEntries(repo, snapshot, at)) {
          if (ctx.json) await write(`${first ? '' : ','}${JSON.stringify(jsonEntry(e))}`);
          else await write(`${opts.long ? longLine(e) : e.path}\n`);
          first = false;
        }
        if (ctx.json) await write(']\n');
      });
    });

  withFilterOptions(repoCommand(program, 'dump', 'write one file of a snapshot to stdout'), 'snapshots')
    .argument('<snapshot>', 'snapshot id, unique prefix, or "latest"')
    .argument('<file>', 'the file\'s path in the snapshot, from its root')
    .action(async (ref: string, file: string, opts: RepoOptions & FilterOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      await withRepo(ctx, opts, async (repo) => {
        const snapshot = findSnapshot(repo, ref, filterOf(opts));
        const { path, node } = await findEntry(repo, snapshot, file);
        if (!node || node.type !== 'file') throw new UsageError(`${path} in snapshot ${snapshot.id.slice(0, 8)} is ${node ? `a ${node.type}` : 'its root'}, not a file: dump writes one file (ls lists a directory)`);
        for await (const block of fileBlocks(repo, node, path)) await write(block);
      });
    });
}

const CHANGE_WORD = { '+': 'added', '-': 'removed', M: 'modified', T: 'type changed', U: 'metadata' } as const;

export function registerCompare(program: Command): void {
  repoCommand(program, 'diff', 'what changed from one snapshot to another: + added, - removed, M modified, T type changed, U metadata only')
    .argument('<snapshot1>', 'snapshot id or unique prefix')
    .argument('<snapshot2>', 'snapshot id or unique prefix')
    .action(async (ref1: string, ref2: string, opts: RepoOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      await withRepo(ctx, opts, async (repo) => {
        const [a, b] = [findSnapshot(repo, ref1), findSnapshot(repo, ref2)];
        const counts = { '+': 0, '-': 0, M: 0, T: 0, U: 0 };
        let first = true;
        if (ctx.json) await write('[');
        for await (const d of diffSnapshots(repo, a, b)) {
          if (ctx.json) await write(`${first ? '' : ','}${JSON.stringify({ path: d.path, change: CHANGE_WORD[d.change] })}`);
          else await write(`${d.change}    ${d.path}\n`);
          counts[d.change]++;
          first = false;
        }
        if (ctx.json) await write(']\n');
        else await write(`\n${counts['+']} added, ${counts['-']} removed, ${counts.M} modified, ${counts.T} type changed, ${counts.U} metadata only\n`);
      });
    });

  withFilterOptions(repoCommand(program, 'find', 'the entries whose name (or, with a slash in it, whose path) matches a glob, in every snapshot the filters select'), 'snapshots')
    .argument('<pattern>', 'a glob: *.sql, pg_wal/*, /etc/**/*.conf')
    .action(async (pattern: string, opts: RepoOptions & FilterOptions, cmd: Command) => {
      const ctx = makeContext(cmd.optsWithGlobals<GlobalOptions>());
      await withRepo(ctx, opts, async (repo) => {
        let first = true;
        if (ctx.json) await write('[');
        for (const s of filterSnapshots(repo, filterOf(opts))) {
          for await (const e of walkEntries(repo, s, '/')) {
            if (!matchesPattern(e.path, pattern)) continue;
            if (ctx.json) await write(`${first ? '' : ','}${JSON.stringify({ snapshot: s.id, time: s.time, ...jsonEntry(e) })}`);
            else await write(`${shortId(s.id)}  ${s.time.slice(0, 19).replace('T', ' ')}  ${longLine(e)}\n`);
            first = false;
          }
        }
        if (ctx.json) await write(']\n');
      });
    });
}
