import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CorruptDataError, CorruptIndexError, TargetNotEmptyError } from '../errors/errors.ts';
import { blockGroups } from '../repo/content.ts';
import { type BlobId, BlobType } from '../repo/ids.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { decodeTree, type TreeNode } from '../repo/tree.ts';
import { faultPoint } from '../util/fault.ts';
import type { Later } from '../util/later.ts';
import { MiB } from '../util/units.ts';
import { JobBatcher } from '../workers/batcher.ts';
import type { RepoWorkers } from '../workers/pool.ts';
import type { RestoreItem, RestoreResult } from '../workers/protocol.ts';
import { nsToTime } from './extract-task.ts';

export interface RestoreOptions {
  readonly target: string;
  readonly pool: RepoWorkers;
  /** Restore into a directory that already has entries (a volume's lost+found, a re-run). */
  readonly allowNonEmpty?: boolean;
  readonly onWarning?: (path: string, err: Error) => void;
  readonly onProgress?: (p: { files: number; bytesWritten: number }) => void;
}

export interface RestoreStats {
  files: number;
  dirs: number;
  bytes_written: number;
  errors: number;
  duration_ms: number;
}

const SMALL = 1 * MiB;
const RANGE = 8 * MiB;
const run = promisify(execFile);
const canChown = typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Writes a snapshot into a directory. The main thread walks the trees and
 * makes directories, links and special files; the workers write file contents
 * (all-zero blocks left as holes, so sparse files stay sparse) and their
 * metadata. Directories get theirs last, so their mtimes survive their
 * children being written.
 */
export async function restore(repo: Repository, snapshot: Snapshot, opts: RestoreOptions): Promise<RestoreStats> {
  const started = performance.now();
  const target = path.resolve(opts.target);
  // Lock first: a restore refused by a lock must not leave a new, empty target behind.
  const lock = repo.lock('shared');
  try {
    await prepareTarget(target, opts.allowNonEmpty ?? false);
    const r = new Restorer(repo, opts);
    const top = decodeTree(await repo.loadBlob(snapshot.tree, BlobType.tree), 'snapshot root');
    const root = top.nodes[0];
    if (top.nodes.length !== 1 || root?.type !== 'dir') throw new CorruptDataError('snapshot root tree is malformed');
    await (await r.walkDir(target, root)).done;
    return { ...r.stats, duration_ms: Math.round(performance.now() - started) };
  } finally {
    lock.release();
  }
}

async function prepareTarget(target: string, allowNonEmpty: boolean): Promise<void> {
  const entries = await fsp.readdir(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    if (err.code === 'ENOTDIR') throw new TargetNotEmptyError(target);
    throw err;
  });
  if (entries === undefined) await fsp.mkdir(target, { recursive: true, mode: 0o700 });
  else if (entries.length > 0 && !allowNonEmpty) throw new TargetNotEmptyError(target);
}

class Restorer {
  readonly stats = { files: 0, dirs: 0, bytes_written: 0, errors: 0 };
  readonly #repo: Repository;
  readonly #opts: RestoreOptions;
  readonly #jobs: JobBatcher<RestoreItem, RestoreResult>;
  /** dev:ino → the first restored path's completion, for entries with more than one link. */
  readonly #links = new Map<string, { path: string; done: Promise<void> }>();
  #lastProgress = 0;

  constructor(repo: Repository, opts: RestoreOptions) {
    this.#repo = repo;
    this.#opts = opts;
    this.#jobs = new JobBatcher((items) => this.#write(items), opts.pool.depth);
  }

