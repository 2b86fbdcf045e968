import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CorruptDataError, CorruptIndexError, TargetNotEmptyError } from '../errors/errors.ts';
import { blobId } from '../repo/crypto.ts';
import { BLOB_ID_BYTES, type BlobId, BlobType } from '../repo/ids.ts';
import type { BlobLocation, Repository } from '../repo/repository.ts';
import type { Snapshot } from '../repo/snapshot.ts';
import { decodeTree, type TreeNode } from '../repo/tree.ts';
import type { BlobPool } from '../repo/workers/pool.ts';
import { Semaphore } from '../util/semaphore.ts';
import { MiB } from '../util/units.ts';

export interface RestoreOptions {
  readonly target: string;
  readonly pool: BlobPool;
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

const BATCH = 4 * MiB;
const IN_FLIGHT = 64 * MiB;
const FILES_IN_FLIGHT = 16;
const run = promisify(execFile);

/**
 * Writes a snapshot into a directory: contents (all-zero blocks left as holes,
 * so sparse files stay sparse), then ownership, mode and times, directories
 * last so their mtimes survive their children being written.
 */
export async function restore(repo: Repository, snapshot: Snapshot, opts: RestoreOptions): Promise<RestoreStats> {
  const started = performance.now();
  const target = path.resolve(opts.target);
  await prepareTarget(target, opts.allowNonEmpty ?? false);
  const lock = repo.lock('shared');
  try {
    const r = new Restorer(repo, opts);
    const top = decodeTree(await repo.loadBlob(snapshot.tree, BlobType.tree), 'snapshot root');
    const root = top.nodes[0];
    if (top.nodes.length !== 1 || root?.type !== 'dir') throw new CorruptDataError('snapshot root tree is malformed');
    await r.restoreDir(target, root);
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

const canChown = typeof process.getuid === 'function' && process.getuid() === 0;

class Restorer {
  readonly stats = { files: 0, dirs: 0, bytes_written: 0, errors: 0 };
  readonly #repo: Repository;
  readonly #opts: RestoreOptions;
  readonly #files = new Semaphore(FILES_IN_FLIGHT);
  readonly #bytes = new Semaphore(IN_FLIGHT);
  readonly #zeroIds = new Map<number, string>();
  /** dev:ino → first restored path, for entries with more than one link. */
  readonly #links = new Map<string, string>();
  #lastProgress = 0;

  constructor(repo: Repository, opts: RestoreOptions) {
    this.#repo = repo;
    this.#opts = opts;
  }

  async restoreDir(dir: string, node: TreeNode): Promise<void> {
    this.stats.dirs++;
    const tree = decodeTree(await this.#repo.loadBlob(Buffer.from(node.subtree!, 'hex') as BlobId, BlobType.tree), dir);
    const pending: Promise<void>[] = [];
    for (const child of tree.nodes) {
      const full = path.join(dir, child.name);
      if (child.type === 'dir') {
        await fsp.mkdir(full, { mode: 0o700 });
        pending.push(this.restoreDir(full, child));
      } else if (child.type === 'file') {
        await this.#files.acquire();
        pending.push(this.#guard(full, this.#restoreFile(full, child)).finally(() => this.#files.release()));
      } else {
        pending.push(this.#guard(full, this.#restoreSpecial(full, child)));
      }
    }
    await Promise.all(pending);
    await applyMetadata(dir, node);
  }

  async #guard(full: string, work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (err) {
      // Damaged repository data fails the restore; a local problem with one entry does not.
      if (err instanceof CorruptDataError || err instanceof CorruptIndexError) throw err;
      this.stats.errors++;
      this.#opts.onWarning?.(full, err as Error);
    }
  }

  async #restoreSpecial(full: string, node: TreeNode): Promise<void> {
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

  async #restoreFile(full: string, node: TreeNode): Promise<void> {
    this.stats.files++;
    const linkKey = node.nlink > 1 ? `${node.dev}:${node.ino}` : undefined;
    const first = linkKey && this.#links.get(linkKey);
    if (first) {
      await fsp.link(first, full);
      return;
    }
    if (linkKey) this.#links.set(linkKey, full);
    const fh = await fsp.open(full, 'wx', 0o600);
    try {
      await fh.truncate(node.size);
      await this.#writeBlocks(fh, node.blocks ?? [], full);
    } finally {
      await fh.close();
    }
    await applyMetadata(full, node);
    this.#progress();
  }

  /** Writes runs of non-zero blocks in batches; each batch is one coalesced read, one worker job, one write. */
  async #writeBlocks(fh: fsp.FileHandle, blocks: readonly string[], full: string): Promise<void> {
    const writes: Promise<void>[] = [];
    let batch: { id: BlobId; loc: BlobLocation }[] = [];
    let batchStart = 0;
    let batchBytes = 0;
    let offset = 0;
    const flush = () => {
      if (batch.length === 0) return;
      writes.push(this.#writeBatch(fh, batch, batchStart, batchBytes));
      batch = [];
      batchBytes = 0;
    };
    for (const hex of blocks) {
      const id = Buffer.from(hex, 'hex') as BlobId;
      const loc = this.#repo.locate(id);
      if (!loc || loc.type !== BlobType.data) {
        throw new CorruptIndexError(`block ${hex.slice(0, 16)} of ${full} is missing from the repository`);
      }
      if (this.#isZero(hex, loc.rawLength)) {
        flush();
      } else {
        if (batch.length === 0) batchStart = offset;
        batch.push({ id, loc });
        batchBytes += loc.rawLength;
        if (batchBytes >= BATCH) flush();
      }
      offset += loc.rawLength;
    }
    flush();
    const settled = await Promise.allSettled(writes);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  }

  async #writeBatch(fh: fsp.FileHandle, batch: { id: BlobId; loc: BlobLocation }[], at: number, rawBytes: number): Promise<void> {
    const budget = await this.#bytes.acquire(rawBytes * 2);
    try {
      const stored = await this.#readCoalesced(batch.map((b) => b.loc));
      const ids = new ArrayBuffer(batch.length * BLOB_ID_BYTES);
      batch.forEach((b, i) => new Uint8Array(ids).set(b.id, i * BLOB_ID_BYTES));
      const { plain } = await this.#opts.pool.unseal({
        buf: stored,
        lengths: batch.map((b) => b.loc.length),
        ids,
        type: BlobType.data,
        checkId: false,
      });
      const data = Buffer.from(plain);
      let written = 0;
      while (written < data.length) {
        const { bytesWritten } = await fh.write(data, written, data.length - written, at + written);
        written += bytesWritten;
      }
      this.stats.bytes_written += data.length;
    } finally {
      this.#bytes.release(budget);
    }
  }

