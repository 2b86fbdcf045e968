import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CorruptDataError, CorruptIndexError, TargetNotEmptyError } from '../errors/errors.ts';
import { blockGroups } from '../repo/content.ts';
import { type BlobId, BlobType } from '../repo/ids.ts';
import type { Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { matchesPattern } from '../repo/browse.ts';
import { decodeTree, type TreeNode } from '../repo/tree.ts';
import { faultPoint } from '../util/fault.ts';
import type { Later } from '../util/later.ts';
import { MiB } from '../util/units.ts';
import { JobBatcher } from '../workers/batcher.ts';
import type { WorkerPool } from '../workers/pool.ts';
import { type RestoreItem, type RestoreResult, restoreFiles } from './jobs.ts';
import { nsToTime } from './extract-task.ts';

/**
 * How a restore names what it creates.
 *
 * - `fd` (Linux): every directory the restore makes is opened (O_DIRECTORY |
 *   O_NOFOLLOW) and its children are addressed as `/proc/self/fd/<dirfd>/<name>`.
 *   The kernel resolves that magic link to the very directory opened, without
 *   walking its path again, and looks up only the last component, which is
 *   created exclusively or opened with O_NOFOLLOW, or changed with lchown and
 *   lutimes. A symlink swapped in anywhere in the target while the restore
 *   runs is never followed, so nothing outside the target is touched, whatever
 *   races it. Directories, and large files written in ranges, get their owner,
 *   mode and times through their own descriptors; fifos and devices through an
 *   O_PATH descriptor checked to be what was made.
 * - `path` (the fallback where /proc/self/fd is missing: Windows, or a Linux
 *   without /proc mounted): plain paths under the target, as a shell would.
 *   Files are still created exclusively and without following a symlink at
 *   their own name, but a directory above one swapped for a symlink while the
 *   restore runs is followed: restore into a target no other process writes.
 */
export type Addressing = 'fd' | 'path';

export interface RestoreOptions {
  readonly target: string;
  readonly pool: WorkerPool;
  /** Restore into a directory that already has entries (a volume's lost+found, a re-run). */
  readonly allowNonEmpty?: boolean;
  readonly onWarning?: (path: string, err: Error) => void;
  readonly onProgress?: (p: { files: number; bytesWritten: number }) => void;
  /** For tests: how entries are addressed. Default: `fd` where the process has /proc/self/fd. */
  readonly addressing?: Addressing;
  /**
   * A partial restore, by globs on the entries' paths from the snapshot's root
   * ("/a/b") or, without a slash, on their names (see matchesPattern): only
   * what an include matches (with everything below it, and the directories on
   * the way to it), none of what an exclude matches (nor below it).
   */
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
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

const C = fs.constants;
const O_NOFOLLOW = C.O_NOFOLLOW ?? 0;
const O_DIRECTORY = C.O_DIRECTORY ?? 0;
/** Linux's O_PATH (not in fs.constants): a descriptor naming an inode without opening it, so a device is never opened. */
const O_PATH = 0o10000000;
/** A directory restore made (or its parent's child), never through a symlink at its name. */
export const DIR_FLAGS = C.O_RDONLY | O_DIRECTORY | O_NOFOLLOW;
const CREATE_FLAGS = C.O_RDWR | C.O_CREAT | C.O_EXCL | O_NOFOLLOW;
export const FD_DIR = '/proc/self/fd';

const openFd = promisify(fs.open);
const closeFd = promisify(fs.close);
const fstat = promisify(fs.fstat);
const ftruncate = promisify(fs.ftruncate);
const fchown = promisify(fs.fchown);
const fchmod = promisify(fs.fchmod);
const futimes = promisify(fs.futimes);

/**
 * Whether this process can address a directory's children through a
 * descriptor: on Linux, when `<fdDir>/<fd>` of an open directory resolves to
 * that very directory. Anything else (another platform, no /proc) is `path`.
 */
export function probeAddressing(platform: NodeJS.Platform = process.platform, fdDir: string = FD_DIR): Addressing {
  if (platform !== 'linux') return 'path';
  let fd: number | undefined;
  try {
    fd = fs.openSync('/', C.O_RDONLY | O_DIRECTORY);
    const want = fs.fstatSync(fd);
    const seen = fs.statSync(`${fdDir}/${fd}/.`);
    return seen.dev === want.dev && seen.ino === want.ino ? 'fd' : 'path';
  } catch {
    return 'path';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

let probed: Addressing | undefined;

/** This process's addressing, probed once. */
export function addressing(): Addressing {
  return (probed ??= probeAddressing());
}

/**
 * A directory of the target: its path (for messages, and the address in
 * `path` mode) and, in `fd` mode, a descriptor held while anything in flight
 * uses it. The walk holds one reference until the directory's subtree is
 * done; a hard link into another directory holds one on its source's.
 */
class Dir {
  readonly path: string;
  readonly parent: Dir | null;
  readonly name: string;
  #fd: number | null;
  readonly #byFd: boolean;
  #refs = 1;

  constructor(where: string, parent: Dir | null, name: string, fd: number | null) {
    this.path = where;
    this.parent = parent;
    this.name = name;
    this.#fd = fd;
    this.#byFd = fd !== null;
  }

  get fd(): number | null {
    return this.#fd;
  }

  /** A child's address: relative to this directory's descriptor, or its path in `path` mode. */
  at(name: string): string {
    if (!this.#byFd) return path.join(this.path, name);
    if (this.#fd === null) throw new Error(`internal: ${this.path} used after its descriptor was closed`);
    return `${FD_DIR}/${this.#fd}/${name}`;
  }

  /** Takes a reference if the descriptor is still open; false once closed (then reopen it). */
  retain(): boolean {
    if (!this.#byFd) return true;
    if (this.#refs === 0) return false;
    this.#refs++;
    return true;
  }

  release(): void {
    if (!this.#byFd || --this.#refs > 0) return;
    const fd = this.#fd;
    this.#fd = null;
    if (fd !== null) fs.closeSync(fd);
  }
}

/**
 * Writes a snapshot into a directory. The main thread walks the trees and
 * makes directories, links and special files; the workers write file contents
 * (all-zero blocks left as holes, so sparse files stay sparse) and their
 * metadata. Directories get theirs last, so their mtimes survive their
 * children being written. Everything is made and changed relative to
 * directories the restore opened itself (see Addressing).
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
    // The target as the user named it (a symlink to it is followed, once); everything below is relative to it.
    const byFd = (opts.addressing ?? addressing()) === 'fd';
    const dir = new Dir(target, null, '', byFd ? await openFd(target, C.O_RDONLY | O_DIRECTORY) : null);
    await (await r.walkDir(dir, root, '', false)).done;
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

interface FirstLink {
  readonly dir: Dir;
  readonly name: string;
  readonly done: Promise<void>;
}

class Restorer {
  readonly stats = { files: 0, dirs: 0, bytes_written: 0, errors: 0 };
  readonly #repo: Repository;
  readonly #opts: RestoreOptions;
  readonly #jobs: JobBatcher<RestoreItem, RestoreResult>;
  /** dev:ino → where the first restored link is and its completion, for entries with more than one link. */
  readonly #links = new Map<string, FirstLink>();
  #lastProgress = 0;

  constructor(repo: Repository, opts: RestoreOptions) {
    this.#repo = repo;
    this.#opts = opts;
    this.#jobs = new JobBatcher((items) => this.#write(items), opts.pool.depth);
  }

  /**
   * Creates a directory's entries; resolves once dispatched, with a promise of
   * the directory being complete. Takes over the caller's reference to `dir`
   * and lets it go only when nothing dispatched in it is in flight, whether
   * the walk succeeds or fails, so no descriptor closes (and its number is
   * reused) under a worker still addressing through it.
   */
  async walkDir(dir: Dir, node: TreeNode, rel: string, inside: boolean): Promise<Later<void>> {
    const pending: Promise<unknown>[] = [];
    try {
      faultPoint('restore-dir');
      this.stats.dirs++;
      const tree = decodeTree(await this.#repo.loadBlob(Buffer.from(node.subtree!, 'hex') as BlobId, BlobType.tree), dir.path);
      for (const child of tree.nodes) {
        const full = path.join(dir.path, child.name);
        const childRel = `${rel}/${child.name}`;
        const selected = inside || this.#included(childRel);
        if (this.#excluded(childRel)) continue;
        if (child.type === 'dir') {
          // a directory no include matches is made only when something below it is restored
          if (!selected && !(await this.#holdsSelected(child, childRel))) continue;
          const sub = await this.#guard(full, this.#mkdir(dir, child.name, full));
          if (sub) pending.push((await this.walkDir(sub, child, childRel, selected)).done);
          continue;
        }
        if (!selected) continue;
        if (child.type === 'file') {
          pending.push(handled(this.#guard(full, this.#file(dir, child, full))));
          await this.#jobs.pace();
        } else {
          pending.push(handled(this.#guard(full, this.#special(dir, child, full))));
        }
      }
      await this.#jobs.flush();
    } catch (err) {
      // Items still in the shared job would never be sent: send them, then wait for all of it.
      await this.#jobs.flush().catch(() => {});
      await Promise.allSettled(pending);
      dir.release();
      throw err;
    }
    const done = settle(pending)
      .then(async () => {
        await this.#guard(dir.path, this.#dirMetadata(dir, node));
      })
      .finally(() => dir.release());
    done.catch(() => {});
    return { done };
  }

  #excluded(rel: string): boolean {
    return (this.#opts.exclude ?? []).some((p) => matchesPattern(rel, p));
  }

  /** With no include, everything is; with some, what one of them matches. */
  #included(rel: string): boolean {
    const include = this.#opts.include ?? [];
    return include.length === 0 || include.some((p) => matchesPattern(rel, p));
  }

  /** Whether anything below a directory is included and not excluded: its trees are read, not its data. */
  async #holdsSelected(node: TreeNode, rel: string): Promise<boolean> {
    const tree = decodeTree(await this.#repo.loadBlob(Buffer.from(node.subtree!, 'hex') as BlobId, BlobType.tree), rel);
    for (const child of tree.nodes) {
      const childRel = `${rel}/${child.name}`;
      if (this.#excluded(childRel)) continue;
      if (this.#included(childRel)) return true;
      if (child.type === 'dir' && (await this.#holdsSelected(child, childRel))) return true;
    }
    return false;
  }

  /** Makes a directory, and in `fd` mode opens it: whatever is at its name by then, if not a directory, is refused. */
  async #mkdir(parent: Dir, name: string, full: string): Promise<Dir> {
    const at = parent.at(name);
    await named(fsp.mkdir(at, { mode: 0o700 }), at, full);
    if (parent.fd === null) return new Dir(full, parent, name, null);
    return new Dir(full, parent, name, await named(openFd(at, DIR_FLAGS), at, full));
  }

  /** Owner first (chown clears set-id bits), then mode, then times: through the directory's own descriptor where there is one. */
  async #dirMetadata(dir: Dir, node: TreeNode): Promise<void> {
    const fd = dir.fd;
    if (fd === null) return applyMetadata(dir.path, node);
    if (canChown) await fchown(fd, node.uid, node.gid);
    await fchmod(fd, node.mode);
    const mtime = nsToTime(node.mtime);
    await futimes(fd, mtime, mtime);
  }

  /** Damaged repository data fails the restore; a local problem with one entry does not. */
  async #guard<T>(full: string, work: Promise<T>): Promise<T | undefined> {
    try {
      return await work;
    } catch (err) {
      if (err instanceof CorruptDataError || err instanceof CorruptIndexError || !(err instanceof Error)) {
        this.#jobs.failure ??= err;
        throw err;
      }
      this.stats.errors++;
      this.#opts.onWarning?.(full, err);
      return undefined;
    }
  }

  async #special(dir: Dir, node: TreeNode, full: string): Promise<void> {
    this.stats.files++;
    const at = dir.at(node.name);
    switch (node.type) {
      case 'symlink':
        await named(fsp.symlink(node.target!, at), at, full);
        // lchown and lutimes change the link itself, whatever it points to.
        if (canChown) await named(fsp.lchown(at, node.uid, node.gid), at, full);
        await named(fsp.lutimes(at, nsToTime(node.mtime), nsToTime(node.mtime)), at, full);
        return;
      case 'fifo':
        await named(makeNode(dir, node.name, ['mkfifo']), at, full);
        break;
      case 'chardev':
      case 'blockdev': {
        const rdev = BigInt(node.rdev ?? 0);
        // Linux's encoding of dev_t (glibc gnu_dev_major/minor).
        const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
        const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
        await named(makeNode(dir, node.name, ['mknod', node.type === 'chardev' ? 'c' : 'b', String(major), String(minor)]), at, full);
        break;
      }
      default:
        // A socket belongs to the process that bound it; recreating it would mislead.
        return;
    }
    if (dir.fd === null) await applyMetadata(at, node);
    else await named(nodeMetadata(at, node, full), at, full);
  }

  /** Dispatches a file's contents; returns a promise of the file being written. */
  #file(dir: Dir, node: TreeNode, full: string): Promise<void> {
    this.stats.files++;
    const linkKey = node.nlink > 1 ? `${node.dev}:${node.ino}` : undefined;
    const first = linkKey === undefined ? undefined : this.#links.get(linkKey);
    if (first) return this.#hardLink(first, dir, node.name, full);
    const meta = { mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime };
    let done: Promise<void>;
    if (node.blocks && node.size <= SMALL) {
      const item: RestoreItem = { path: full, create: dir.at(node.name), fd: null, size: node.size, offset: 0, blocks: node.blocks, meta };
      done = this.#jobs.add(item, node.size).then(check);
    } else {
      done = this.#large(dir, node, full);
    }
    done.catch(() => {});
    if (linkKey !== undefined) this.#links.set(linkKey, { dir, name: node.name, done });
    return done;
  }

  /**
   * A further link to a file restored earlier, made once that one is written:
   * link() between two names under open directories. The first one's
   * directory is held from now, or, if it is done and closed already, opened
   * again from its nearest open ancestor, one name at a time, never through a symlink.
   */
  #hardLink(first: FirstLink, dir: Dir, name: string, full: string): Promise<void> {
    const held = first.dir.retain();
    const link = async () => {
      try {
        await first.done;
        const from = held ? first.dir : await this.#reopen(first.dir);
        try {
          const src = from.at(first.name);
          const dst = dir.at(name);
          await named(named(fsp.link(src, dst), src, first.dir.path + path.sep + first.name), dst, full);
        } finally {
          if (!held) from.release();
        }
      } finally {
        if (held) first.dir.release();
      }
    };
    return link();
  }

  /** A new descriptor for a directory whose own was closed; the root never is while anything is in flight. */
  async #reopen(d: Dir): Promise<Dir> {
    const parent = d.parent;
    if (parent === null) throw new Error(`internal: the restore target ${d.path} was closed while in use`);
    const p = parent.retain() ? parent : await this.#reopen(parent);
    try {
      const at = p.at(d.name);
      return new Dir(d.path, d.parent, d.name, await named(openFd(at, DIR_FLAGS), at, d.path));
    } finally {
      p.release();
    }
  }

  /**
   * A large file: created and opened here, written in ranges by every worker
   * through this descriptor, metadata applied through it when all are done.
   * It is closed only once no range is in flight, whatever happened.
   */
  async #large(dir: Dir, node: TreeNode, full: string): Promise<void> {
    const at = dir.at(node.name);
    const fd = await named(openFd(at, CREATE_FLAGS, 0o600), at, full);
    const parts: Promise<RestoreResult>[] = [];
    try {
      await ftruncate(fd, node.size);
      let offset = 0;
      for await (const group of blockGroups((id, type) => this.#repo.loadBlob(id, type), node, full)) {
        let first = 0;
        let bytes = 0;
        for (let i = 0; i < group.length; i++) {
          const loc = this.#repo.locate(Buffer.from(group[i]!, 'hex') as BlobId);
          if (!loc) throw new CorruptIndexError(`block ${group[i]!.slice(0, 16)} of ${full} is missing from the repository`);
          bytes += loc.rawLength;
          if (bytes >= RANGE || i === group.length - 1) {
            parts.push(this.#jobs.alone({ path: full, create: null, fd, size: node.size, offset, blocks: group.slice(first, i + 1), meta: null }));
            offset += bytes;
            first = i + 1;
            bytes = 0;
            await this.#jobs.pace();
          }
        }
      }
      (await Promise.all(parts)).forEach(check);
      if (canChown) await fchown(fd, node.uid, node.gid);
      await fchmod(fd, node.mode);
      const mtime = nsToTime(node.mtime);
      await futimes(fd, mtime, mtime);
    } finally {
      await Promise.allSettled(parts);
      await closeFd(fd);
    }
  }

  /** One worker job. */
  async #write(items: RestoreItem[]): Promise<readonly RestoreResult[]> {
    const reply = await restoreFiles(this.#opts.pool, items);
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

/** Waits for every promise to settle, then fails with the first failure, if any. */
async function settle(work: readonly Promise<unknown>[]): Promise<void> {
  for (const r of await Promise.allSettled(work)) if (r.status === 'rejected') throw r.reason;
}

/** An error with the address it was made at (/proc/self/fd/N/name) given as the entry's path. */
async function named<T>(work: Promise<T>, at: string, full: string): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (at !== full && err instanceof Error) {
      err.message = err.message.replaceAll(at, full);
      const e = err as NodeJS.ErrnoException & { dest?: string };
      if (e.path === at) e.path = full;
      if (e.dest === at) e.dest = full;
    }
    throw err;
  }
}

/** A worker's report of one item, as an error to raise. */
function check(r: RestoreResult): void {
  if (r.error) throw new Error(r.error);
}

/**
 * Makes a fifo or device node with mkfifo or mknod (Node has no mknod): mode
 * 0600 until its metadata is applied. In `fd` mode the child gets the
 * directory as its descriptor 3 and makes `/proc/self/fd/3/<name>`, under a
 * umask of 077 rather than -m (which some versions apply with a chmod that
 * follows a symlink).
 */
async function makeNode(dir: Dir, name: string, command: readonly string[]): Promise<void> {
  const [tool, ...rest] = command as [string, ...string[]];
  const fd = dir.fd;
  if (fd === null) {
    await run(tool, ['-m', '600', dir.at(name), ...rest]);
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'umask 077 && exec "$@"', 'sh', tool, '--', `${FD_DIR}/3/${name}`, ...rest], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${tool} ${dir.at(name)} failed: ${stderr.trim().replaceAll(`${FD_DIR}/3/${name}`, dir.at(name)) || `exit ${code ?? signal}`}`));
    });
  });
}

/**
 * A fifo's or device's owner, mode and times, set through an O_PATH
 * descriptor (which opens no device) checked to be the kind of node made:
 * /proc/self/fd/<it> then names that very inode for chown, chmod and utimes.
 */
async function nodeMetadata(at: string, node: TreeNode, full: string): Promise<void> {
  const fd = await openFd(at, O_PATH | O_NOFOLLOW);
  try {
    const st = await fstat(fd);
    const kind = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : 'other';
    if (kind !== node.type) throw new Error(`${full} was replaced by something else while it was restored`);
    const self = `${FD_DIR}/${fd}`;
    if (canChown) await fsp.chown(self, node.uid, node.gid);
    await fsp.chmod(self, node.mode);
    const mtime = nsToTime(node.mtime);
    await fsp.utimes(self, mtime, mtime);
  } finally {
    await closeFd(fd);
  }
}

/** By path (the `path` mode): owner first (chown clears set-id bits), then mode, then times. */
async function applyMetadata(full: string, node: TreeNode): Promise<void> {
  if (canChown) await fsp.chown(full, node.uid, node.gid);
  await fsp.chmod(full, node.mode);
  const mtime = nsToTime(node.mtime);
  await fsp.utimes(full, mtime, mtime);
}

/**
 * A promise the walk keeps to wait on later, marked handled now: its failure
 * reaches the walk when it settles `pending`, and must not end the process as
 * an unhandled rejection while the walk is still awaiting other work.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