  /** Creates a directory's entries; resolves once dispatched, with a promise of the directory being complete. */
  async walkDir(dir: string, node: TreeNode): Promise<Later<void>> {
    faultPoint('restore-dir');
    this.stats.dirs++;
    const tree = decodeTree(await this.#repo.loadBlob(Buffer.from(node.subtree!, 'hex') as BlobId, BlobType.tree), dir);
    const pending: Promise<void>[] = [];
    for (const child of tree.nodes) {
      const full = path.join(dir, child.name);
      if (child.type === 'dir') {
        await fsp.mkdir(full, { mode: 0o700 });
        pending.push((await this.walkDir(full, child)).done);
      } else if (child.type === 'file') {
        pending.push(this.#guard(full, (await this.#file(full, child)).done));
      } else {
        pending.push(this.#guard(full, this.#special(full, child)));
      }
    }
    await this.#jobs.flush();
    const done = Promise.all(pending).then(() => applyMetadata(dir, node));
    done.catch(() => {});
    return { done };
  }

  /** Damaged repository data fails the restore; a local problem with one entry does not. */
  async #guard(full: string, work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (err) {
      if (err instanceof CorruptDataError || err instanceof CorruptIndexError || !(err instanceof Error)) {
        this.#jobs.failure ??= err;
        throw err;
      }
      this.stats.errors++;
      this.#opts.onWarning?.(full, err);
    }
  }

  async #special(full: string, node: TreeNode): Promise<void> {
    this.stats.files++;
    switch (node.type) {
      case 'symlink':
        await fsp.symlink(node.target!, full);
        break;
      case 'fifo':
        await run('mkfifo', ['-m', '600', full]);
        break;
      case 'chardev':
      case 'blockdev': {
        const rdev = BigInt(node.rdev ?? 0);
        // Linux's encoding of dev_t (glibc gnu_dev_major/minor).
        const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
        const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
        await run('mknod', ['-m', '600', full, node.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]);
        break;
      }
      default:
        // A socket belongs to the process that bound it; recreating it would mislead.
        return;
    }
    await applyMetadata(full, node);
  }

  /** Dispatches a file's contents; resolves (once dispatched) with a promise of the file being written. */
  async #file(full: string, node: TreeNode): Promise<Later<void>> {
    this.stats.files++;
    const linkKey = node.nlink > 1 ? `${node.dev}:${node.ino}` : undefined;
    const first = linkKey === undefined ? undefined : this.#links.get(linkKey);
    if (first) return { done: first.done.then(() => fsp.link(first.path, full)) };
    const meta = { mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime };
    let done: Promise<void>;
    if (node.blocks && node.size <= SMALL) {
      done = this.#jobs.add({ path: full, create: true, size: node.size, offset: 0, blocks: node.blocks, meta }, node.size).then(check);
    } else {
      done = this.#large(full, node);
    }
    done.catch(() => {});
    if (linkKey !== undefined) this.#links.set(linkKey, { path: full, done });
    await this.#jobs.pace();
    return { done };
  }

  /** A large file: created here, written in ranges by every worker, metadata applied when all are done. */
  async #large(full: string, node: TreeNode): Promise<void> {
    const fh = await fsp.open(full, 'wx', 0o600);
    try {
      await fh.truncate(node.size);
    } finally {
      await fh.close();
    }
    const parts: Promise<RestoreResult>[] = [];
    let offset = 0;
    for await (const group of blockGroups((id, type) => this.#repo.loadBlob(id, type), node, full)) {
      let first = 0;
      let bytes = 0;
      for (let i = 0; i < group.length; i++) {
        const loc = this.#repo.locate(Buffer.from(group[i]!, 'hex') as BlobId);
        if (!loc) throw new CorruptIndexError(`block ${group[i]!.slice(0, 16)} of ${full} is missing from the repository`);
        bytes += loc.rawLength;
        if (bytes >= RANGE || i === group.length - 1) {
          parts.push(this.#jobs.alone({ path: full, create: false, size: node.size, offset, blocks: group.slice(first, i + 1), meta: null }));
          offset += bytes;
          first = i + 1;
          bytes = 0;
          await this.#jobs.pace();
        }
      }
    }
    (await Promise.all(parts)).forEach(check);
    await applyMetadata(full, node);
  }

  /** One worker job. */
  async #write(items: RestoreItem[]): Promise<readonly RestoreResult[]> {
    const reply = await this.#opts.pool.restore(items);
    for (const r of reply.results) this.stats.bytes_written += r.bytesWritten;
    this.#progress();
    return reply.results;
  }

  #progress(): void {
    const now = performance.now();
    if (!this.#opts.onProgress || now - this.#lastProgress < 200) return;
    this.#lastProgress = now;
    this.#opts.onProgress({ files: this.stats.files, bytesWritten: this.stats.bytes_written });
  }
}

/** A worker's report of one item, as an error to raise. */
function check(r: RestoreResult): void {
  if (r.error) throw new Error(r.error);
}

/** Owner first (chown clears set-id bits), then mode, then times; symlinks get owner and times only. */
async function applyMetadata(full: string, node: TreeNode): Promise<void> {
  const isLink = node.type === 'symlink';
  if (canChown) await (isLink ? fsp.lchown : fsp.chown)(full, node.uid, node.gid);
  if (!isLink) await fsp.chmod(full, node.mode);
  const mtime = nsToTime(node.mtime);
  await (isLink ? fsp.lutimes : fsp.utimes)(full, mtime, mtime);
}