  /** Reads the stored bytes of consecutive blobs into one buffer, merging reads that are adjacent in a pack. */
  async #readCoalesced(locs: readonly BlobLocation[]): Promise<ArrayBuffer> {
    const total = locs.reduce((n, l) => n + l.length, 0);
    const out = new ArrayBuffer(total);
    const view = new Uint8Array(out);
    let o = 0;
    let i = 0;
    while (i < locs.length) {
      const start = locs[i]!;
      let length = start.length;
      let j = i + 1;
      while (j < locs.length && locs[j]!.pack === start.pack && locs[j]!.offset === start.offset + length) {
        length += locs[j]!.length;
        j++;
      }
      view.set(await this.#repo.readStored({ pack: start.pack, offset: start.offset, length }), o);
      o += length;
      i = j;
    }
    return out;
  }

  #isZero(hex: string, rawLength: number): boolean {
    let zero = this.#zeroIds.get(rawLength);
    if (zero === undefined) {
      zero = blobId(this.#repo.keys, Buffer.alloc(rawLength)).toString('hex');
      this.#zeroIds.set(rawLength, zero);
    }
    return zero === hex;
  }

  #progress(): void {
    const now = performance.now();
    if (!this.#opts.onProgress || now - this.#lastProgress < 200) return;
    this.#lastProgress = now;
    this.#opts.onProgress({ files: this.stats.files, bytesWritten: this.stats.bytes_written });
  }
}

/** Owner first (chown clears set-id bits), then mode, then times; symlinks get owner and times only. */
async function applyMetadata(full: string, node: TreeNode): Promise<void> {
  const isLink = node.type === 'symlink';
  if (canChown) await (isLink ? fsp.lchown : fsp.chown)(full, node.uid, node.gid);
  if (!isLink) await fsp.chmod(full, node.mode);
  const mtime = nsToSeconds(node.mtime);
  await (isLink ? fsp.lutimes : fsp.utimes)(full, mtime, mtime);
}

function nsToSeconds(ns: string): number {
  const n = BigInt(ns);
  return Number(n / 1_000_000_000n) + Number(n % 1_000_000_000n) / 1e9;
}
